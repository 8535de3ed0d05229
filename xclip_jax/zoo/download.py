"""Downloading one file into the cache: streamed, checked, and renamed into place only when complete.

The bytes go to a hidden temporary file beside the destination while a progress bar shows size, rate and
ETA. The transfer must deliver the announced Content-Length and, where one is known, the SHA-256; only then
is the file renamed to its real name. Any failure (no network, HTTP error, cut transfer, wrong checksum,
Ctrl-C) deletes the temporary file and says how to put the file there by hand.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import pathlib
import urllib.error
import urllib.request

from xclip_jax import atomic_io
from xclip_jax.zoo.errors import DownloadError

CHUNK_BYTES = 1 << 20
TIMEOUT_SECONDS = 60.0


def by_hand_hint(url: str, destination: pathlib.Path, sha256: str | None) -> str:
  check = f" Its SHA-256 must be {sha256}." if sha256 else ""
  return (f"To provide the file by hand, download it where there is network (e.g. `curl -L -o {destination.name} "
          f"{url}`) and copy it to {destination}.{check} The next load uses it.")


def _failure(url: str, destination: pathlib.Path, reason: str, sha256: str | None) -> DownloadError:
  return DownloadError(f"Could not download {url}: {reason}. Nothing was written to the cache. "
                       f"{by_hand_hint(url, destination, sha256)}")


def _reason(error: BaseException) -> str:
  if isinstance(error, urllib.error.HTTPError):
    return f"the server answered HTTP {error.code} {error.reason}"
  if isinstance(error, urllib.error.URLError):
    return f"no connection ({error.reason})"
  return f"{type(error).__name__}: {error}"


def download_file(url: str, destination: str | os.PathLike, *, sha256: str | None = None, progress: bool = True,
                  timeout: float = TIMEOUT_SECONDS) -> str:
  """Downloads `url` to `destination` atomically and returns the file's SHA-256.

  Raises:
    DownloadError: naming the URL, the reason, the destination and how to put the file there by hand;
      `destination` is then untouched (absent) and no temporary file remains.
  """
  from tqdm.auto import tqdm

  destination = pathlib.Path(destination)
  hasher = hashlib.sha256()
  try:
    with atomic_io.atomic_path(destination, suffix=".part") as staging:
      request = urllib.request.Request(url, headers={"User-Agent": "xclip_jax"})
      with urllib.request.urlopen(request, timeout=timeout) as response, open(staging, "wb") as output:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        received = 0
        with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=destination.name,
                  disable=not progress, miniters=1) as bar:
          while chunk := response.read(CHUNK_BYTES):
            output.write(chunk)
            hasher.update(chunk)
            received += len(chunk)
            bar.update(len(chunk))
        if total is not None and received != total:
          raise _failure(url, destination, f"the transfer was cut after {received} of {total} bytes", sha256)
        digest = hasher.hexdigest()
        if sha256 is not None and digest != sha256:
          raise _failure(url, destination, f"its SHA-256 is {digest}, not the published {sha256} (corrupt or "
                         f"not the released file)", sha256)
        output.flush()
        os.fsync(output.fileno())
  except DownloadError:
    raise
  except (OSError, http.client.HTTPException) as error:  # URLError, HTTPError, timeouts, resets are OSErrors
    raise _failure(url, destination, _reason(error), sha256) from error
  return digest

"""Where named models are kept: `$XCLIP_JAX_CACHE` (default `~/.cache/xclip_jax`).

    downloads/release/k400_16_8.pth      official release files, as downloaded (+ .sha256 record)
    downloads/openai/ViT-B-16.pt         OpenAI CLIP archives, as downloaded
    models/<name>-<key>/                 converted models (xclip_jax.pretrained directories)

HF hub repos stay in huggingface_hub's own cache (`HF_HOME`); only their converted models live here. A
converted model's key hashes everything that changes it: the source file's SHA-256 or the hub commit,
frames and seed for CLIP, the converters' version and the directory format. So a second load looks for
that directory and reads it, without network or torch.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import re
from collections.abc import Mapping
from typing import Any

from xclip_jax import atomic_io

CACHE_VARIABLE = "XCLIP_JAX_CACHE"
DEFAULT_CACHE = "~/.cache/xclip_jax"
RECORD_SUFFIX = ".sha256"
_CHUNK = 1 << 20


def cache_dir() -> pathlib.Path:
  """The cache root, read from the environment at every call (so it can be changed at run time)."""
  return pathlib.Path(os.environ.get(CACHE_VARIABLE) or DEFAULT_CACHE).expanduser()


def download_path(source: str, file_name: str) -> pathlib.Path:
  return cache_dir() / "downloads" / source / file_name


def converted_path(name: str, identity: Mapping[str, Any]) -> pathlib.Path:
  """models/<readable name>-<16 hex digits of the hash of identity + converter and format versions>."""
  from xclip_jax import pretrained
  from xclip_jax.conversion.convert import CONVERTER_VERSION

  document = {**identity, "converter": CONVERTER_VERSION, "format": pretrained.FORMAT_VERSION}
  key = hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()[:16]
  slug = re.sub(r"[^A-Za-z0-9._-]+", "_", name.replace("/", "--")).strip("_.")
  return cache_dir() / "models" / f"{slug}-{key}"


def _record_path(path: pathlib.Path) -> pathlib.Path:
  return path.with_name(path.name + RECORD_SUFFIX)


def write_sha256_record(path: pathlib.Path, sha256: str) -> None:
  """Remembers a file's SHA-256 with its size and mtime, so later loads need not hash it again."""
  stat = path.stat()
  record = {"sha256": sha256, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
  atomic_io.atomic_write_text(_record_path(path), json.dumps(record) + "\n")


def recorded_sha256(path: pathlib.Path) -> str | None:
  """The recorded SHA-256 of `path` if it still describes the file (or the file was since deleted)."""
  try:
    record = json.loads(_record_path(path).read_text())
    digest = record["sha256"]
    if path.exists():
      stat = path.stat()
      if (stat.st_size, stat.st_mtime_ns) != (record["size"], record["mtime_ns"]):
        return None  # replaced by hand since: hash it again
    return str(digest)
  except (OSError, ValueError, KeyError, TypeError):
    return None


def file_sha256(path: pathlib.Path) -> str:
  """SHA-256 of a cached file: from its record when current, else hashed (and recorded)."""
  digest = recorded_sha256(path)
  if digest is not None:
    return digest
  hasher = hashlib.sha256()
  with open(path, "rb") as handle:
    while chunk := handle.read(_CHUNK):
      hasher.update(chunk)
  digest = hasher.hexdigest()
  write_sha256_record(path, digest)
  return digest

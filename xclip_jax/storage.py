r"""Paths that may be bucket URLs (gs://bucket/...): the one module that knows about object storage.

Every path a user gives (workdir, data, label lists, outputs) goes through `path()`, an `etils.epath.Path`
(the abstraction Orbax, TFDS and grain use), so the same code reads and writes a local folder or a bucket.

The gs:// backend is chosen here, on import, before any gs:// path is used: epath reaches buckets through
`tf.io.gfile` whenever TensorFlow is importable, and gfile's GCS endpoint is compiled in, so it cannot be
pointed at a test server. `EPATH_USE_TF=0` makes epath use fsspec/gcsfs, which honours
STORAGE_EMULATOR_HOST: the tests then run the very code a TPU pod runs (docs/cloud.md). gcsfs's listing
cache is turned off, because several hosts write one workdir and a cached listing would hide the others'
objects.

A bucket has no rename, so the local idiom "write a temporary sibling, rename it into place" becomes a
whole-object upload: one request, or a resumable upload that GCS only turns into an object at its last
chunk (gcsfs deletes the session if a chunk fails). A reader sees the previous object or the complete new
one; a failed write leaves the previous one. `write_text` / `write_bytes` / `staged_file` do that for
buckets and the rename for local paths. Libraries that can only write local files (PyAV, array_record's
writer, safetensors, TensorBoard's event writer) write into a local staging folder that is uploaded.

  python -m xclip_jax.storage check gs://my-bucket/runs   # can this machine write there? (all clients)
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import re
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator

os.environ.setdefault("EPATH_USE_TF", "0")  # before etils reads it (once, at the first gs:// path)

from etils import epath

from xclip_jax import atomic_io, cli

_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


class StorageError(OSError):
  """A path cannot be read or written; the message names it and says why."""


def is_remote(p: str | os.PathLike) -> bool:
  """Whether `p` is a URL (gs://...) rather than a local path."""
  return bool(_URL.match(os.fspath(p)))


def path(p: str | os.PathLike) -> epath.Path:
  """The `epath.Path` of a user-given path or URL (gs://bucket/a/b, /data/x, relative/x)."""
  return epath.Path(p)


def absolute(p: str | os.PathLike) -> epath.Path:
  """`path(p)`, made absolute if local (epath's `absolute()` breaks URLs)."""
  p = path(p)
  return p if is_remote(p) else p.absolute()


def _configure_fsspec() -> None:
  """No cached listings (other hosts write the same workdir); set before epath creates its filesystem."""
  try:
    import fsspec.config
  except ImportError:  # then epath cannot reach buckets either; `filesystem` says what to install
    return
  for protocol in ("gs", "gcs"):
    fsspec.config.conf.setdefault(protocol, {}).setdefault("use_listings_cache", False)


_configure_fsspec()


def filesystem(p: str | os.PathLike):
  """The fsspec filesystem of a URL (gcsfs for gs://); the one epath uses for it, configured the same."""
  import fsspec

  try:
    fs, _ = fsspec.core.url_to_fs(os.fspath(p))
  except ImportError as error:
    raise StorageError(f"{p}: {error} (pip install gcsfs, or xclip_jax[gcs])") from error
  return fs


def mkdir(p: str | os.PathLike) -> epath.Path:
  """Creates a local folder (with parents); a bucket needs none (prefixes appear with their objects)."""
  p = path(p)
  if not is_remote(p):
    p.mkdir(parents=True, exist_ok=True)
  return p


# ---------------------------------------------------------------------------------------------------------
# Writing whole files and objects.


def write_bytes(p: str | os.PathLike, data: bytes) -> epath.Path:
  """Writes `data` all at once: the previous file/object or the complete new one, never a part."""
  p = path(p)
  if is_remote(p):
    filesystem(p).pipe_file(os.fspath(p), bytes(data))
  else:
    with atomic_io.atomic_file(p, "wb") as f:
      f.write(data)
  return p


def write_text(p: str | os.PathLike, text: str) -> epath.Path:
  """`write_bytes` of UTF-8 text."""
  return write_bytes(p, text.encode("utf-8"))


def upload_file(local: str | os.PathLike, remote: str | os.PathLike) -> None:
  """Copies a local file to a URL as one object (resumable for large files, finalised at the end)."""
  filesystem(remote).put_file(os.fspath(local), os.fspath(remote))


@contextlib.contextmanager
def staged_file(p: str | os.PathLike, *, suffix: str = "") -> Iterator[pathlib.Path]:
  """Yields a local file path to write; on success it becomes `p` (renamed, or uploaded as one object).

  On any error nothing changes at `p`. For writers that open the file themselves (csv, torch.save, PNG).
  """
  p = path(p)
  if not is_remote(p):
    with atomic_io.atomic_path(p, suffix=suffix) as staging:
      yield staging
    return
  with tempfile.TemporaryDirectory(prefix="xclip_jax_upload-") as folder:
    staging = pathlib.Path(folder) / f"staged{suffix or p.suffix}"
    yield staging
    upload_file(staging, p)


def _non_empty(p: epath.Path) -> bool:
  return p.is_dir() and any(True for _ in p.iterdir())


def upload_tree(local: str | os.PathLike, remote: str | os.PathLike, *, last: Iterable[str] = ()) -> list[str]:
  """Uploads every file under `local` to `remote`/<relative path>; the files named in `last` go last.

  A reader that waits for a `last` file (a manifest, config.json) never sees a partial folder.
  Returns the relative paths uploaded.
  """
  local = pathlib.Path(local)
  files = sorted(str(f.relative_to(local)) for f in local.rglob("*") if f.is_file())
  order = [f for f in files if f not in set(last)] + [f for f in last if f in files]
  remote = path(remote)
  fs = filesystem(remote)
  first = [f for f in order if f not in set(last)]
  if first:  # Many small files: gcsfs uploads them concurrently.
    fs.put([str(local / f) for f in first], [os.fspath(remote / f) for f in first])
  for f in order[len(first):]:
    upload_file(local / f, remote / f)
  return order


@contextlib.contextmanager
def staged_directory(p: str | os.PathLike, *, overwrite: bool = False, last: Iterable[str] = ()
                     ) -> Iterator[pathlib.Path]:
  """Yields a local folder to fill; on success it replaces `p` (renamed, or uploaded with `last` files last).

  An existing non-empty `p` is refused unless `overwrite`. Locally this is `atomic_io.atomic_directory`.
  In a bucket, the new objects are uploaded first and the old ones not overwritten are deleted after, so
  a failed upload leaves the previous version's `last` files (its marker) in place.
  """
  p = path(p)
  if not is_remote(p):
    with atomic_io.atomic_directory(p, overwrite=overwrite) as staging:
      yield staging
    return
  if _non_empty(p) and not overwrite:
    raise FileExistsError(f"{p} already exists and is not empty; pass overwrite=True (--overwrite) to replace it.")
  with tempfile.TemporaryDirectory(prefix="xclip_jax_upload-") as folder:
    yield pathlib.Path(folder)
    old = {os.fspath(f.relative_to(p)) for f in files_under(p)}
    new = set(upload_tree(folder, p, last=last))
    for stale in sorted(old - new):
      (p / stale).unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------------------
# Reading.


@contextlib.contextmanager
def local_copy(p: str | os.PathLike) -> Iterator[pathlib.Path]:
  """A local path with the content of `p`: `p` itself if local, else a temporary download (file or folder).

  For readers that need a real file (torch.load, safetensors' memory map, TensorBoard's event reader).
  """
  if not is_remote(p):
    yield pathlib.Path(p)
    return
  p = path(p)
  if not p.exists():
    raise FileNotFoundError(f"{p}: no such object or folder")
  with tempfile.TemporaryDirectory(prefix="xclip_jax_download-") as folder:
    target = pathlib.Path(folder) / p.name
    fs = filesystem(p)
    if p.is_dir():
      target.mkdir()
      files = files_under(p)
      for f in files:
        (target / f.relative_to(p)).parent.mkdir(parents=True, exist_ok=True)
      if files:
        fs.get([os.fspath(f) for f in files], [str(target / f.relative_to(p)) for f in files])
    else:
      fs.get_file(os.fspath(p), str(target))
    yield target


def files_under(p: str | os.PathLike) -> list[epath.Path]:
  """Every file below the folder `p`, sorted (epath's rglob and walk do not list buckets recursively)."""
  p = path(p)
  if is_remote(p):
    fs = filesystem(p)
    return sorted(path(fs.unstrip_protocol(f)) for f in fs.find(os.fspath(p)))
  return sorted(path(os.path.join(root, f)) for root, _, files in os.walk(p, followlinks=True) for f in files)


def glob(pattern: str) -> list[str]:
  """Sorted matches of a glob pattern, local or in a bucket (wildcards in any component after the first)."""
  if not is_remote(pattern):
    import glob as glob_lib

    return sorted(glob_lib.glob(pattern))
  parts = pattern.split("/")
  fixed = next((i for i, part in enumerate(parts) if any(c in part for c in "*?[")), len(parts))
  if fixed == len(parts):
    return [pattern] if path(pattern).exists() else []
  base = path("/".join(parts[:fixed]))
  return sorted(os.fspath(m) for m in base.glob("/".join(parts[fixed:])))


# ---------------------------------------------------------------------------------------------------------
# Checking a workdir before any work.


def _reason(error: BaseException, p: epath.Path) -> str:
  text = f"{type(error).__name__}: {error}"
  if is_remote(p) and isinstance(error, FileNotFoundError):
    bucket = os.fspath(p).split("/")[2]
    return f"bucket {bucket!r} does not exist or is not visible with these credentials ({text})"
  return text


def check_writable(p: str | os.PathLike, *, name: str = "workdir") -> epath.Path:
  """Writes, reads back and deletes a small probe object/file in `p`; raises `StorageError` naming `p`.

  Run at start-up on every host, so a missing bucket, missing credentials or a permission problem
  stops the run before any work, not at the first checkpoint an hour later.
  """
  p = path(p)
  probe = p / f".xclip_jax_write_check-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
  payload = b"xclip_jax write check\n"
  try:
    mkdir(p)
    write_bytes(probe, payload)
    if probe.read_bytes() != payload:
      raise StorageError(f"read back other bytes than written from {probe}")
    probe.unlink()
  except Exception as error:  # Whatever the client raises (auth, HTTP, OS), the run cannot use this path.
    raise StorageError(f"cannot write to the {name} {p}: {_reason(error, p)}") from error
  return p


# ---------------------------------------------------------------------------------------------------------
# Mirroring a local folder that a library appends to (TensorBoard event files) into a bucket.


class FolderMirror:
  """Uploads the files of a local folder that changed since the last `sync` to `remote` (whole objects).

  TensorBoard's event writer appends to local files only; each sync re-uploads a changed file as one
  object, so the bucket holds a complete prefix of the events at every moment.
  """

  def __init__(self, local: str | os.PathLike, remote: str | os.PathLike):
    self.local = pathlib.Path(local)
    self.remote = path(remote)
    self._seen: dict[str, tuple[int, int]] = {}

  def sync(self) -> int:
    """Uploads changed files; returns how many."""
    uploaded = 0
    for f in sorted(self.local.rglob("*")):
      if not f.is_file():
        continue
      stat = f.stat()
      key, state = str(f.relative_to(self.local)), (stat.st_size, stat.st_mtime_ns)
      if self._seen.get(key) != state:
        upload_file(f, self.remote / key)
        self._seen[key] = state
        uploaded += 1
    return uploaded


# ---------------------------------------------------------------------------------------------------------
# python -m xclip_jax.storage check URL


def check(url: str) -> list[str]:
  """Checks every client a run uses against `url`; returns one line per check (raises on the first failure).

  epath/gcsfs (config, results, events), Orbax with tensorstore (checkpoint arrays), and array_record's
  reader (ArrayRecord shards; only if it is installed). Leaves nothing behind.
  """
  lines = []
  root = path(url) / f".xclip_jax_check-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
  started = time.perf_counter()
  check_writable(url)
  lines.append(f"write, read back, delete a small object: ok ({time.perf_counter() - started:.2f} s)")
  try:
    import numpy as np

    try:
      import orbax.checkpoint as ocp
    except ImportError:
      lines.append("Orbax checkpoint: skipped (orbax-checkpoint not installed: pip install xclip_jax[train])")
    else:
      started = time.perf_counter()
      values = {"w": np.arange(1000, dtype=np.float32)}
      with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(root / "orbax", values)
        checkpointer.wait_until_finished()
        restored = checkpointer.restore(root / "orbax", values)
      if not np.array_equal(np.asarray(restored["w"]), values["w"]):
        raise StorageError(f"{root / 'orbax'}: the Orbax checkpoint restored other values than saved")
      lines.append(f"Orbax checkpoint save + restore (tensorstore): ok ({time.perf_counter() - started:.2f} s)")
    try:
      from array_record.python import array_record_module
    except ImportError:
      lines.append("ArrayRecord read: skipped (array_record not installed)")
    else:
      started = time.perf_counter()
      with tempfile.TemporaryDirectory() as folder:
        shard = os.path.join(folder, "check.array_record")
        writer = array_record_module.ArrayRecordWriter(shard, "group_size:1")
        writer.write(b"xclip_jax")
        writer.close()
        upload_file(shard, root / "check.array_record")
      reader = array_record_module.ArrayRecordReader(os.fspath(root / "check.array_record"))
      records = reader.read([0])
      reader.close()
      if records != [b"xclip_jax"]:
        raise StorageError(f"{root}: array_record read back {records!r}")
      lines.append(f"ArrayRecord shard read (array_record's GCS reader): ok ({time.perf_counter() - started:.2f} s)")
  finally:
    if root.exists():
      root.rmtree()
  return lines


def main(argv: list[str] | None = None) -> int:
  parser = cli.parser("python -m xclip_jax.storage", __doc__)
  commands = parser.add_subparsers(dest="command", required=True)
  check_parser = commands.add_parser("check", help="check that this machine can write and read a workdir location")
  check_parser.add_argument("url", help="a folder or gs://bucket/prefix, e.g. the --workdir of a run")
  args = parser.parse_args(argv)
  print(f"Checking {args.url} (gs:// through {'fsspec/gcsfs' if os.environ['EPATH_USE_TF'] == '0' else 'tf.io.gfile'}"
        f", arrays through tensorstore)", flush=True)
  try:
    for line in check(args.url):
      print(f"  {line}", flush=True)
  except Exception as error:
    print(f"storage check: error: {error}", file=sys.stderr)
    return 1
  print(f"{args.url}: usable as a workdir from this machine.")
  return 0


if __name__ == "__main__":
  cli.run(main, prog="xclip_jax.storage")

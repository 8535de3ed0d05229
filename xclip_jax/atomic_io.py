"""Writing a directory or a file all at once: readers see the old one or the complete new one, never a partial one.

Used by everything that writes user-facing outputs (converted models, synthetic data, ArrayRecord shards).
Standard library only, so light modules (the data pipeline) can use it.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import secrets
import shutil
from collections.abc import Iterator


def _staging_prefix(output: pathlib.Path, kind: str = "tmp") -> str:
  """Temporary siblings are named `.<name>.<kind>-<pid>-<random>`: whose they are is in the name."""
  return f".{output.name}.{kind}-{os.getpid()}-"


def _staging_name(output: pathlib.Path, kind: str = "tmp", suffix: str = "") -> pathlib.Path:
  """A fresh sibling name (64 random bits after the pid), chosen before anything is created: each writer creates
  it inside the `try` that deletes it, so a Ctrl-C between creating and guarding it cannot leave it behind (with
  tempfile.mkstemp the file existed before the guard did)."""
  return output.parent / f"{_staging_prefix(output, kind)}{secrets.token_hex(8)}{suffix}"


def _alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # someone else's process
    return True
  return True


def remove_stale_siblings(output: str | os.PathLike) -> list[pathlib.Path]:
  """Deletes the temporary siblings of `output` left by writers that were killed (SIGKILL, a lost machine) before
  they could clean up; returns them. A sibling whose process still runs on this machine is another writer's and
  kept. Why here: a killed run's staging folder would otherwise stay beside its output forever.
  """
  output = pathlib.Path(output).absolute()
  removed = []
  if not output.parent.is_dir():
    return removed
  for kind in ("tmp", "old"):
    for sibling in output.parent.glob(f".{output.name}.{kind}-*"):
      pid = sibling.name[len(f".{output.name}.{kind}-"):].split("-", 1)[0]
      if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
        if sibling.is_dir():
          shutil.rmtree(sibling, ignore_errors=True)
        else:
          sibling.unlink(missing_ok=True)
        removed.append(sibling)
  return removed


def _remove(path: pathlib.Path) -> None:
  """Deletes the file or folder `path` (if there) even when a Ctrl-C lands meanwhile; that KeyboardInterrupt is
  raised once it is gone. Cleaning up takes milliseconds, and a cleanup cut off would leave the staging behind."""
  interrupted = None
  while True:
    try:
      if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
      else:
        path.unlink(missing_ok=True)
      break
    except KeyboardInterrupt as e:
      interrupted = e
  if interrupted is not None:
    raise interrupted


@contextlib.contextmanager
def atomic_directory(output: str | os.PathLike, overwrite: bool = False) -> Iterator[pathlib.Path]:
  """Yields a temporary sibling directory that replaces `output` only if the block succeeds.

  An existing non-empty `output` is kept unless `overwrite`; even then it is only removed after the new
  directory is complete. On any error the temporary directory is deleted and `output` is untouched; what a killed
  writer left beside `output` is deleted first (`remove_stale_siblings`).
  """
  output = pathlib.Path(output).absolute()
  if output.exists() and not output.is_dir():
    raise FileExistsError(f"{output} exists and is not a directory.")
  if output.exists() and any(output.iterdir()) and not overwrite:
    raise FileExistsError(f"{output} already exists and is not empty; pass overwrite=True (--overwrite) to "
                          f"replace it.")
  output.parent.mkdir(parents=True, exist_ok=True)
  remove_stale_siblings(output)
  staging = _staging_name(output)
  try:
    staging.mkdir()
    yield staging
    if output.exists():
      if not overwrite and any(output.iterdir()):  # written by someone else meanwhile
        raise FileExistsError(f"{output} appeared while writing; not overwriting it.")
      _swap_in(staging, output)
    else:
      staging.rename(output)
  except BaseException:
    _remove(staging)
    raise


def _swap_in(staging: pathlib.Path, output: pathlib.Path) -> None:
  """Replaces the directory `output` by `staging` (two renames: directories cannot be swapped in one). If either
  rename is cut off (Ctrl-C, an error), the previous `output` is put back, so it is never lost in between."""
  backup = _staging_name(output, "old")
  previous = backup / "previous"
  try:
    backup.mkdir()
    output.rename(previous)
    staging.rename(output)
  except BaseException:
    if previous.exists() and not output.exists():
      previous.rename(output)
    raise
  finally:
    if output.exists():  # the new one, or the previous one put back: nothing in the backup folder is needed
      _remove(backup)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, suffix: str = "") -> Iterator[pathlib.Path]:
  """Yields the path of a temporary sibling of `path`, renamed onto `path` only if the block succeeds.

  For writers that open the file themselves (a download, torch.save). Readers see the previous file or the
  complete new one; on any error, KeyboardInterrupt included, the temporary file is deleted and an existing
  `path` is untouched. `suffix` ends the temporary name (e.g. ".part").
  """
  path = pathlib.Path(path).absolute()
  path.parent.mkdir(parents=True, exist_ok=True)
  remove_stale_siblings(path)
  staging = _staging_name(path, suffix=suffix)
  try:
    os.close(os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    yield staging
    # The staging file is private (0600); give it the mode the old file had, or the usual 0644.
    os.chmod(staging, path.stat().st_mode & 0o777 if path.exists() else 0o644)
    os.replace(staging, path)
  finally:
    _remove(staging)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "w", **open_kwargs) -> Iterator:
  """Yields a file open on a temporary sibling of `path` that replaces `path` only if the block succeeds.

  Readers see the previous file or the complete new one; on any error the temporary file is deleted and an
  existing `path` is untouched. `open_kwargs` go to `open` (encoding, newline).
  """
  if "b" not in mode:
    open_kwargs.setdefault("encoding", "utf-8")
  with atomic_path(path) as staging, open(staging, mode, **open_kwargs) as f:
    yield f


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
  """Writes `text` to `path` all at once (see `atomic_file`)."""
  with atomic_file(path, "w", newline="") as f:
    f.write(text)

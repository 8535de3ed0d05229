"""Writing a directory or a file all at once: readers see the old one or the complete new one, never a partial one.

Used by everything that writes user-facing outputs (converted models, synthetic data, ArrayRecord shards).
Standard library only, so light modules (the data pipeline) can use it.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import tempfile
from collections.abc import Iterator


def _staging_prefix(output: pathlib.Path, kind: str = "tmp") -> str:
  """Temporary siblings are named `.<name>.<kind>-<pid>-<random>`: whose they are is in the name."""
  return f".{output.name}.{kind}-{os.getpid()}-"


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
  staging = pathlib.Path(tempfile.mkdtemp(prefix=_staging_prefix(output), dir=output.parent))
  try:
    yield staging
    if output.exists():
      if not overwrite and any(output.iterdir()):  # written by someone else meanwhile
        raise FileExistsError(f"{output} appeared while writing; not overwriting it.")
      backup = pathlib.Path(tempfile.mkdtemp(prefix=_staging_prefix(output, "old"), dir=output.parent))
      output.rename(backup / "previous")
      staging.rename(output)
      shutil.rmtree(backup, ignore_errors=True)
    else:
      staging.rename(output)
  except BaseException:
    shutil.rmtree(staging, ignore_errors=True)
    raise


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
  fd, name = tempfile.mkstemp(prefix=_staging_prefix(path), suffix=suffix, dir=path.parent)
  os.close(fd)
  staging = pathlib.Path(name)
  try:
    yield staging
    # mkstemp makes the file private (0600); give it the mode the old file had, or the usual 0644.
    os.chmod(staging, path.stat().st_mode & 0o777 if path.exists() else 0o644)
    os.replace(staging, path)
  finally:
    staging.unlink(missing_ok=True)


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

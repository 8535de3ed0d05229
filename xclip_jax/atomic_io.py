"""Writing a directory all at once: readers see the old one or the complete new one, never a partial one.

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


@contextlib.contextmanager
def atomic_directory(output: str | os.PathLike, overwrite: bool = False) -> Iterator[pathlib.Path]:
  """Yields a temporary sibling directory that replaces `output` only if the block succeeds.

  An existing non-empty `output` is kept unless `overwrite`; even then it is only removed after the new
  directory is complete. On any error the temporary directory is deleted and `output` is untouched.
  """
  output = pathlib.Path(output).absolute()
  if output.exists() and not output.is_dir():
    raise FileExistsError(f"{output} exists and is not a directory.")
  if output.exists() and any(output.iterdir()) and not overwrite:
    raise FileExistsError(f"{output} already exists and is not empty; pass overwrite=True (--overwrite) to "
                          f"replace it.")
  output.parent.mkdir(parents=True, exist_ok=True)
  staging = pathlib.Path(tempfile.mkdtemp(prefix=f".{output.name}.tmp-", dir=output.parent))
  try:
    yield staging
    if output.exists():
      if not overwrite and any(output.iterdir()):  # written by someone else meanwhile
        raise FileExistsError(f"{output} appeared while writing; not overwriting it.")
      backup = pathlib.Path(tempfile.mkdtemp(prefix=f".{output.name}.old-", dir=output.parent))
      output.rename(backup / "previous")
      staging.rename(output)
      shutil.rmtree(backup, ignore_errors=True)
    else:
      staging.rename(output)
  except BaseException:
    shutil.rmtree(staging, ignore_errors=True)
    raise

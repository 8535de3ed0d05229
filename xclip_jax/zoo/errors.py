"""What can go wrong when getting a model by name.

All are `OSError`s (the model files could not be obtained), so callers that report file problems cleanly
report these too; an unknown name is also a `FileNotFoundError`, as an unknown path is.
"""

from __future__ import annotations


class ZooError(OSError):
  """A named model could not be obtained (download, checksum, cache or hub problem)."""

  def __str__(self) -> str:  # OSError's str() adds "[Errno ...]" for two-argument forms; keep the message
    return str(self.args[0]) if self.args else ""


class UnknownModelError(ZooError, FileNotFoundError):
  """Neither a local path, a registered name nor a reachable HF hub id; the message lists close matches."""


class DownloadError(ZooError):
  """A download failed, was cut short or did not match its SHA-256; nothing was left in the cache."""

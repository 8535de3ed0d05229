"""atomic_io under a Ctrl-C at every step: nothing half-made is left beside the output, and the output is the
previous one or the complete new one, never missing. The interrupt is raised from the operating-system calls
the writers make (a KeyboardInterrupt lands between two of them when SIGINT arrives), one call further each
time, until a write goes through uninterrupted."""

import os
import pathlib
import sys

import pytest

from xclip_jax import atomic_io


class _InterruptAtCall:
  """Raises KeyboardInterrupt right after the `n`th call (counting from 0) that atomic_io's own code makes to the
  patched functions returns: the work of that call is done, as when SIGINT arrives just after it. Calls made
  inside the standard library (pathlib's, shutil.rmtree's) are not counted: rmtree cut off between its own
  close and its note of it closes twice, a race of the standard library's own."""

  def __init__(self, n: int):
    self.n, self.calls = n, 0

  def wrap(self, function):
    def wrapped(*args, **kwargs):
      result = function(*args, **kwargs)
      if not _called_from_atomic_io():
        return result
      self.calls += 1
      if self.calls - 1 == self.n:
        raise KeyboardInterrupt
      return result
    return wrapped


def _called_from_atomic_io() -> bool:
  """Whether the patched call was made by atomic_io, directly or through pathlib (Path.mkdir, Path.rename)."""
  frame = sys._getframe(2)
  while frame is not None and frame.f_globals.get("__name__") == "pathlib":
    frame = frame.f_back
  return frame is not None and frame.f_globals.get("__name__") == atomic_io.__name__


def _patch_system_calls(monkeypatch, interrupt: _InterruptAtCall) -> None:
  for name in ("open", "close", "rename", "replace", "mkdir", "chmod"):
    monkeypatch.setattr(os, name, interrupt.wrap(getattr(os, name)))


def _siblings(folder: pathlib.Path) -> list[str]:
  return sorted(p.name for p in folder.iterdir())


def _interrupt_everywhere(monkeypatch, prepare, write, check_interrupted, check_finished) -> int:
  """Runs `prepare`, then `write` with an interrupt after call 0, 1, 2, ... until it finishes; returns how many
  calls were interrupted."""
  for n in range(50):
    prepare()
    interrupt = _InterruptAtCall(n)
    with monkeypatch.context() as patched:
      _patch_system_calls(patched, interrupt)
      try:
        write()
      except KeyboardInterrupt:
        check_interrupted(n)
        continue
    check_finished()
    return n
  raise AssertionError("the write never finished")


def test_a_file_is_the_old_or_the_new_one_and_no_staging_file_stays(tmp_path, monkeypatch):
  target = tmp_path / "plan.json"

  def prepare():
    target.write_text("old")

  def write():
    atomic_io.atomic_write_text(target, "new")

  def interrupted(n):
    assert target.read_text() in ("old", "new"), n
    assert _siblings(tmp_path) == ["plan.json"], n

  def finished():
    assert target.read_text() == "new" and _siblings(tmp_path) == ["plan.json"]

  # open, close, chmod, replace
  assert _interrupt_everywhere(monkeypatch, prepare, write, interrupted, finished) >= 3


def test_a_directory_is_the_old_or_the_new_one_and_no_staging_folder_stays(tmp_path, monkeypatch):
  output = tmp_path / "frames"

  def prepare():
    output.mkdir(exist_ok=True)  # the previous interrupt may have left the new one in place
    (output / "which").write_text("old")

  def write():
    with atomic_io.atomic_directory(output, overwrite=True) as staging:
      (staging / "which").write_text("new")

  def interrupted(n):
    assert (output / "which").read_text() in ("old", "new"), n
    assert _siblings(tmp_path) == ["frames"], n

  def finished():
    assert (output / "which").read_text() == "new" and _siblings(tmp_path) == ["frames"]

  # mkdir (staging), mkdir (backup), rename, rename
  assert _interrupt_everywhere(monkeypatch, prepare, write, interrupted, finished) >= 4


def test_an_error_in_the_block_keeps_the_previous_directory(tmp_path):
  output = tmp_path / "out"
  output.mkdir()
  (output / "kept").write_text("1")
  with pytest.raises(ValueError), atomic_io.atomic_directory(output, overwrite=True) as staging:
    (staging / "new").write_text("2")
    raise ValueError("broken")
  assert _siblings(output) == ["kept"] and _siblings(tmp_path) == ["out"]

"""Ctrl-C and SIGTERM as the project's long commands take them (docs/training.md#ctrl-c-and-sigterm).

A terminal's Ctrl-C sends SIGINT to every process of its foreground group: the command and the worker processes
it started (grain's data workers, the frame-shard builder's pool).

- Workers ignore it and end with their parent: a spawned worker imports its command's module first, and so
  `xclip_jax/cli.py`, which ignores SIGINT in any multiprocessing child; grain's and the frame-shard pool's
  workers also call `ignore_in_worker` first thing (for workers of code that is not a command).
- `StopRequests` turns SIGINT and SIGTERM into a request that the work polls at safe points: the trainer
  finishes the step it is on, saves it, waits for the checkpoint and stops. Inside `droppable()` (an evaluation
  during training, in a single process) the first SIGINT raises KeyboardInterrupt at once instead: that work is
  dropped, nothing of it is kept, and the trainer saves the step it stands on.
- A second SIGINT stops the process at once: `at_once_cleanup` runs (the trainer stops its data workers and
  frees their shared memory), then multiprocessing's own clean-up, and the process ends with `os._exit(130)`,
  waiting for nothing else: the checkpoint being written is dropped (the next run removes its temporary
  folder) and the last complete one is kept.
- Elsewhere SIGINT is Python's KeyboardInterrupt; each command turns it into one line saying what was kept and
  exit status 130 (`cli.run`). Writers are atomic (`atomic_io`, `storage`), so nothing is left half-written.
  A KeyboardInterrupt that Python swallows (raised inside a garbage-collector callback or a `__del__`, where it
  can only be printed as "Exception ignored") is raised again in the main thread (`cli.install_interrupts`).

Standard library only (and `cli`, which sets up a command's Ctrl-C).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator

from xclip_jax import cli

EXIT_STATUS = cli.INTERRUPTED  # 130 = 128 + SIGINT
_stopped_by: str | None = None  # "SIGINT" or "SIGTERM" once a StopRequests of this process stopped its work


def stopped_by() -> str | None:
  """Which signal made this process's work stop early (and save), if one did: "SIGINT", "SIGTERM" or None."""
  return _stopped_by


def ignore_in_worker() -> None:
  """For a worker process: the terminal's Ctrl-C is for its parent, which stops the worker when it stops."""
  signal.signal(signal.SIGINT, signal.SIG_IGN)


def _exit_now(message: str) -> None:
  """Ends the process at once, after one line; only multiprocessing's clean-up runs (it stops worker processes
  and releases their semaphores), nothing that could wait on a save."""
  try:
    import multiprocessing.util

    with contextlib.suppress(BaseException):
      multiprocessing.util._exit_function()  # what its atexit hook would do
    sys.stdout.flush()
    sys.stderr.write(f"\n{message}\n")
    sys.stderr.flush()
  finally:
    os._exit(EXIT_STATUS)


class StopRequests:
  """SIGINT / SIGTERM -> `requested` (the signal's name), polled by the work between safe points.

  Args:
    acknowledge: the line printed when the first Ctrl-C arrives (what the work will do before it stops), or a
      function that makes it then.
    at_once: the line printed before a second Ctrl-C ends the process (`os._exit`: nothing waits, e.g. on a
      checkpoint being written). None: a second Ctrl-C raises KeyboardInterrupt instead, so that `finally`
      blocks run (a staged output file is deleted; the one it would replace stays).
    at_once_cleanup: called (errors ignored) before a second Ctrl-C ends the process, outside the cut work.
  Use as a context manager (in the main thread; elsewhere signals cannot be handled and it does nothing).
  """

  def __init__(self, acknowledge: str | Callable[[], str] = "Ctrl-C: stopping at the next safe point (Ctrl-C "
                                                           "again stops at once)",
               at_once: str | None = "Ctrl-C again: stopped at once",
               at_once_cleanup: Callable[[], object] | None = None):
    self.requested: str | None = None
    self.at_once_cleanup = at_once_cleanup
    self._second = False
    self.acknowledge = acknowledge
    self.at_once = at_once
    self._droppable = False
    self._raised = False
    self._previous: dict[int, object] = {}

  def __enter__(self) -> StopRequests:
    if threading.current_thread() is threading.main_thread():
      for signum in (signal.SIGINT, signal.SIGTERM):
        self._previous[signum] = signal.signal(signum, self._handle)
    return self

  def __exit__(self, *exc) -> None:
    for signum, previous in self._previous.items():
      signal.signal(signum, previous)
    self._previous.clear()

  @property
  def dropping(self) -> bool:
    """Whether the work is inside `droppable()`: a first Ctrl-C now drops it."""
    return self._droppable

  def _handle(self, signum, frame) -> None:
    del frame
    name = signal.Signals(signum).name
    if cli.redelivery_deferred():  # inside the unraisable hook: it comes again once the hook has returned
      return
    if cli.taking_redelivery():  # a KeyboardInterrupt raised here was swallowed (a gc callback): raise it again
      if self._raised:
        raise KeyboardInterrupt
      return
    if name == "SIGINT" and self.requested == "SIGINT":
      self._second = True
      if self.at_once is None:
        self._raise()  # the caller's `finally` blocks run
      if self.at_once_cleanup is not None:
        with contextlib.suppress(BaseException):
          self.at_once_cleanup()
      _exit_now(self.at_once)
    if self.requested is None:
      self.requested = name
      if name == "SIGINT":
        line = self.acknowledge() if callable(self.acknowledge) else self.acknowledge
        print(f"\n{line}", file=sys.stderr, flush=True)
    if name == "SIGINT" and self._droppable:
      self._raise()

  def _raise(self) -> None:
    self._raised = True
    raise KeyboardInterrupt

  @contextlib.contextmanager
  def droppable(self, enabled: bool = True) -> Iterator[None]:
    """Work that a first Ctrl-C may cut short: the block ends (KeyboardInterrupt is caught) and `requested` is
    set. `enabled=False` (e.g. several processes, which must drop the same work together) leaves it polled."""
    self._droppable = enabled
    try:
      yield
    except KeyboardInterrupt:
      if self.requested != "SIGINT" or self._second:
        raise
      self._raised = False  # it arrived
    finally:
      self._droppable = False

  def stopped(self) -> None:
    """Records that the work stopped on the request (for `stopped_by`)."""
    global _stopped_by
    _stopped_by = self.requested

"""Worker processes that end with the process that started them, however that one ends.

grain starts its workers with multiprocessing's "spawn" as daemon processes: they are stopped when the trainer
exits normally, but a trainer killed with SIGKILL (a scheduler's time limit, the OOM killer, a preempted job)
leaves them running, orphaned, holding their memory. The same holds for the frame-shard builder's pool.

`ExitWithParent(os.getpid())` (built in the parent, called first thing in each worker: grain's
`worker_init_fn`, a Pool's `initializer`) starts a daemon thread in the worker that checks the parent's pid
every `interval` seconds and ends the worker with `os._exit` once the parent is gone (the worker is then
re-parented, so `os.getppid()` changes). This works on Linux and macOS alike. Linux's
`prctl(PR_SET_PDEATHSIG)` is not used: it fires when the *thread* that started the worker ends, and grain
starts workers from short-lived pool threads.

Workers also ignore SIGINT: a terminal's Ctrl-C reaches every process of its group, and a worker that died of
it would crash its parent mid-step; the parent decides what Ctrl-C does (`xclip_jax/interrupts.py`).
"""

from __future__ import annotations

import os
import threading
import time

from xclip_jax import interrupts

EXIT_CODE = 70  # os._exit status of a worker whose parent died (EX_SOFTWARE: it did not finish its work).


def _watch(parent_pid: int, interval: float) -> None:
  while True:
    if os.getppid() != parent_pid:
      os._exit(EXIT_CODE)
    time.sleep(interval)


class ExitWithParent:
  """Picklable worker initialiser: the calling process exits (within `interval` s) once `parent_pid` is gone.

  Accepts and ignores positional arguments (grain passes the worker index and count).
  """

  def __init__(self, parent_pid: int | None = None, interval: float = 0.5):
    self.parent_pid = os.getpid() if parent_pid is None else int(parent_pid)
    self.interval = float(interval)

  def __call__(self, *_args) -> None:
    if os.getpid() == self.parent_pid:  # Called in the parent itself (no worker processes): nothing to watch.
      return
    interrupts.ignore_in_worker()  # a terminal's Ctrl-C reaches the whole process group; the parent handles it
    if os.getppid() != self.parent_pid:  # The parent died before the worker got here.
      os._exit(EXIT_CODE)
    threading.Thread(target=_watch, args=(self.parent_pid, self.interval), name="exit-with-parent",
                     daemon=True).start()

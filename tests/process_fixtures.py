"""Processes as tests meet them: a command started like a terminal's job (`LoggedProcess`: its own process group,
a log, waiting for a line, Ctrl-C to the group), and a process's children through Linux's /proc."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import time
from collections.abc import Callable


def processes() -> dict[int, tuple[int, str, str]]:
  """pid -> (parent pid, state, command line) of every process."""
  out = {}
  for entry in os.listdir("/proc"):
    if not entry.isdigit():
      continue
    try:
      with open(f"/proc/{entry}/stat", encoding="utf-8", errors="replace") as f:
        stat = f.read()
      with open(f"/proc/{entry}/cmdline", "rb") as f:
        cmdline = f.read().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
      continue
    fields = stat.rsplit(")", 1)[1].split()  # After "pid (name)": state, ppid, ...
    out[int(entry)] = (int(fields[1]), fields[0], cmdline)
  return out


def spawned_children(pid: int) -> list[int]:
  """Children of `pid` started by multiprocessing (grain workers, Pool workers)."""
  return [p for p, (ppid, _, cmd) in processes().items() if ppid == pid and "multiprocessing" in cmd]


def alive(pids) -> list[int]:
  """Those of `pids` still running (a zombie has ended; whoever adopted it may just not have reaped it yet)."""
  table = processes()
  return [p for p in pids if p in table and table[p][1] != "Z"]


class LoggedProcess:
  """A command started the way a terminal starts it, with its output in a log file.

  It runs in a session (and process group) of its own, like a shell's foreground job, so `signal_group(SIGINT)`
  is what Ctrl-C does: the signal reaches the command and every worker process it started. Use it as a context
  manager: on leaving, a group still running is killed and the log closed.
  """

  def __init__(self, command: list[str], log_path: str | os.PathLike, *, cwd: str | os.PathLike,
               env: dict[str, str]):
    self.log_path = pathlib.Path(log_path)
    self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in __exit__
    self.process = subprocess.Popen(command, cwd=cwd, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
    self.pid = self.process.pid

  def __enter__(self) -> LoggedProcess:
    return self

  def __exit__(self, *exc) -> None:
    if self.process.poll() is None:
      self.signal_group(signal.SIGKILL)
      self.process.wait()
    self._log.close()

  def log(self) -> str:
    return self.log_path.read_text(errors="replace")

  def wait_for(self, condition: str | Callable[[], bool], timeout: float = 300) -> bool:
    """Until `condition` (a text in the log, or a predicate) holds: True; False if the process ended first."""
    check = (lambda: condition in self.log()) if isinstance(condition, str) else condition
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
      if check():
        return True
      if self.process.poll() is not None:
        return check()
      time.sleep(0.05)
    raise TimeoutError(f"not reached in {timeout} s: {condition!r}\n{self.log()[-3000:]}")

  def signal_group(self, signum: int) -> None:
    """Sends `signum` to the whole process group (SIGINT: what a terminal's Ctrl-C does)."""
    os.killpg(self.pid, signum)

  def wait(self, timeout: float = 300) -> int:
    return self.process.wait(timeout=timeout)

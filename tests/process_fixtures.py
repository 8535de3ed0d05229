"""Processes as tests see them: children and whether they still run, through Linux's /proc (worker-lifetime
tests), and `LoggedProcess`, a command in its own process group that tests signal at a given line of its log."""

from __future__ import annotations

import os
import re
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
  """A command run in its own session (so in its own process group, as a terminal runs a job), its stdout and
  stderr in one log file: tests wait for a line of it, then signal the whole group as a terminal (SIGINT), a
  scheduler (SIGTERM) or a lost machine (SIGKILL) would."""

  def __init__(self, command: list[str], log_path: os.PathLike, *, env: dict[str, str], cwd: os.PathLike):
    self.log_path = log_path
    self._log = open(log_path, "w")  # noqa: SIM115 (closed in `wait`)
    self.process = subprocess.Popen(command, cwd=cwd, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                    start_new_session=True)

  @property
  def text(self) -> str:
    with open(self.log_path, encoding="utf-8", errors="replace") as f:
      return f.read()

  def wait_for(self, condition: str | Callable[[], bool], timeout: float = 600, poll: float = 0.005) -> bool:
    """Waits until the log matches `condition` (a regular expression) or `condition()` holds: True; False if the
    process ended first. Raises TimeoutError after `timeout` seconds."""
    check = (lambda: re.search(condition, self.text) is not None) if isinstance(condition, str) else condition
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
      if check():
        return True
      if self.process.poll() is not None:
        return check()
      time.sleep(poll)
    raise TimeoutError(f"{condition!r} not reached in {timeout} s; log:\n{self.text[-3000:]}")

  def signal_group(self, signum: int) -> None:
    """Sends `signum` to every process of the group (the command and its workers), as a terminal's Ctrl-C does."""
    os.killpg(self.process.pid, signum)

  def wait(self, timeout: float = 300) -> int:
    try:
      return self.process.wait(timeout=timeout)
    finally:
      self._log.close()

"""Processes as tests meet them: children and whether they still run, through Linux's /proc (worker-lifetime
tests), and `LoggedProcess`, a command started like a terminal's job (its own process group, one log) that tests
signal at a given line of its log."""

from __future__ import annotations

import contextlib
import os
import pathlib
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator


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


@contextlib.contextmanager
def _sigint_not_ignored() -> Iterator[None]:
  """A terminal's job takes Ctrl-C, whatever its starter ignores: a shell ignores SIGINT in its background jobs
  (a test run started with `nohup ... &`), and a child inherits an ignored signal, but not a handler (exec resets
  it to the default). So while a child starts, the tests' process handles SIGINT instead of ignoring it."""
  ignored = (threading.current_thread() is threading.main_thread()
             and signal.getsignal(signal.SIGINT) is signal.SIG_IGN)
  if ignored:
    signal.signal(signal.SIGINT, signal.default_int_handler)
  try:
    yield
  finally:
    if ignored:
      signal.signal(signal.SIGINT, signal.SIG_IGN)


class LoggedProcess:
  """A command run in its own session (so in its own process group, as a terminal runs a job), its stdout and
  stderr in one log file: tests wait for a line of it, then signal the whole group as a terminal (SIGINT: Ctrl-C
  reaches the command and every worker it started), a scheduler (SIGTERM) or a lost machine (SIGKILL) would.
  As a context manager: on leaving, a group still running is killed and the log closed."""

  def __init__(self, command: list[str], log_path: str | os.PathLike, *, env: dict[str, str],
               cwd: str | os.PathLike):
    self.log_path = pathlib.Path(log_path)
    self._log = open(self.log_path, "w")  # noqa: SIM115 (closed in `wait` or on leaving the context)
    with _sigint_not_ignored():
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

  @property
  def text(self) -> str:
    return self.log_path.read_text(encoding="utf-8", errors="replace")

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

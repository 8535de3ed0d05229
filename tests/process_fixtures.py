"""Finding a process's children and whether they still run, through Linux's /proc (worker-lifetime tests)."""

from __future__ import annotations

import os


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

"""Input workers end with their trainer: a trainer killed with SIGKILL leaves no grain worker behind (issue 16)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests import training_fixtures
from xclip_jax.data import worker_lifetime


def _processes() -> dict[int, tuple[int, str, str]]:
  """pid -> (parent pid, state, command line) of every process (Linux /proc)."""
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


def _alive(pids) -> list[int]:
  """Those of `pids` still running (a zombie has ended; whoever adopted it may just not have reaped it yet)."""
  table = _processes()
  return [p for p in pids if p in table and table[p][1] != "Z"]


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="finds processes through /proc (Linux)")
def test_grain_workers_exit_when_the_trainer_is_sigkilled(tmp_path):
  data = tmp_path / "data"
  command = [
      sys.executable, "-m", "xclip_jax.main",
      "--config", f"{training_fixtures.REPO / 'configs' / 'demo.py'}:shrink=true",
      "--workdir", str(tmp_path / "run"), f"--config.data.synthetic_dir={data}", "--config.data.num_workers=2",
      "--config.train.total_steps=100000", "--config.demo.synthetic.train_per_class=2",
      "--config.demo.synthetic.val_per_class=2", "--config.demo.synthetic.zero_shot_per_class=1",
      "--config.demo.synthetic.few_shot_train_per_class=2"]
  trainer = subprocess.Popen(command, cwd=training_fixtures.REPO, env=training_fixtures.subprocess_env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  try:
    workers: list[int] = []
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and trainer.poll() is None:
      table = _processes()
      workers = [p for p, (ppid, _, cmd) in table.items() if ppid == trainer.pid and "multiprocessing" in cmd]
      if len(workers) >= 2:
        break
      time.sleep(0.5)
    assert trainer.poll() is None, f"the trainer ended early: {trainer.stderr.read()[-3000:]}"
    assert len(workers) >= 2, "no grain workers appeared"
    time.sleep(2)  # Workers busy decoding, batches in flight.
    trainer.send_signal(signal.SIGKILL)
    trainer.wait(timeout=30)
    killed = time.monotonic()
    while _alive(workers) and time.monotonic() - killed < 5:
      time.sleep(0.1)
    assert not _alive(workers), f"workers {_alive(workers)} outlived their trainer by 5 s"
  finally:
    if trainer.poll() is None:
      trainer.kill()
    for pid in _alive(workers if "workers" in locals() else []):
      os.kill(pid, signal.SIGKILL)


def test_exit_with_parent_is_a_no_op_in_the_parent_itself():
  watcher = worker_lifetime.ExitWithParent()
  watcher(0, 1)  # Same process: returns, nothing started, this test goes on.
  assert watcher.parent_pid == os.getpid()

"""Input workers end with their trainer: a trainer killed with SIGKILL leaves no grain worker behind (issue 16)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests import process_fixtures, training_fixtures
from xclip_jax.data import worker_lifetime


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
      workers = process_fixtures.spawned_children(trainer.pid)
      if len(workers) >= 2:
        break
      time.sleep(0.5)
    assert trainer.poll() is None, f"the trainer ended early: {trainer.stderr.read()[-3000:]}"
    assert len(workers) >= 2, "no grain workers appeared"
    time.sleep(2)  # Workers busy decoding, batches in flight.
    trainer.send_signal(signal.SIGKILL)
    trainer.wait(timeout=30)
    killed = time.monotonic()
    while process_fixtures.alive(workers) and time.monotonic() - killed < 5:
      time.sleep(0.1)
    left = process_fixtures.alive(workers)
    assert not left, f"workers {left} outlived their trainer by 5 s"
  finally:
    if trainer.poll() is None:
      trainer.kill()
    for pid in process_fixtures.alive(workers if "workers" in locals() else []):
      os.kill(pid, signal.SIGKILL)


def test_exit_with_parent_is_a_no_op_in_the_parent_itself():
  watcher = worker_lifetime.ExitWithParent()
  watcher(0, 1)  # Same process: returns, nothing started, this test goes on.
  assert watcher.parent_pid == os.getpid()

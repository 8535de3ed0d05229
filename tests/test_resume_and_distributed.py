"""Real processes: resume after SIGKILL with the same data order, SIGTERM saves a checkpoint, and a
2-process `jax.distributed` run (CPU, gloo) training on one global mesh, restored onto another mesh."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import ml_collections
import numpy as np
import portpicker
import pytest

from tests import training_fixtures
from xclip_jax import protocols
from xclip_jax.training.checkpointing import load_model_params

STEPS = 12


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
  return training_fixtures.make_dataset(tmp_path_factory.mktemp("synthetic") / "data")


def _config_file(dataset, tmp_path, name: str, **changes):
  config = training_fixtures.tiny_config(dataset)
  config.data.num_workers = 1  # real grain worker processes
  config.train.total_steps = STEPS
  config.eval.final_clips = 1
  for dotted, value in changes.items():
    node = config
    *parents, leaf = dotted.split("__")
    for parent in parents:
      node = node[parent]
    node[leaf] = value
  return training_fixtures.write_config_file(config, tmp_path / f"{name}.py")


def _start(config_file, workdir, log_path):
  log = open(log_path, "w")  # noqa: SIM115 (closed by the caller through the process's lifetime)
  return subprocess.Popen(training_fixtures.main_command(config_file, workdir), cwd=training_fixtures.REPO,
                          env=training_fixtures.subprocess_env(), stdout=log, stderr=subprocess.STDOUT,
                          start_new_session=True), log


def _wait_for(predicate, process, timeout=300):
  deadline = time.time() + timeout
  while time.time() < deadline:
    if predicate():
      return True
    if process.poll() is not None:
      return False
    time.sleep(0.05)
  raise TimeoutError("condition not reached in time")


def _finished(result: subprocess.CompletedProcess) -> None:
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]


@pytest.fixture(scope="module")
def reference_run(dataset, tmp_path_factory):
  """An uninterrupted run: the parameters every resumed run must reproduce."""
  root = tmp_path_factory.mktemp("reference")
  _finished(training_fixtures.run_main(_config_file(dataset, root, "reference", checkpoint__every_steps=4),
                                       root / "work"))
  return load_model_params(root / "work")[1]


def test_sigkill_then_restart_continues_with_the_same_data_order(dataset, tmp_path, reference_run):
  config_file = _config_file(dataset, tmp_path, "killed", checkpoint__every_steps=2)
  workdir = tmp_path / "work"
  process, log = _start(config_file, workdir, tmp_path / "first.log")
  reached = _wait_for(lambda: (workdir / "checkpoints" / "2").is_dir(), process)
  assert reached, (tmp_path / "first.log").read_text()[-3000:]
  os.killpg(process.pid, signal.SIGKILL)  # the whole machine goes away: trainer and data workers
  process.wait()
  log.close()
  killed_at = max(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
  assert killed_at < STEPS, "the run finished before it was killed; the test proves nothing"

  result = training_fixtures.run_main(config_file, workdir)
  _finished(result)
  assert f"Resumed from {workdir / 'checkpoints'}" in result.stderr
  _, params = load_model_params(workdir)
  worst = max(float(np.max(np.abs(params[p] - reference_run[p]))) for p in reference_run)
  print(f"killed after checkpoint {killed_at}; max |resumed - uninterrupted| = {worst:.2e}")
  assert worst == 0.0  # bit-identical: same data order and same per-step randomness after the restart


def test_sigterm_saves_a_checkpoint_and_stops(dataset, tmp_path, reference_run):
  config_file = _config_file(dataset, tmp_path, "preempted", checkpoint__every_steps=1000)
  workdir = tmp_path / "work"
  log_path = tmp_path / "first.log"
  process, log = _start(config_file, workdir, log_path)
  assert _wait_for(lambda: f"step 3/{STEPS}" in log_path.read_text(), process), log_path.read_text()[-3000:]
  os.kill(process.pid, signal.SIGTERM)
  assert process.wait(timeout=120) == 0, log_path.read_text()[-3000:]
  log.close()
  saved = [int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()]
  assert len(saved) == 1 and 3 <= saved[0] < STEPS, saved
  results = json.loads((workdir / "results.json").read_text())
  assert results["status"] == "preempted" and results["step"] == saved[0]
  # Resuming finishes the run with the parameters of the uninterrupted one.
  _finished(training_fixtures.run_main(config_file, workdir))
  _, params = load_model_params(workdir)
  assert all(np.array_equal(params[p], reference_run[p]) for p in reference_run)


def test_two_processes_train_on_one_global_mesh(dataset, tmp_path):
  config = training_fixtures.tiny_config(dataset, data=4, fsdp=2, tensor=1)
  config_file = training_fixtures.write_config_file(config, tmp_path / "distributed.py")
  port = portpicker.pick_unused_port()
  workdir = tmp_path / "work"
  processes = []
  for index in range(2):
    command = training_fixtures.main_command(config_file, workdir, f"--coordinator_address=localhost:{port}",
                                             "--num_processes=2", f"--process_id={index}")
    processes.append(subprocess.Popen(command, cwd=training_fixtures.REPO, env=training_fixtures.subprocess_env(4),
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
  outputs = [p.communicate(timeout=600)[0] for p in processes]
  for index, (process, output) in enumerate(zip(processes, outputs, strict=True)):
    assert process.returncode == 0, f"process {index}:\n{output[-4000:]}"
    assert f"Process {index} of 2, 4 local / 8 global devices" in output
    # Each program is compiled, then started on both processes together (sharding.ProcessAligned).
    assert "train step compiled; waiting for the other processes" in output
  results = json.loads((workdir / "results.json").read_text())
  assert results["step"] == 2 and results["final"]["videos"] == 16  # every video counted once across hosts
  assert (workdir / "checkpoints" / "2" / "data" / "process_1-of-2.json").exists()

  # That checkpoint (2 processes x 4 devices, parameters split over fsdp=2) restores into this single
  # process on a data=8 mesh and evaluates to the same numbers.
  evaluate = config.copy_and_resolve_references()
  evaluate.mode = "evaluate"
  evaluate.mesh = ml_collections.ConfigDict({"data": 8, "fsdp": 1, "tensor": 1})
  again = protocols.run(evaluate, workdir)
  assert again["final"]["videos"] == 16
  assert again["final"]["top1"] == pytest.approx(results["final"]["top1"])
  assert again["final"]["top5"] == pytest.approx(results["final"]["top5"])

"""Real processes stopped the ways a run meets, each then rerun by the same command to the uninterrupted run's
parameters exactly: SIGKILL (resume with the same data order), SIGTERM (a scheduler's notice: the step is saved,
exit status 0) and Ctrl-C (SIGINT to the process group, as a terminal sends it: the step is saved, exit status
130; twice: stops at once). Predict reads the run's workdir without a warning and keeps its rows on Ctrl-C. A
2-process `jax.distributed` run (CPU, gloo) trains on one global mesh, restored onto another mesh. One
uninterrupted run of the tiny config is the reference of them all (tests/test_interrupts.py: other commands'
Ctrl-C). The stopped runs use a user's environment (no TPU_SKIP_MDS_QUERY, no JAX_PLATFORMS): libtpu, installed
here, must print nothing."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time

import ml_collections
import numpy as np
import portpicker
import pytest

from tests import process_fixtures, training_fixtures
from xclip_jax import protocols
from xclip_jax.training.checkpointing import load_model_params

STEPS = 12


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
  return training_fixtures.make_dataset(tmp_path_factory.mktemp("synthetic") / "data")


def _config_file(dataset, tmp_path, name: str, **changes):
  config = training_fixtures.tiny_config(dataset)
  config.data.num_workers = 1  # real grain worker processes, in the terminal's process group
  config.train.total_steps = STEPS
  config.checkpoint.every_steps = 4
  config.eval.every_steps = 4  # an evaluation to interrupt (it changes neither parameters nor data order)
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


def _run(config_file, workdir) -> subprocess.CompletedProcess:
  """The command as a user runs it; finishes, prints nothing of libtpu, no traceback."""
  result = subprocess.run(training_fixtures.main_command(config_file, workdir), cwd=training_fixtures.REPO,
                          env=training_fixtures.terminal_env(), capture_output=True, text=True, timeout=900,
                          check=False)
  _finished(result)
  training_fixtures.assert_quiet(result.stderr)
  return result


@pytest.fixture(scope="module")
def reference_run(dataset, tmp_path_factory):
  """The uninterrupted run: its workdir (predict reads it) and the parameters every stopped run must end with."""
  root = tmp_path_factory.mktemp("reference")
  _run(_config_file(dataset, root, "reference"), root / "work")
  return root / "work", load_model_params(root / "work")[1]


def _same_parameters(workdir, reference_run) -> None:
  _, params = load_model_params(workdir)
  reference = reference_run[1]
  assert params.keys() == reference.keys()
  assert all(np.array_equal(params[p], reference[p]) for p in reference)  # bit-identical


def test_sigkill_then_restart_continues_with_the_same_data_order(dataset, tmp_path, reference_run):
  config_file = _config_file(dataset, tmp_path, "killed", checkpoint__every_steps=2, eval__every_steps=-1)
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
  _same_parameters(workdir, reference_run)  # the same data order and per-step randomness after the restart


def _stopped(config_file, workdir, log_path, when: str, signum: int = signal.SIGINT, *, twice: bool = False
             ) -> tuple[int, str, float]:
  """Runs main until `when` is in its log, then `signum`: SIGINT to the process group (Ctrl-C; twice: a second
  one right after), SIGTERM to the trainer (a scheduler); (exit, log, seconds from the last signal to the exit).
  Checks that no process of the run is left and that it printed no traceback, leak or libtpu noise."""
  command = training_fixtures.main_command(config_file, workdir)
  with process_fixtures.LoggedProcess(command, log_path, cwd=training_fixtures.REPO,
                                      env=training_fixtures.terminal_env()) as run:
    assert run.wait_for(when, timeout=600), run.text[-3000:]
    workers = process_fixtures.spawned_children(run.pid)
    if signum == signal.SIGINT:
      run.signal_group(signum)
      if twice:
        time.sleep(0.2)
        run.signal_group(signum)
    else:
      os.kill(run.pid, signum)
    sent = time.monotonic()
    code = run.wait(timeout=300)
    seconds = time.monotonic() - sent
    deadline = time.monotonic() + 5
    while process_fixtures.alive(workers) and time.monotonic() < deadline:  # workers end with their trainer
      time.sleep(0.1)
    assert not process_fixtures.alive(workers), f"workers {workers} outlived the run"
    training_fixtures.assert_quiet(run.text)
    return code, run.text, seconds


def _steps_saved(workdir) -> list[int]:
  return sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())


def _stopped_line(log: str) -> str:
  [line] = [line for line in log.splitlines() if line.startswith("Stopped by ")]
  return line


def test_sigterm_and_ctrl_c_save_the_step_and_the_same_command_ends_where_an_uninterrupted_run_does(
    dataset, tmp_path, reference_run):
  config_file = _config_file(dataset, tmp_path, "stopped")
  workdir, checkpoints = tmp_path / "work", tmp_path / "work" / "checkpoints"
  # SIGTERM (a scheduler's notice, to the trainer): the step under way is finished and saved, exit status 0,
  # and results.json says the run was preempted.
  code, log, _ = _stopped(config_file, workdir, tmp_path / "0.log", f"step 1/{STEPS}", signal.SIGTERM)
  assert code == 0, log[-3000:]
  results = json.loads((workdir / "results.json").read_text())
  step = results["step"]
  assert results["status"] == "preempted" and _steps_saved(workdir) == [step] and step < 4, (results, log[-3000:])
  assert _stopped_line(log) == (f"Stopped by SIGTERM at step {step} of {STEPS}: the checkpoint of step {step} is in "
                                f"{checkpoints}; the same command resumes from it.")

  # Ctrl-C during the evaluation after step 4: the evaluation is dropped, step 4 is saved.
  code, log, seconds = _stopped(config_file, workdir, tmp_path / "1.log", f"step 4/{STEPS}")
  assert code == 130, log[-3000:]
  assert "Ctrl-C: dropping this evaluation, saving step 4 and stopping" in log
  assert _stopped_line(log) == (f"Stopped by Ctrl-C at step 4 of {STEPS}: the checkpoint of step 4 is in "
                                f"{checkpoints}; the same command resumes from it.")
  assert _steps_saved(workdir)[-1] == 4 and seconds < 60

  # Ctrl-C during training: the step under way is finished and saved.
  code, log, seconds = _stopped(config_file, workdir, tmp_path / "2.log", f"step 6/{STEPS}")
  assert code == 130, log[-3000:]
  step = int(_stopped_line(log).split(" at step ")[1].split()[0])
  assert 6 <= step < STEPS and _steps_saved(workdir)[-1] == step and seconds < 60

  # Ctrl-C twice: stopped at once, the checkpoints already complete are kept.
  before = _steps_saved(workdir)
  code, log, seconds = _stopped(config_file, workdir, tmp_path / "3.log", f"step {step + 2}/{STEPS}", twice=True)
  assert code == 130, log[-3000:]
  assert "Stopped at once by a second Ctrl-C" in log and "Stopped by Ctrl-C at step" not in log
  assert before[-1] in _steps_saved(workdir) and seconds < 10  # (older ones may go: checkpoint.keep)

  # The same command once more finishes the run: exactly the uninterrupted run's parameters.
  _run(config_file, workdir)
  _same_parameters(workdir, reference_run)
  assert not [p for p in workdir.rglob("*") if "tmp" in p.name], "temporary files left in the workdir"


def _prediction_rows(path) -> list[dict]:
  with open(path, newline="", encoding="utf-8") as f:
    return list(csv.DictReader(f))


def test_predict_from_a_training_workdir_prints_no_warning_and_ctrl_c_keeps_the_rows(reference_run, dataset,
                                                                                     tmp_path):
  workdir, _ = reference_run
  classes = dataset / "supervised" / "classes.csv"
  videos = sorted(str(p) for p in dataset.rglob("*.mp4"))
  base = [sys.executable, "-m", "xclip_jax.predict", "--checkpoint", str(workdir), "--labels-file", str(classes)]
  out = tmp_path / "predictions.csv"
  whole = subprocess.run([*base, "--video", str(dataset), "--out", str(out), "--no-progress"],
                         cwd=training_fixtures.REPO, env=training_fixtures.terminal_env(), capture_output=True,
                         text=True, timeout=600, check=False)
  assert whole.returncode == 0, whole.stderr[-3000:]
  assert whole.stderr.splitlines() == [f"predict: wrote {len(videos)} rows to {out}"]  # nothing else
  assert len(_prediction_rows(out)) == len(videos)

  partial = tmp_path / "partial.csv"
  command = [*base, "--video", str(dataset), "--out", str(partial), "--batch-size", "1", "--clips", "4", "--crops",
             "3"]  # 12 views a video: slow enough to be stopped half-way
  with process_fixtures.LoggedProcess(command, tmp_path / "predict.log", cwd=training_fixtures.REPO,
                                      env=training_fixtures.terminal_env()) as run:
    assert run.wait_for(re.escape(f"| 1/{len(videos)}"), timeout=600), run.text[-3000:]
    run.signal_group(signal.SIGINT)
    assert run.wait(timeout=120) == 130, run.text[-3000:]
    log = run.text
  [line] = [line for line in log.splitlines() if line.startswith("predict: stopped")]
  done = int(line.split(" after ")[1].split()[0])
  assert line == f"predict: stopped by Ctrl-C after {done} of {len(videos)} videos; their rows are in {partial}"
  assert 1 <= done < len(videos)
  rows = _prediction_rows(partial)
  assert [r["path"] for r in rows] == [r["path"] for r in _prediction_rows(out)][:done]
  assert sorted(os.listdir(tmp_path)) == sorted(["predictions.csv", "partial.csv", "predict.log"])  # no temp file
  training_fixtures.assert_quiet(log)


def test_two_processes_train_on_one_global_mesh(dataset, tmp_path):
  config = training_fixtures.tiny_config(dataset, data=4, fsdp=2, tensor=1)
  config_file = training_fixtures.write_config_file(config, tmp_path / "distributed.py")
  port = portpicker.pick_unused_port()
  workdir = tmp_path / "work"
  processes = []
  for index in range(2):
    command = training_fixtures.main_command(config_file, workdir, f"--coordinator-address=localhost:{port}",
                                             "--num-processes=2", f"--process-id={index}")
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

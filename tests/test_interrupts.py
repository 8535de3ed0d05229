"""Ctrl-C as a terminal sends it (SIGINT to the command's whole process group), on real commands: training saves
the step it stands on and the same command resumes to the uninterrupted run's parameters exactly; a second Ctrl-C
stops at once; predict keeps the rows it finished; a frame-shard build keeps its finished shards and a search
index the videos it embedded. Nothing half-written, no worker left running, no leaked shared memory, one line
each, no traceback. The runs use a user's environment (no TPU_SKIP_MDS_QUERY, no JAX_PLATFORMS): libtpu,
installed here, must print nothing either."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests import data_fixtures as F
from tests import process_fixtures, search_fixtures, training_fixtures
from tests.test_cli import user_env
from xclip_jax import cli
from xclip_jax.training.checkpointing import load_model_params

STEPS = 12
NOISE = ("Traceback", "leaked shared_memory", "Exception ignored", "jellyfish", "unexpected worker hostname",
         "Failed to find host bounds", "could not be restored")


def _env() -> dict[str, str]:
  """A user's environment (with the tests' compilation cache), unless an accelerator would then be used."""
  env = user_env() if cli.cpu_unless_accelerator({}) else training_fixtures.subprocess_env()
  env["JAX_COMPILATION_CACHE_DIR"] = training_fixtures.subprocess_env()["JAX_COMPILATION_CACHE_DIR"]
  return env


def _quiet(log: str) -> None:
  found = [line for line in log.splitlines() if any(noise in line for noise in NOISE)]
  assert not found, "\n".join(found)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
  return training_fixtures.make_dataset(tmp_path_factory.mktemp("synthetic") / "data")


@pytest.fixture(scope="module")
def config_file(dataset, tmp_path_factory):
  config = training_fixtures.tiny_config(dataset)
  config.data.num_workers = 1  # real grain worker processes, in the terminal's process group
  config.train.total_steps = STEPS
  config.checkpoint.every_steps = 4
  config.eval.every_steps = 4  # an evaluation to interrupt (it changes neither parameters nor data order)
  return training_fixtures.write_config_file(config, tmp_path_factory.mktemp("config") / "interrupted.py")


@pytest.fixture(scope="module")
def reference_run(config_file, tmp_path_factory):
  """The uninterrupted run: its workdir and parameters."""
  workdir = tmp_path_factory.mktemp("reference") / "work"
  result = subprocess.run(training_fixtures.main_command(config_file, workdir), cwd=training_fixtures.REPO,
                          env=_env(), capture_output=True, text=True, timeout=900, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  _quiet(result.stderr)
  return workdir, load_model_params(workdir)[1]


def _interrupted(config_file, workdir, log_path, when: str, *, twice: bool = False) -> tuple[int, str, float]:
  """Runs main until `when` is in its log, then Ctrl-C (twice: a second one right after); (exit, log, seconds
  from the last Ctrl-C to the exit). Checks that no process of the run is left."""
  command = training_fixtures.main_command(config_file, workdir)
  with process_fixtures.LoggedProcess(command, log_path, cwd=training_fixtures.REPO, env=_env()) as run:
    assert run.wait_for(when, timeout=600), run.text[-3000:]
    workers = process_fixtures.spawned_children(run.pid)
    run.signal_group(signal.SIGINT)
    if twice:
      time.sleep(0.2)
      run.signal_group(signal.SIGINT)
    sent = time.monotonic()
    code = run.wait(timeout=300)
    seconds = time.monotonic() - sent
    deadline = time.monotonic() + 5
    while process_fixtures.alive(workers) and time.monotonic() < deadline:  # workers end with their trainer
      time.sleep(0.1)
    assert not process_fixtures.alive(workers), f"workers {workers} outlived the run"
    return code, run.text, seconds


def _steps_saved(workdir) -> list[int]:
  return sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())


def test_ctrl_c_saves_the_step_and_the_same_command_ends_where_an_uninterrupted_run_does(config_file, tmp_path,
                                                                                        reference_run):
  workdir = tmp_path / "work"
  # During the evaluation after step 4: the evaluation is dropped, step 4 is saved.
  code, log, seconds = _interrupted(config_file, workdir, tmp_path / "1.log", f"step 4/{STEPS}")
  assert code == 130, log[-3000:]
  assert "Ctrl-C: dropping this evaluation, saving step 4 and stopping" in log
  stopped = [line for line in log.splitlines() if line.startswith("Stopped by Ctrl-C")]
  assert stopped == [f"Stopped by Ctrl-C at step 4 of {STEPS}: the checkpoint of step 4 is in "
                     f"{workdir / 'checkpoints'}; the same command resumes from it."], log[-3000:]
  assert _steps_saved(workdir) == [4] and seconds < 60
  _quiet(log)

  # During training: the step under way is finished and saved.
  code, log, seconds = _interrupted(config_file, workdir, tmp_path / "2.log", f"step 6/{STEPS}")
  assert code == 130, log[-3000:]
  [stopped] = [line for line in log.splitlines() if line.startswith("Stopped by Ctrl-C")]
  step = int(stopped.split(" at step ")[1].split()[0])
  assert 6 <= step < STEPS and _steps_saved(workdir)[-1] == step and seconds < 60
  _quiet(log)

  # Ctrl-C twice: stopped at once, the checkpoints already complete are kept.
  before = _steps_saved(workdir)
  code, log, seconds = _interrupted(config_file, workdir, tmp_path / "3.log", f"step {step + 2}/{STEPS}", twice=True)
  assert code == 130, log[-3000:]
  assert "Stopped at once by a second Ctrl-C" in log and "Stopped by Ctrl-C at step" not in log
  assert set(before) <= set(_steps_saved(workdir)) and seconds < 10
  _quiet(log)

  # The same command once more finishes the run: exactly the uninterrupted run's parameters.
  result = subprocess.run(training_fixtures.main_command(config_file, workdir), cwd=training_fixtures.REPO,
                          env=_env(), capture_output=True, text=True, timeout=900, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  _quiet(result.stderr)
  _, params = load_model_params(workdir)
  reference = reference_run[1]
  assert params.keys() == reference.keys()
  assert all(np.array_equal(params[p], reference[p]) for p in reference)
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
                         cwd=training_fixtures.REPO, env=_env(), capture_output=True, text=True, timeout=600,
                         check=False)
  assert whole.returncode == 0, whole.stderr[-3000:]
  assert whole.stderr.splitlines() == [f"predict: wrote {len(videos)} rows to {out}"]  # nothing else
  assert len(_prediction_rows(out)) == len(videos)

  partial = tmp_path / "partial.csv"
  command = [*base, "--video", str(dataset), "--out", str(partial), "--batch-size", "1", "--clips", "4", "--crops",
             "3"]  # 12 views a video: slow enough to be stopped half-way
  with process_fixtures.LoggedProcess(command, tmp_path / "predict.log", cwd=training_fixtures.REPO,
                                      env=_env()) as run:
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
  _quiet(log)


def test_ctrl_c_stops_a_frame_shard_build_keeping_its_finished_shards(tmp_path):
  root = tmp_path / "videos"
  for c in range(2):
    for k in range(4):
      F.write_index_video(str(root / f"class_{c}" / f"v{k}.mp4"), 240, 96, 128, fps=30)
  out, partial = tmp_path / "out", tmp_path / "out.partial"
  command = [sys.executable, str(training_fixtures.REPO / "scripts" / "build_frame_shards.py"), "--root", str(root),
             "--out", str(out), "--quiet", "--videos-per-shard", "1", "--workers", "2"]
  with process_fixtures.LoggedProcess(command, tmp_path / "build.log", cwd=training_fixtures.REPO,
                                      env=_env()) as run:
    assert run.wait_for(lambda: bool(list(partial.glob("*.array_record.json"))), timeout=300), run.text
    workers = process_fixtures.spawned_children(run.pid)
    run.signal_group(signal.SIGINT)
    assert run.wait(timeout=60) == 130, run.text
    log = run.text
  assert log.strip().splitlines()[-1] == (f"build_frame_shards.py: stopped by Ctrl-C; the shards finished so far "
                                          f"are kept in {out}.partial and the same command continues from them")
  _quiet(log)
  deadline = time.monotonic() + 5
  while process_fixtures.alive(workers) and time.monotonic() < deadline:
    time.sleep(0.1)
  assert workers and not process_fixtures.alive(workers)
  assert not list(partial.glob("*.tmp-*")) and not out.exists()
  finished = {p.name.removesuffix(".json") for p in partial.glob("*.array_record.json")}
  assert all((partial / name).is_file() for name in finished)
  again = subprocess.run(command, cwd=training_fixtures.REPO, env=_env(), capture_output=True, text=True,
                         timeout=300, check=False)
  assert again.returncode == 0 and "wrote 8 of 8 videos" in again.stdout, again.stderr[-3000:]
  assert f"{len(finished)} of 8 shards already done" in again.stderr and not partial.exists()
  assert json.loads((out / "index.json").read_text())["build"]["stored"] == 8


def test_ctrl_c_stops_a_search_index_keeping_the_videos_embedded(tmp_path):
  """Ctrl-C once the first part is written: the build stops after the video under way, writes what it embedded,
  says how many of how many videos are in the index (exit 130); the same command embeds only the others."""
  from xclip_jax import pretrained
  from xclip_jax.models.config import variant_config
  from xclip_jax.models.params import flat_params
  from xclip_jax.models.xclip import create_model
  from xclip_jax.search import store

  config = variant_config("tiny", frames=training_fixtures.FRAMES, **training_fixtures.TINY_MODEL)
  pretrained.save_pretrained(tmp_path / "model", config, flat_params(create_model(config, seed=0)))
  videos = [tmp_path / f"v{i}.mp4" for i in range(4)]
  for i, video in enumerate(videos):
    search_fixtures.write_long_video(video, [0, 1, 2, 3] * 2, seed=i)
  out = tmp_path / "index"
  command = [sys.executable, "-m", "xclip_jax.search", "index", "--checkpoint", str(tmp_path / "model"), "--videos",
             *map(str, videos), "--out", str(out), "--window", "2", "--stride", "1", "--part-windows", "1",
             "--no-progress"]
  with process_fixtures.LoggedProcess(command, tmp_path / "index.log", cwd=training_fixtures.REPO,
                                      env=_env()) as run:
    assert run.wait_for(lambda: bool(list((out / "parts").glob("*.report.json"))), timeout=300), run.text
    run.signal_group(signal.SIGINT)
    assert run.wait(timeout=120) == 130, run.text
    log = run.text
  done = store.describe(str(out))["videos"]
  assert 1 <= done < len(videos), log
  assert log.strip().splitlines()[-1] == (f"search index: stopped by Ctrl-C after {done} of {len(videos)} videos; "
                                          f"their windows are in {out} and the same command continues")
  _quiet(log)
  again = subprocess.run(command, cwd=training_fixtures.REPO, env=_env(),
                         capture_output=True, text=True, timeout=300, check=False)
  assert again.returncode == 0 and f"{done} already in the index" in again.stderr, again.stderr[-3000:]
  assert store.describe(str(out))["videos"] == len(videos)

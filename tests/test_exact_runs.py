"""A run is a function of its config, checked the way a user runs the demo: `python -m xclip_jax.main --config
configs/demo.py:shrink=true` on one CPU device, data generated and stored as frame shards by the run itself.

- Two runs of one command end with identical parameters and results, under different memory contents
  (glibc's MALLOC_PERTURB_ fills fresh allocations with a different byte in each run: a library that reads memory
  it never wrote shows up here on every machine, not only on a busy one; the x264 encoder once did, issue 21) and
  with JAX's persistent compilation cache off, cold and warm.
- A run killed with SIGKILL in each phase (data generation, frame-shard building, compilation, training, a
  checkpoint being written, between the demo's stages), then rerun until it finishes, ends with the uninterrupted
  run's parameters and results, and leaves no temporary files or folders behind.
"""

from __future__ import annotations

import json
import os
import signal
import sys

import numpy as np
import pytest

from tests import training_fixtures
from tests.process_fixtures import LoggedProcess
from xclip_jax.training.checkpointing import load_model_params

STAGES = ("supervised", "few_shot")


def _command(workdir) -> list[str]:
  return [sys.executable, "-m", "xclip_jax.main", f"--config={training_fixtures.REPO / 'configs' / 'demo.py'}"
          ":shrink=true", f"--workdir={workdir}", *training_fixtures.SMALL_DEMO_DATA]


def _env(perturb: int, cache_dir=None) -> dict[str, str]:
  """A user's environment (one CPU device) with glibc's allocation fill byte set; no compilation cache unless
  `cache_dir`."""
  env = training_fixtures.subprocess_env()
  for key in [k for k in env if k.startswith(("JAX_COMPILATION_CACHE", "JAX_PERSISTENT_CACHE"))]:
    del env[key]
  env["MALLOC_PERTURB_"] = str(perturb)
  if cache_dir is not None:
    env.update(JAX_COMPILATION_CACHE_DIR=str(cache_dir), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
               JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="-1")
  return env


def _run_to_end(workdir, log_path, env) -> str:
  run = LoggedProcess(_command(workdir), log_path, env=env, cwd=training_fixtures.REPO)
  code = run.wait(timeout=900)
  assert code == 0, run.text[-5000:]
  return run.text


def _outcome(workdir) -> tuple[dict, dict]:
  """Parameters of both trained stages, and results.json without the report's path (the workdir's name)."""
  params = {stage: load_model_params(workdir / stage)[1] for stage in STAGES}
  results = json.loads((workdir / "results.json").read_text())
  results["report"].pop("path")
  return params, results


def _differences(params, reference) -> dict[str, float]:
  """max |a - b| per stage; 0.0 means bit-identical (NaN-aware: NaNs in the same places count as equal)."""
  out = {}
  for stage in STAGES:
    assert params[stage].keys() == reference[stage].keys()
    out[stage] = max(0.0 if np.array_equal(params[stage][p], reference[stage][p], equal_nan=True)
                     else float(np.max(np.abs(params[stage][p] - reference[stage][p]))) for p in reference[stage])
  return out


def _temporaries(workdir) -> list[str]:
  """Files or folders a writer meant to rename or delete: atomic_io staging, Orbax's, half-written shards."""
  return sorted(str(p.relative_to(workdir)) for p in workdir.rglob("*")
                if ".tmp-" in p.name or ".old-" in p.name or "orbax-checkpoint-tmp" in p.name
                or p.name.endswith(".partial"))


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
  """One compilation cache for this module's runs: cold in the first run that uses it, warm after."""
  return tmp_path_factory.mktemp("compilation_cache")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  """One uninterrupted demo, no compilation cache: what every other run must reproduce exactly."""
  root = tmp_path_factory.mktemp("reference")
  _run_to_end(root / "work", root / "run.log", _env(perturb=85))
  return _outcome(root / "work")


def test_the_same_command_twice_gives_identical_parameters(tmp_path, reference, shared_cache):
  """The reference ran without a compilation cache; this run fills a cold one (the kill test reads it warm)."""
  _run_to_end(tmp_path / "work", tmp_path / "run.log", _env(perturb=170, cache_dir=shared_cache))
  params, results = _outcome(tmp_path / "work")
  assert _differences(params, reference[0]) == {"supervised": 0.0, "few_shot": 0.0}
  assert results == reference[1]


def _data_being_generated(workdir):
  """True once the synthetic data's staging folder holds a video (generation under way, not finished)."""
  return lambda: any(workdir.glob(".data.tmp-*/videos/*/*/*.mp4"))


# (phase, when to kill, what must hold right after the kill to show the kill fell in that phase)
PHASES = (
    ("data generation", "generating", lambda w: not (w / "data").exists()),
    ("frame-shard building", r"Storing supervised/val as frame shards",
     lambda w: not (w / "data/frames/supervised/val/index.json").exists()),
    ("compilation", r"Parameters: ", lambda w: not (w / "supervised/checkpoints/10").exists()),
    ("a checkpoint being written", r"Saving checkpoint for step 10 ", lambda w: not (w / "results.json").exists()),
    ("training", r"step 15/20 ", lambda w: not (w / "supervised/checkpoints/20").exists()),
    ("between stages", r"\d+ training videos, 4 classes", lambda w: not (w / "few_shot/checkpoints").exists()),
)


def test_killed_in_every_phase_then_rerun_ends_as_the_uninterrupted_run(tmp_path, reference, shared_cache):
  workdir = tmp_path / "work"
  env_cache = shared_cache
  for number, (phase, trigger, in_phase) in enumerate(PHASES):
    run = LoggedProcess(_command(workdir), tmp_path / f"run{number}.log", env=_env(perturb=17 * (number + 1),
                        cache_dir=env_cache), cwd=training_fixtures.REPO)
    condition = _data_being_generated(workdir) if trigger == "generating" else trigger
    assert run.wait_for(condition), f"{phase}: the run ended before the phase\n{run.text[-3000:]}"
    run.signal_group(signal.SIGKILL)  # the machine goes away: the trainer and its data workers
    run.wait()
    assert in_phase(workdir), f"the kill meant for {phase} fell later; the test proves nothing for that phase"
  text = _run_to_end(workdir, tmp_path / "last.log", _env(perturb=255, cache_dir=env_cache))
  assert "Resumed from" in text  # the few-shot stage's checkpoints were kept
  params, results = _outcome(workdir)
  assert _differences(params, reference[0]) == {"supervised": 0.0, "few_shot": 0.0}
  assert results == reference[1]
  assert _temporaries(workdir) == []
  assert os.listdir(workdir / "supervised" / "checkpoints")  # the run's own checkpoints are all there is

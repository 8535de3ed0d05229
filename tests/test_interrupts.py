"""Ctrl-C as a terminal sends it (SIGINT to the command's whole process group) on the long commands other than
training (whose Ctrl-C, SIGTERM and predict's are in tests/test_resume_and_distributed.py, beside the run they
are compared with): the demo in its data generation and frame-shard building, a frame-shard build, which keeps its
finished shards, and a search index, which keeps the videos it embedded; the same command continues. Nothing
half-written, no worker left running, one line each, no traceback, in a user's environment (libtpu, installed
here, prints nothing)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

from tests import data_fixtures as F
from tests import process_fixtures, search_fixtures, training_fixtures

VIDEOS = 24  # of the frame-shard build, one a shard
DEMO_STOPPED = ("xclip_jax.main: stopped by Ctrl-C; what was complete is kept (checkpoints, generated data, frame "
                "shards) and the same command continues from it")


def test_ctrl_c_stops_a_frame_shard_build_keeping_its_finished_shards(tmp_path):
  root = tmp_path / "videos"
  for c in range(3):
    for k in range(VIDEOS // 3):  # enough for the build to be under way when Ctrl-C comes, on a fast machine too
      F.write_index_video(str(root / f"class_{c}" / f"v{k}.mp4"), 240, 96, 128, fps=30)
  out, partial = tmp_path / "out", tmp_path / "out.partial"
  command = [sys.executable, str(training_fixtures.REPO / "scripts" / "build_frame_shards.py"), "--root", str(root),
             "--out", str(out), "--quiet", "--videos-per-shard", "1", "--workers", "2"]
  with process_fixtures.LoggedProcess(command, tmp_path / "build.log", cwd=training_fixtures.REPO,
                                      env=training_fixtures.terminal_env()) as run:
    assert run.wait_for(lambda: bool(list(partial.glob("*.array_record.json"))), timeout=300), run.text
    workers = process_fixtures.spawned_children(run.pid)
    run.signal_group(signal.SIGINT)
    assert run.wait(timeout=60) == 130, run.text
    log = run.text
  assert log.strip().splitlines()[-1] == (f"build_frame_shards.py: stopped by Ctrl-C; the shards finished so far "
                                          f"are kept in {out}.partial and the same command continues from them")
  training_fixtures.assert_quiet(log)
  deadline = time.monotonic() + 5
  while process_fixtures.alive(workers) and time.monotonic() < deadline:
    time.sleep(0.1)
  assert workers and not process_fixtures.alive(workers)
  assert not list(partial.glob("*.tmp-*")) and not out.exists()
  finished = {p.name.removesuffix(".json") for p in partial.glob("*.array_record.json")}
  assert all((partial / name).is_file() for name in finished)
  again = subprocess.run(command, cwd=training_fixtures.REPO, env=training_fixtures.terminal_env(),
                         capture_output=True, text=True, timeout=300, check=False)
  assert again.returncode == 0 and f"wrote {VIDEOS} of {VIDEOS} videos" in again.stdout, again.stderr[-3000:]
  assert f"{len(finished)} of {VIDEOS} shards already done" in again.stderr and not partial.exists()
  assert json.loads((out / "index.json").read_text())["build"]["stored"] == VIDEOS


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
                                      env=training_fixtures.terminal_env()) as run:
    assert run.wait_for(lambda: bool(list((out / "parts").glob("*.report.json"))), timeout=300), run.text
    run.signal_group(signal.SIGINT)
    assert run.wait(timeout=120) == 130, run.text
    log = run.text
  done = store.describe(str(out))["videos"]
  assert 1 <= done < len(videos), log
  assert log.strip().splitlines()[-1] == (f"search index: stopped by Ctrl-C after {done} of {len(videos)} videos; "
                                          f"their windows are in {out} and the same command continues")
  training_fixtures.assert_quiet(log)
  again = subprocess.run(command, cwd=training_fixtures.REPO, env=training_fixtures.terminal_env(),
                         capture_output=True, text=True, timeout=300, check=False)
  assert again.returncode == 0 and f"{done} already in the index" in again.stderr, again.stderr[-3000:]
  assert store.describe(str(out))["videos"] == len(videos)


def _temporaries(workdir) -> list[str]:
  """Files or folders a writer meant to rename or delete (atomic_io's staging and backups, Orbax's)."""
  return sorted(str(p.relative_to(workdir)) for p in workdir.rglob("*")
                if ".tmp-" in p.name or ".old-" in p.name or "orbax-checkpoint-tmp" in p.name)


def test_ctrl_c_stops_the_demo_while_it_makes_its_data_keeping_what_is_complete(tmp_path):
  """The shrunk demo on a small dataset, Ctrl-C while it generates its videos, then (rerun) while it stores them
  as frame shards: exit 130 within seconds, one line, no staging folder left; the finished videos are kept."""
  workdir = tmp_path / "work"
  command = [sys.executable, "-m", "xclip_jax.main", "--config", "configs/demo.py:shrink=true", "--workdir",
             str(workdir), *training_fixtures.SMALL_DEMO_DATA]
  phases = (
      ("data generation", lambda: any(workdir.glob(".data.tmp-*/videos/*/*/*.mp4")),
       lambda: not (workdir / "data").exists()),
      ("frame-shard building", "Storing supervised/val as frame shards",
       lambda: (workdir / "data" / "manifest.json").exists() and not (
           workdir / "data" / "frames" / "supervised" / "val" / "index.json").exists()),
  )
  for phase, when, in_phase in phases:
    with process_fixtures.LoggedProcess(command, tmp_path / f"{phase}.log", cwd=training_fixtures.REPO,
                                        env=training_fixtures.terminal_env()) as run:
      assert run.wait_for(when, timeout=300), f"{phase}: the run ended before the phase\n{run.text[-3000:]}"
      run.signal_group(signal.SIGINT)
      sent = time.monotonic()
      assert run.wait(timeout=60) == 130, run.text[-3000:]
      seconds = time.monotonic() - sent
      log = run.text
    assert in_phase(), f"the Ctrl-C meant for {phase} fell later; the test proves nothing for that phase"
    assert log.strip().splitlines()[-1] == DEMO_STOPPED and seconds < 30, (seconds, log[-3000:])
    training_fixtures.assert_quiet(log)
    assert _temporaries(tmp_path) == [], phase

"""Timelines, the search index and text queries (issue 23), on long videos joined from synthetic clips of known
classes (segment boundaries known) with a small model trained through `main` as the demo trains one
(tests/search_fixtures.py). Real parts: PyAV-written videos, a converted model directory, subprocesses (one
SIGKILLed mid-build), fake-gcs-server on 127.0.0.1 and Debian's headless Chromium for the results page."""

from __future__ import annotations

import csv
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests import data_fixtures, gcs_fixtures, search_fixtures, training_fixtures
from xclip_jax import predict, pretrained
from xclip_jax.search import cli, store
from xclip_jax.training import checkpointing

NAMES = search_fixtures.NAMES
# The classes of each video's 2 s segments, in order.
ORDERS = {"a.mp4": [0, 1, 2, 3, 0, 2, 1, 3], "b.mp4": [3, 2, 1, 0, 3, 1], "c.mp4": [1, 3, 0, 2, 1, 0]}
WINDOW = ["--window", "2", "--stride", "1"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> pathlib.Path:
  """The trained model as a converted-model directory (what users pass as --checkpoint)."""
  root = tmp_path_factory.mktemp("search_model")
  workdir = search_fixtures.train_model(search_fixtures.write_training_folders(root / "videos"), root / "run")
  path = root / "model"
  pretrained.save_pretrained(path, *checkpointing.load_model_params(workdir))
  return path


@pytest.fixture(scope="module")
def long_videos(tmp_path_factory) -> tuple[pathlib.Path, dict]:
  """A folder of long videos (segments as ORDERS says) and one broken file; {name: [(start, end, class)]}."""
  folder = tmp_path_factory.mktemp("long_videos")
  segments = {name: search_fixtures.write_long_video(folder / name, order, seed=i)
              for i, (name, order) in enumerate(ORDERS.items())}
  data_fixtures.write_corrupt(str(folder / "broken.mp4"))
  return folder, segments


def inside(segments, start: float, end: float) -> int | None:
  """The class of the segment that holds [start, end] whole, else None."""
  return next((c for s, e, c in segments if s <= start + 1e-6 and end <= e + 1e-6), None)


def iou(a: tuple[float, float], b: tuple[float, float]) -> float:
  overlap = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
  return overlap / (max(a[1], b[1]) - min(a[0], b[0]))


def test_timeline_top1_inside_segments_is_the_segment_class(model_dir, long_videos, tmp_path, capsys):
  folder, segments = long_videos
  out = tmp_path / "timeline.csv"
  code = predict.main(["--checkpoint", str(model_dir), "--video", str(folder), "--labels", ",".join(NAMES),
                       "--timeline", *WINDOW, "--out", str(out), "--no-progress"])
  assert code == 1  # the broken file
  assert "broken.mp4" in capsys.readouterr().err
  rows = list(csv.DictReader(out.open()))
  assert list(rows[0])[:7] == ["path", "start_s", "end_s", "status", "message", "label_1", "probability_1"]
  [broken] = [r for r in rows if r["path"].endswith("broken.mp4")]
  assert broken["status"] == "error" and broken["message"]
  checked = correct = 0
  for name, segs in segments.items():
    windows = [r for r in rows if r["path"].endswith(name)]
    assert len(windows) == int(segs[-1][1]) - 1  # 2 s windows every 1 s
    for r in windows:
      expected = inside(segs, float(r["start_s"]), float(r["end_s"]))
      if expected is not None:
        checked += 1
        correct += r["label_1"] == NAMES[expected]
  print(f"timeline: top-1 = segment class for {correct} of {checked} windows inside segments")
  assert checked == sum(map(len, ORDERS.values())) and correct == checked
  picture = out.with_suffix(".png")
  from PIL import Image

  assert np.asarray(Image.open(picture).convert("L")).std() > 10


@pytest.fixture(scope="module")
def index(model_dir, long_videos, tmp_path_factory) -> pathlib.Path:
  folder, _ = long_videos
  out = tmp_path_factory.mktemp("index") / "idx"
  code = cli.main(["index", "--checkpoint", str(model_dir), "--videos", str(folder), "--out", str(out), *WINDOW,
                   "--no-progress"])
  assert code == 1  # the broken file, named in the report; the others are indexed
  return out


def test_each_class_query_finds_a_segment_of_that_class_first(model_dir, long_videos, index, capsys):
  _, segments = long_videos
  report = store.describe(str(index))
  assert report["videos"] == 3 and [f["video"].endswith("broken.mp4") for f in report["failed"]] == [True]
  assert cli.main(["info", "--index", str(index)]) == 0
  assert "failed: " in capsys.readouterr().out
  hits, ious = 0, []
  for c, name in enumerate(NAMES):
    out = index.parent / f"q{c}.csv"
    assert cli.main(["query", "--index", str(index), "--text", name, "--top", "3", "--out", str(out)]) == 0
    first = next(csv.DictReader(out.open()))
    segs = segments[pathlib.Path(first["video"]).name]
    best = inside(segs, float(first["best_start_s"]), float(first["best_end_s"]))
    hits += best == c
    moment = (float(first["start_s"]), float(first["end_s"]))
    ious.append(max(iou(moment, (s, e)) for s, e, k in segs if k == c))
  print(f"search: recall@1 {hits}/{len(NAMES)}, temporal IoU of the first moment {np.round(ious, 2).tolist()} "
        f"(mean {np.mean(ious):.2f})")
  assert hits == len(NAMES)
  assert np.mean(ious) >= 0.5


def test_rerank_and_the_page_in_headless_chromium(model_dir, index, tmp_path):
  chromium = shutil.which("chromium")
  if chromium is None:
    if os.environ.get("CI"):
      pytest.fail("chromium is missing: .ci/run installs Debian's chromium so that this test runs in CI")
    pytest.skip("no /usr/bin/chromium (apt-get install -y chromium)")
  page, out = tmp_path / "results.html", tmp_path / "results.csv"
  assert cli.main(["query", "--index", str(index), "--text", NAMES[2], "--top", "3", "--rerank", "2", "--out",
                   str(out), "--html", str(page)]) == 0
  rows = list(csv.DictReader(out.open()))
  assert [bool(r["rerank_score"]) for r in rows] == [True, True, False][:len(rows)]
  browser = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=8000"]
  dom = subprocess.run(browser + ["--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120).stdout
  from html.parser import HTMLParser

  class Hits(HTMLParser):
    def __init__(self):
      super().__init__()
      self.hits, self.videos, self.images = [], [], 0

    def handle_starttag(self, tag, attrs):
      attrs = dict(attrs)
      if "hit" in attrs.get("class", "").split():
        self.hits.append(attrs)
      elif tag == "video":
        self.videos.append(attrs)
      elif tag == "img":
        self.images += 1

  parsed = Hits()
  parsed.feed(dom)
  assert len(parsed.hits) == len(rows) and parsed.images == 6 * len(rows)
  for hit, video, row in zip(parsed.hits, parsed.videos, rows, strict=True):
    assert hit["data-video"] == row["video"]
    assert video.get("data-state") == "loaded", video  # the browser opened the H.264 file
    assert abs(float(video["data-current-time"]) - float(row["start_s"])) < 0.2  # the #t=start,end fragment
  shot = tmp_path / "page.png"
  subprocess.run(browser + ["--window-size=1000,800", f"--screenshot={shot}", page.as_uri()], capture_output=True,
                 timeout=120, check=True)
  from PIL import Image

  pixels = np.asarray(Image.open(shot).convert("RGB"), np.float32)
  assert pixels.std() > 20 and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 200  # not blank


def _index_command(model_dir, videos, out, *extra):
  return [sys.executable, "-m", "xclip_jax.search", "index", "--checkpoint", str(model_dir), "--videos",
          *map(str, videos), "--out", str(out), *WINDOW, "--no-progress", *extra]


def _content(index) -> tuple:
  loaded = store.load(str(index))
  order = np.lexsort((loaded.start_s, loaded.video.astype(str)))
  return loaded.video[order].tolist(), loaded.start_s[order].tolist(), loaded.vectors[order]


def test_sigkill_during_indexing_then_the_same_command_gives_the_same_index(model_dir, long_videos, tmp_path):
  folder, _ = long_videos
  videos = sorted(folder.glob("[abc].mp4"))
  longer = tmp_path / "d.mp4"  # a longer video last, so that the kill lands while it is embedded
  search_fixtures.write_long_video(longer, [0, 1, 2, 3] * 6, seed=9)
  videos.append(longer)
  env = training_fixtures.subprocess_env()
  killed, whole = tmp_path / "killed", tmp_path / "whole"
  command = _index_command(model_dir, videos, killed, "--part-windows", "1")
  process = subprocess.Popen(command, cwd=training_fixtures.REPO, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
  deadline = time.monotonic() + 300
  while not list((killed / "parts").glob("*.report.json")) and process.poll() is None and time.monotonic() < deadline:
    time.sleep(0.02)
  process.send_signal(signal.SIGKILL)
  process.wait()
  assert process.returncode == -signal.SIGKILL, process.stderr.read().decode()[-2000:]
  done = store.describe(str(killed))["videos"]
  assert 1 <= done < len(videos)
  again = subprocess.run(command, cwd=training_fixtures.REPO, env=env, capture_output=True, text=True, timeout=300)
  assert again.returncode == 0, again.stderr[-2000:]
  assert f"{done} already in the index" in again.stderr
  assert cli.main(["index", "--checkpoint", str(model_dir), "--videos", *map(str, videos), "--out", str(whole),
                   *WINDOW, "--no-progress"]) == 0
  a, b = _content(killed), _content(whole)
  assert a[0] == b[0] and a[1] == b[1]
  assert np.array_equal(a[2], b[2])  # bit-identical vectors


def test_index_in_a_bucket_built_by_two_processes(model_dir, long_videos, tmp_path):
  folder, segments = long_videos
  with gcs_fixtures.running() as server:
    bucket = server.create_bucket("search-test")
    env = {**training_fixtures.subprocess_env(), **server.client_env()}
    for name in ORDERS:  # the videos in the bucket too
      subprocess.run([sys.executable, "-c", "import sys; from xclip_jax import storage; "
                      "storage.upload_file(sys.argv[1], sys.argv[2])", str(folder / name), f"{bucket}/videos/{name}"],
                     cwd=training_fixtures.REPO, env=env, check=True, timeout=120)
    out = f"{bucket}/index"
    processes = [subprocess.Popen([sys.executable, "-m", "xclip_jax.search", "index", "--checkpoint", str(model_dir),
                                   "--videos", f"{bucket}/videos", "--out", out, *WINDOW, "--no-progress",
                                   "--process_id", str(p), "--num_processes", "2"],
                                  cwd=training_fixtures.REPO, env=env, stderr=subprocess.PIPE, text=True)
                 for p in range(2)]
    for process in processes:
      assert process.wait(timeout=300) == 0, process.stderr.read()[-2000:]
    result = subprocess.run([sys.executable, "-m", "xclip_jax.search", "info", "--index", out, "--json"],
                            cwd=training_fixtures.REPO, env=env, capture_output=True, text=True, timeout=120)
    report = json.loads(result.stdout)
    assert report["videos"] == 3 and report["parts"] == 2 and not report["failed"]
    assert report["windows"] == sum(int(s[-1][1]) - 1 for s in segments.values())
    result = subprocess.run([sys.executable, "-m", "xclip_jax.search", "query", "--index", out, "--text", NAMES[0],
                             "--top", "1"], cwd=training_fixtures.REPO, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0 and f"{bucket}/videos/" in result.stdout, result.stderr[-2000:]

"""Frame shards (issue 16): built from real PyAV-written videos, read through the training and evaluation pipelines.

Covers: the stored frames (rate, rotation, cut-off and variable-frame-rate files, bad files listed), shapes and
labels through both pipelines, determinism over worker counts and resume, two simulated hosts, a killed build
continued, overwrite rules and the errors of damaged or mismatched shards.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from fractions import Fraction

import numpy as np
import pytest

from tests import data_fixtures as F
from tests import process_fixtures, training_fixtures
from xclip_jax.data import config, frame_build, frame_shards, jpeg, labels, pipeline, sampling, synthetic, video_source
from xclip_jax.data.frame_extract import FrameSettings

SETTINGS = FrameSettings(short_side=40, fps=10, quality=90)


def write_vfr(path: str, times_ms: list[int]) -> str:
  """H.264 mp4 whose frame i encodes i and is shown at times_ms[i] (variable frame rate)."""
  import av

  with av.open(path, "w") as container:
    stream = container.add_stream("libx264", rate=40)
    stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
    stream.codec_context.time_base = Fraction(1, 1000)
    stream.options = {**synthetic.x264_options(), "bf": "0"}
    for i, t in enumerate(times_ms):
      frame = av.VideoFrame.from_ndarray(F.index_frame(i, 48, 64), format="rgb24")
      frame.pts, frame.time_base = t, Fraction(1, 1000)
      for packet in stream.encode(frame):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)
  return path


VFR_TIMES = [i * 100 for i in range(10)] + [1000 + i * 25 for i in range(20)]  # 10 fps for 1 s, then 40 fps.


def make_dataset(root) -> tuple[list[frame_build.VideoEntry], list[str]]:
  """3 classes: plain 10 fps videos, a 30 fps one, a rotated one, a cut-off one, a VFR one, a corrupt and a
  missing file."""
  root = str(root)
  list_path, csv_path, records = F.make_file_dataset(root, num_classes=3, per_class=2)
  extra = {
      "fast30.mp4": F.write_index_video(os.path.join(root, "fast30.mp4"), 60, 48, 64, fps=30),
      "phone.mp4": F.write_video(os.path.join(root, "phone.mp4"), np.stack([F.marked_frame()] * 4), rotation=90),
      "cut.mp4": F.write_truncated(
          F.write_video(os.path.join(root, "full.mp4"), np.stack([F.index_frame(i, 48, 64) for i in range(60)]),
                        faststart=True, bframes=False), os.path.join(root, "cut.mp4"), keep=0.8),
      "vfr.mp4": write_vfr(os.path.join(root, "vfr.mp4"), VFR_TIMES),
      "corrupt.mp4": F.write_corrupt(os.path.join(root, "corrupt.mp4")),
      "missing.mp4": os.path.join(root, "missing.mp4"),
  }
  entries = [frame_build.VideoEntry(r.path, r.label, os.path.relpath(r.path, root)) for r in records]
  entries += [frame_build.VideoEntry(path, k % 3, name) for k, (name, path) in enumerate(extra.items())]
  return entries, labels.read_class_names(csv_path)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  root = tmp_path_factory.mktemp("frames")
  entries, names = make_dataset(root / "videos")
  summary = frame_build.build(entries, names, root / "shards", SETTINGS, videos_per_shard=3, workers=1,
                              progress=False)
  return {"root": root, "out": root / "shards", "entries": entries, "names": names, "summary": summary}


def _frames_of(source: frame_shards.FrameShardSource, name: str) -> np.ndarray:
  i = [source.name(k) for k in range(len(source))].index(name)
  frames, _, _ = frame_shards.load_frames(source[i], np.arange)
  return frames


def test_build_stores_the_frames_players_show(built):
  src = frame_shards.FrameShardSource(built["out"])
  assert built["summary"]["videos"] == 12 and built["summary"]["stored"] == 10 and built["summary"]["bad"] == 2
  assert [b["path"] for b in src.index.bad] == ["corrupt.mp4", "missing.mp4"]
  tsv = (built["out"] / "bad_videos.tsv").read_text().splitlines()
  assert tsv[0] == "path\terror" and tsv[1].startswith("corrupt.mp4\t") and tsv[2] == "missing.mp4\tfile not found"
  assert not (built["root"] / "shards.partial").exists()
  # 30 fps -> 10 fps: every third frame; 10 fps sources keep every frame; 48 px short side -> 40.
  fast = _frames_of(src, "fast30.mp4")
  assert [F.decoded_index(f) for f in fast] == list(range(0, 60, 3)) and fast.shape[1:] == (40, 53, 3)
  plain = _frames_of(src, "videos/c1/v0.mp4")
  assert [F.decoded_index(f) for f in plain] == list(range(13))  # 12 + class 1 + video 0 frames.
  # Rotation: stored as displayed (turned 90 degrees counter-clockwise), then scaled (short side 32 -> kept).
  phone = _frames_of(src, "phone.mp4")
  assert phone.shape == (4, 64, 32, 3)
  assert np.abs(phone[0].astype(int) - np.rot90(F.marked_frame(), 1)).mean() < 8
  # Cut off: the frames that decode, in order; noted.
  cut = [F.decoded_index(f) for f in _frames_of(src, "cut.mp4")]
  assert 8 <= len(cut) < 60 and cut == list(range(len(cut)))  # A 10 fps file: every frame kept.
  assert [c["path"] for c in src.index.cut_off] == ["cut.mp4"]
  assert "container says 60 frames" in src.index.cut_off[0]["note"]
  # Variable frame rate: evenly spaced in time (100 ms), whatever the source's spacing.
  vfr = [F.decoded_index(f) for f in _frames_of(src, "vfr.mp4")]
  assert vfr[:15] == list(range(11)) + [14, 18, 22, 26] and len(vfr) in (15, 16)
  i = [src.name(k) for k in range(len(src))].index("vfr.mp4")
  assert src.index.fps[i] == 10.0
  # The index keeps each video's label and list position.
  for k in range(len(src)):
    entry = next(e for e in built["entries"] if e.name == src.name(k))
    assert src[k].label == entry.label and src.index.list_index[k] == built["entries"].index(entry)


def _cfg(out, frames=None, **overrides):
  frames = {"train": str(out), "val": str(out), "short_side": 40, "fps": 10, **(frames or {})}
  base = dict(source="frames", frames=frames, num_frames=4, input_size=32, resize_short=36, batch_size=4,
              eval_batch_size=4, num_workers=0, seed=5)
  return config.data_config(**{**base, **overrides})


def test_training_and_evaluation_pipelines_read_frame_shards(built):
  src = frame_shards.FrameShardSource(built["out"])
  it = pipeline.make_train_iterator(_cfg(built["out"]), process_index=0, process_count=1)
  seen = []
  for _ in range(5):
    b = next(it)
    assert b["video"].shape == (4, 4, 32, 32, 3) and b["video"].dtype == np.uint8
    assert [int(x) for x in b["label"]] == [src[int(i)].label for i in b["index"]]
    seen += b["index"].tolist()
  assert set(seen) == set(range(len(src))) and it.bad_videos == 0
  ev = pipeline.make_eval_iterator(_cfg(built["out"]), clips=2, crops=3, process_index=0, process_count=1)
  rows = []
  for b in ev:
    assert b["video"].shape == (4, 6, 4, 32, 32, 3)
    rows += [(int(i), int(lab)) for i, lab, v in zip(b["index"], b["label"], b["valid"], strict=True) if v]
    assert b["decode_ok"][b["valid"]].all()
  assert sorted(rows) == [(k, src[k].label) for k in range(len(src))]
  # The test clip is the official centred segment sampling of the stored frames.
  k = [src.name(j) for j in range(len(src))].index("fast30.mp4")
  frames, idx, n = frame_shards.load_frames(src[k], lambda n: sampling.segment_test(n, 4), short_side=36)
  assert n == 20 and frames.shape == (4, 36, 48, 3)
  assert [F.decoded_index(f) for f in frames] == [3 * int(i) for i in sampling.segment_test(20, 4)]


def test_same_batches_for_any_worker_count_and_after_resume(built):
  def batches(workers, n, state=None):
    it = pipeline.make_train_iterator(_cfg(built["out"], num_workers=workers), process_index=0, process_count=1)
    if state is not None:
      it.set_state(state)
    out = [next(it) for _ in range(n)]
    saved = it.get_state()
    it.close()
    return out, saved

  serial, _ = batches(0, 3)
  parallel, _ = batches(2, 2)
  for a, b in zip(serial, parallel, strict=False):
    np.testing.assert_array_equal(a["video"], b["video"])
  _, state = batches(0, 2)  # A checkpoint after two batches (grain states resume with the same worker count).
  resumed, _ = batches(0, 1, state)
  np.testing.assert_array_equal(resumed[0]["video"], serial[2]["video"])
  np.testing.assert_array_equal(resumed[0]["index"], serial[2]["index"])


def test_two_hosts_read_disjoint_complete_parts(built):
  src = frame_shards.FrameShardSource(built["out"])
  parts = [set(src.host_indices(h, 2).tolist()) for h in range(2)]
  assert not parts[0] & parts[1] and parts[0] | parts[1] == set(range(len(src)))
  for h in range(2):  # Whole shards per host: shard s goes to host s % 2.
    assert {int(src.index.shard[i]) % 2 for i in parts[h]} == {h}
  ev = [pipeline.make_eval_iterator(_cfg(built["out"], eval_batch_size=2), process_index=h, process_count=2)
        for h in range(2)]
  got = [{int(i) for b in e for i, v in zip(b["index"], b["valid"], strict=True) if v} for e in ev]
  assert got == parts and len(ev[0]) == len(ev[1])
  with pytest.raises(ValueError, match="4 frame shards .* cannot be split over 5 processes"):
    src.host_indices(0, 5)


def test_k_shot_picks_the_same_videos_as_the_files_source(built):
  cfg = _cfg(built["out"], k_shot=1, k_shot_seed=3)
  src = video_source.make_source(cfg, "train")
  full = frame_shards.FrameShardSource(built["out"])
  records = [labels.VideoRecord(full.name(i), int(full.labels()[i]), i) for i in range(len(full))]
  want = labels.k_shot_subset(records, 1, 3)
  assert [src.name(i) for i in range(len(src))] == [r.path for r in want]
  assert sorted(src.labels().tolist()) == [0, 1, 2]


def _build_command(root, out, *extra):
  return [sys.executable, str(training_fixtures.REPO / "scripts" / "build_frame_shards.py"), "--root", str(root),
          "--out", str(out), "--quiet", *extra]


def test_a_killed_build_continues_where_it_stopped(tmp_path):
  root = tmp_path / "videos"  # One sub-folder per class (the folder form of the input).
  for c in range(2):
    for k in range(4):
      F.write_index_video(str(root / f"class_{c}" / f"v{k}.mp4"), 240, 96, 128, fps=30)
  out = tmp_path / "out"
  env = training_fixtures.subprocess_env()
  first = subprocess.Popen(_build_command(root, out, "--videos-per-shard", "1", "--workers", "2"), env=env,
                           cwd=training_fixtures.REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
  partial = tmp_path / "out.partial"
  deadline = time.monotonic() + 120
  while time.monotonic() < deadline and first.poll() is None and not list(partial.glob("*.array_record.json")):
    time.sleep(0.02)
  assert first.poll() is None, "the build ended before it could be killed"
  workers = process_fixtures.spawned_children(first.pid)
  first.send_signal(signal.SIGKILL)
  first.wait()
  killed = time.monotonic()
  while process_fixtures.alive(workers) and time.monotonic() - killed < 5:  # They end with their parent.
    time.sleep(0.1)
  assert workers and not process_fixtures.alive(workers)
  finished = {p.name.removesuffix(".json") for p in partial.glob("*.array_record.json")}
  assert 1 <= len(finished) < 8 and not out.exists()
  from array_record.python import array_record_module

  for name in finished:  # Every shard that has its part reads completely.
    part = json.loads((partial / f"{name}.json").read_text())
    reader = array_record_module.ArrayRecordReader(str(partial / name))
    assert reader.num_records() == part["records"] and len(reader.read(list(range(part["records"])))) == 80
  second = subprocess.run(_build_command(root, out, "--videos-per-shard", "1", "--workers", "2"), env=env,
                          cwd=training_fixtures.REPO, capture_output=True, text=True, timeout=300)
  assert second.returncode == 0, second.stderr[-3000:]
  assert f"{len(finished)} of 8 shards already done" in second.stderr
  assert "wrote 8 of 8 videos" in second.stdout and not partial.exists()
  fresh = tmp_path / "fresh"
  frame_build.build([frame_build.VideoEntry(str(root / f"class_{c}" / f"v{k}.mp4"), c, f"class_{c}/v{k}.mp4")
                     for c in range(2) for k in range(4)], ["class 0", "class 1"], fresh, FrameSettings(),
                    videos_per_shard=1, workers=1, progress=False)
  resumed_index, fresh_index = (json.loads((d / "index.json").read_text()) for d in (out, fresh))
  assert resumed_index["videos"] == fresh_index["videos"] and resumed_index["shards"] == fresh_index["shards"]
  for shard in fresh_index["shards"]:
    assert (out / shard["file"]).read_bytes() == (fresh / shard["file"]).read_bytes()
  # A second build into the same folder is refused; --overwrite replaces it.
  again = subprocess.run(_build_command(root, out), env=env, cwd=training_fixtures.REPO, capture_output=True,
                         text=True, timeout=300)
  assert again.returncode == 1 and "already exists and is not empty; pass --overwrite" in again.stderr


def test_unfinished_build_of_another_plan_is_refused(tmp_path, built):
  entries = built["entries"][:4]
  out = tmp_path / "out"
  (tmp_path / "out.partial").mkdir()
  (tmp_path / "out.partial" / "plan.json").write_text(json.dumps(
      frame_build._plan(entries, built["names"], FrameSettings(fps=5), 2, {})))
  with pytest.raises(FileExistsError, match=r"unfinished build of something else \(settings: .*'fps': 5"):
    frame_build.build(entries, built["names"], out, FrameSettings(), num_shards=2, workers=1, progress=False)
  frame_build.build(entries, built["names"], out, FrameSettings(), num_shards=2, workers=1, progress=False,
                    overwrite=True)
  assert len(frame_shards.FrameShardSource(out)) == 4


def _copy(built, tmp_path):
  out = tmp_path / "copy"
  shutil.copytree(built["out"], out)
  return out


def test_missing_damaged_or_mismatched_shards_are_named(tmp_path, built):
  out = _copy(built, tmp_path)
  with pytest.raises(frame_shards.FrameShardError, match=r"built with short_side 40, but the config asks for "
                                                         r"data.frames.short_side=256"):
    video_source.make_source(_cfg(out, frames={"short_side": 256}), "train")
  with pytest.raises(frame_shards.FrameShardError, match=r"built with fps 10, but the config asks for "
                                                         r"data.frames.fps=30"):
    video_source.make_source(_cfg(out, frames={"fps": 30}), "train")
  shard = out / "shard-00002-of-00004.array_record"
  data = shard.read_bytes()
  shard.write_bytes(data[:-100])
  with pytest.raises(frame_shards.FrameShardError, match=f"{shard}: {len(data) - 100} bytes, the index says"):
    frame_shards.FrameShardSource(out)
  shard.unlink()
  with pytest.raises(frame_shards.FrameShardError, match=f"{shard}: shard missing"):
    frame_shards.FrameShardSource(out)
  index = out / "index.json"
  raw = json.loads(index.read_text())
  raw["videos"]["first"] = raw["videos"]["first"][:-1]
  index.write_text(json.dumps(raw))
  with pytest.raises(frame_shards.FrameShardError, match=f"{index}: video columns of different lengths"):
    frame_shards.read_index(out)
  index.write_text("{not json")
  with pytest.raises(frame_shards.FrameShardError, match=f"{index}: unreadable index"):
    frame_shards.read_index(out)
  index.unlink()
  with pytest.raises(frame_shards.FrameShardError, match=f"{index}: no frame-shard index"):
    frame_shards.read_index(out)


def test_frames_that_do_not_decode_are_replaced_and_counted(tmp_path, built):
  out = _copy(built, tmp_path)
  src = frame_shards.FrameShardSource(out)
  victim = [src.name(k) for k in range(len(src))].index("fast30.mp4")
  shard = out / src.index.shards[int(src.index.shard[victim])]["file"]
  data = bytearray(shard.read_bytes())
  first_jpeg = data.find(b"\xff\xd8\xff")  # Every frame of the shard: their entropy-coded data overwritten.
  while first_jpeg >= 0:
    data[first_jpeg + 700:first_jpeg + 900] = bytes(200)
    first_jpeg = data.find(b"\xff\xd8\xff", first_jpeg + 900)
  shard.write_bytes(bytes(data))
  with pytest.raises(Exception, match=r"fast30.mp4: .*(does not decode|unreadable records).*shard-0000"):
    frame_shards.load_frames(src[victim], np.arange)
  it = pipeline.make_train_iterator(_cfg(out), process_index=0, process_count=1)
  for _ in range(8):
    batch = next(it)
    assert batch["video"].shape == (4, 4, 32, 32, 3)
  assert it.bad_videos >= 1 and any(name.endswith(".mp4") for _, name in it.recent_bad)
  ev = pipeline.make_eval_iterator(_cfg(out), process_index=0, process_count=1)
  names = [src.name(int(i)) for b in ev for i, ok, v in zip(b["index"], b["decode_ok"], b["valid"], strict=True)
           if v and not ok]
  assert "fast30.mp4" in names


def test_jpeg_decoders_agree_and_scale_in_the_dct_domain():
  yy, xx = np.mgrid[0:256, 0:320]
  image = np.stack([xx * 255 // 319, yy * 255 // 255, (xx + yy) % 256], -1).astype(np.uint8)  # 256 x 320
  blob = jpeg.encode(image, 95)
  full = {b: jpeg.decode(blob, backend=b) for b in jpeg.available_backends()}
  for decoded in full.values():
    assert decoded.shape == (256, 320, 3) and np.abs(decoded.astype(int) - image).mean() < 3
  for backend in jpeg.available_backends():
    assert jpeg.decode(blob, min_short=128, backend=backend).shape == (128, 160, 3)  # 1/2 scale.
    assert jpeg.decode(blob, min_short=60, backend=backend).shape == (64, 80, 3)  # 1/4: the smallest >= 60.
    assert jpeg.decode(blob, min_short=200, backend=backend).shape == (256, 320, 3)  # 7/8 is not used.
  with pytest.raises(jpeg.JpegError):
    jpeg.decode(b"\xff\xd8\xff" + bytes(100))

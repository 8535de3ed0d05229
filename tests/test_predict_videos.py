"""Prediction over real files as users run it: folders and lists, batches, broken and cut-off files, the CLI's
outputs (CSV / JSON lines, atomic), and the evaluation of a labelled folder."""

from __future__ import annotations

import csv
import json
import os
import pathlib

import numpy as np
import pytest

import xclip_jax
from tests import data_fixtures as F
from tests import training_fixtures
from xclip_jax import predict, pretrained
from xclip_jax.data import decode, labels, sampling, views
from xclip_jax.evaluation import labelled_videos, video_files
from xclip_jax.models.config import variant_config
from xclip_jax.models.params import flat_params
from xclip_jax.models.xclip import create_model

CLASSES = ["circle moving left", "square growing", "cross moving up"]


def _frames(n, seed, height=48, width=64):
  return np.random.default_rng(seed).integers(0, 256, (n, height, width, 3), np.uint8)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
  """A tiny random X-CLIP saved as a model directory, and a folder of videos with one broken and one cut off."""
  root = tmp_path_factory.mktemp("predict")
  config = variant_config("tiny", frames=training_fixtures.FRAMES, **training_fixtures.TINY_MODEL)
  model_dir = root / "model"
  pretrained.save_pretrained(model_dir, config, flat_params(create_model(config, seed=0)))
  videos = root / "videos"
  good = [F.write_video(str(videos / name), _frames(12 + i, i))
          for i, name in enumerate(["a.mp4", "b.mkv", "nested/c.mp4", "nested/deeper/d.mov", "e.mp4"])]
  broken = F.write_corrupt(str(videos / "nested" / "broken.mp4"))
  cut = F.write_video(str(videos / "cut.mp4"), _frames(60, 9), faststart=True, bframes=False)
  F.write_truncated(cut, cut + ".part", keep=0.8)
  os.replace(cut + ".part", cut)
  (videos / "notes.txt.md").write_text("not a video")
  (videos / ".hidden.mp4").write_bytes(b"")
  return {"root": root, "model_dir": model_dir, "model": xclip_jax.load_model(model_dir), "videos": videos,
          "good": good, "broken": broken, "cut": cut}


def test_find_videos_from_files_folders_and_lists(world, tmp_path):
  videos = world["videos"]
  found = video_files.find_videos([videos])
  expected = sorted(str(p) for p in videos.rglob("*") if p.suffix in (".mp4", ".mkv", ".mov")
                    and not p.name.startswith("."))
  assert found == expected and len(found) == 7  # Recursive, sorted, by extension, hidden files skipped.
  listed = tmp_path / "list.txt"
  listed.write_text(f"# a comment\n{world['good'][0]}\n\nnested/c.mp4 2\nmissing.mp4 0\n")
  got = video_files.find_videos([world["good"][1], listed, world["good"][1]], root=videos)
  # Given order, no repeats; `<path> <label>` lines and plain ones; a listed missing file fails later, alone.
  assert got == [world["good"][1], world["good"][0], str(videos / "nested/c.mp4"), str(videos / "missing.mp4")]
  with pytest.raises(video_files.VideoInputError, match="nope.mp4: no such file or folder"):
    video_files.find_videos([world["good"][0], tmp_path / "nope.mp4"])
  (tmp_path / "empty").mkdir()
  (tmp_path / "empty" / "readme.md").write_text("x")
  with pytest.raises(video_files.VideoInputError, match="empty: no videos in this folder"):
    video_files.find_videos([tmp_path / "empty"])
  (tmp_path / "blank.txt").write_text("\n# nothing\n")
  with pytest.raises(video_files.VideoInputError, match="blank.txt: the list file names no videos"):
    video_files.find_videos([tmp_path / "blank.txt"])


def test_batched_classification_matches_one_by_one_and_isolates_failures(world):
  model = world["model"]
  paths = [world["good"][0], world["broken"], *world["good"][1:], world["cut"]]
  results = video_files.classify_videos(model, paths, CLASSES, clips=2, batch_size=3, workers=2, progress=False)
  assert [r.path for r in results] == paths  # Input order, across batches (the last one padded).
  failed = results[1]
  assert not failed.ok and failed.status == "error" and failed.probabilities is None and "cannot open" in failed.error
  assert failed.top(CLASSES) == []
  assert results[-1].status == "warning" and "container says 60 frames" in results[-1].warning
  for result in results[:1] + results[2:]:
    assert result.ok and result.probabilities.shape == (3,)
    # Batching, padding and threads change nothing: the same as classifying the video alone.
    alone = predict.predict(model, result.path, CLASSES, clips=2)
    np.testing.assert_allclose(result.probabilities, alone, rtol=1e-5, atol=1e-6)
    views = video_files.video_views(result.path, frames=4, size=32, clips=2)
    manual = model.classify(xclip_jax.normalize_frames(views), CLASSES).mean(axis=0)
    np.testing.assert_allclose(alone, manual, rtol=1e-5, atol=1e-6)
  with pytest.raises(decode.VideoDecodeError, match="broken.mp4"):
    predict.predict(model, world["broken"], CLASSES)


def test_sampled_frames_are_what_the_classifier_sees(tmp_path):
  path = F.write_index_video(str(tmp_path / "index.mp4"), 40)
  frames = video_files.sampled_frames(path, 4, clips=2)
  assert frames.shape == (2, 4, 48, 64, 3) and frames.dtype == np.uint8
  want = views.ViewSpec(frames=4, size=32, clips=2).frame_indices(40, "index.mp4")  # the classifier's clips
  assert [[F.decoded_index(f) for f in clip] for clip in frames] == want.tolist()
  uniform = video_files.sampled_frames(path, 4, clips=2, multiview_sampling="uniform")
  want = sampling.multiview_indices(40, 4, 2, mode="segment", multiview="uniform", rng=None)
  assert [[F.decoded_index(f) for f in clip] for clip in uniform] == want.tolist()
  assert video_files.sampled_frames(path, 4, short_side=24).shape == (1, 4, 24, 32, 3)


def _read_csv(path):
  with open(path, newline="", encoding="utf-8") as f:
    return list(csv.DictReader(f))


def test_cli_writes_csv_and_jsonl_with_errors_in_their_rows(world, tmp_path, capsys):
  out = tmp_path / "predictions.csv"
  args = ["--checkpoint", str(world["model_dir"]), "--labels", ",".join(CLASSES), "--batch-size", "4",
          "--no-progress", "--top", "2"]
  assert predict.main([*args, "--video", str(world["videos"]), "--out", str(out)]) == 1  # One file is broken.
  rows = _read_csv(out)
  assert list(rows[0]) == ["path", "status", "message", "label_1", "probability_1", "label_2", "probability_2"]
  assert [r["path"] for r in rows] == video_files.find_videos([world["videos"]])
  by_path = {r["path"]: r for r in rows}
  assert by_path[world["broken"]]["status"] == "error" and by_path[world["broken"]]["label_1"] == ""
  assert by_path[world["cut"]]["status"] == "warning"
  for row in rows:
    if row["status"] != "error":
      assert row["label_1"] in CLASSES and float(row["probability_1"]) >= float(row["probability_2"]) > 0
  err = capsys.readouterr().err
  assert f"predict: error: {world['broken']}: cannot open" in err and "1 of 7 videos could not be read" in err

  listed = tmp_path / "good.txt"
  listed.write_text("".join(f"{os.path.relpath(p, world['videos'])} 0\n" for p in world["good"]))
  out_jsonl = tmp_path / "predictions.out"
  assert predict.main([*args, "--video", str(listed), "--root", str(world["videos"]), "--out", str(out_jsonl),
                       "--format", "jsonl"]) == 0
  records = [json.loads(line) for line in out_jsonl.read_text().splitlines()]
  assert [r["path"] for r in records] == world["good"] and all(len(r["top"]) == 2 for r in records)
  np.testing.assert_allclose([r["top"][0]["probability"] for r in records],
                             [float(by_path[p]["probability_1"]) for p in world["good"]], atol=2e-6)


def test_cli_never_loses_an_existing_output(world, tmp_path, capsys, monkeypatch):
  out = tmp_path / "predictions.csv"
  out.write_text("earlier results\n")
  base = ["--labels", ",".join(CLASSES), "--no-progress", "--out", str(out)]
  # Bad arguments fail before any work, naming what is wrong; the file is untouched.
  assert predict.main(["--checkpoint", str(tmp_path / "no_model"), "--video", world["good"][0], *base]) == 1
  assert "no_model" in capsys.readouterr().err
  assert predict.main(["--checkpoint", str(world["model_dir"]), "--video", world["good"][0], "--labels", "a",
                       "--out", str(tmp_path / "p.xlsx")]) == 1
  assert "cannot tell the output format" in capsys.readouterr().err
  # Stopped at once (a KeyboardInterrupt: Ctrl-C twice) after some rows: the old file stays whole, no temporary
  # file is left behind.
  real = video_files.iter_classify_videos

  def interrupted(*args, **kwargs):
    for i, prediction in enumerate(real(*args, **kwargs)):
      if i == 2:
        raise KeyboardInterrupt
      yield prediction

  monkeypatch.setattr(video_files, "iter_classify_videos", interrupted)
  assert predict.main(["--checkpoint", str(world["model_dir"]), "--video", str(world["videos"]), *base]) == 130
  assert f"predict: stopped by Ctrl-C; {out} was not written" in capsys.readouterr().err
  assert out.read_text() == "earlier results\n" and sorted(os.listdir(tmp_path)) == ["predictions.csv"]


def test_cli_table_without_out(world, capsys):
  code = predict.main(["--checkpoint", str(world["model_dir"]), "--video", world["good"][0], world["broken"],
                       "--labels", ",".join(CLASSES), "--no-progress"])
  out = capsys.readouterr().out
  assert code == 1
  assert f"{world['good'][0]}: top-3 of 3 classes" in out and "  1. " in out and "  3. " in out
  assert f"{world['broken']}: error: cannot open" in out


def test_metrics_by_hand():
  p = lambda *probabilities: video_files.VideoPrediction("v", np.array(probabilities, np.float32))
  predictions = [p(.7, .2, .1), p(.1, .3, .6), p(.2, .5, .3), video_files.VideoPrediction("bad", error="x"),
                 p(.5, .4, .1)]
  report = labelled_videos.metrics(predictions, np.array([0, 1, 1, 2, 1]), ["a", "b", "c"])
  # Video 0: a right; 1: c for b (wrong); 2: b right; 3: failed (wrong); 4: a for b (wrong) -> 2 of 5.
  assert report.top1 == 40.0 and report.top5 == 80.0
  np.testing.assert_array_equal(report.confusion, [[1, 0, 0], [1, 1, 1], [0, 0, 0]])
  np.testing.assert_array_equal(report.failed_per_class, [0, 0, 1])
  np.testing.assert_allclose(report.per_class_accuracy, [100.0, 100 / 3, 0.0])
  assert report.failures == [("bad", "x")]
  assert [w["p_true"] for w in report.worst(2)] == pytest.approx([.3, .4])  # Lowest probability of the truth.
  assert report.worst(1)[0]["predicted"][0][0] == "c" and not report.worst(1)[0]["correct"]
  json.dumps(report.to_dict())


def test_labelled_folder_and_label_list(world, tmp_path):
  root = tmp_path / "set"
  for c, name in enumerate(["playing_guitar", "archery"]):
    for k in range(2):
      F.write_video(str(root / name / f"v{k}.mp4"), _frames(10, 10 * c + k))
  F.write_corrupt(str(root / "archery" / "broken.mp4"))
  by_folder = labelled_videos.labelled_set(root)
  assert by_folder.class_names == ["archery", "playing guitar"] and by_folder.labels.tolist() == [0, 0, 0, 1, 1]
  report = labelled_videos.evaluate_labelled_set(world["model"], by_folder, batch_size=2, progress=False)
  assert len(report.predictions) == 5 and report.failures[0][0].endswith("broken.mp4")
  assert report.confusion.sum() + report.failed_per_class.sum() == 5
  pairs = zip(report.predictions, by_folder.labels, strict=True)
  right = sum(p.ok and int(np.argmax(p.probabilities)) == y for p, y in pairs)
  assert report.top1 == pytest.approx(100 * right / 5)
  # The same videos through an official label list and an id,name CSV (sub-folders matched to names too).
  labels.write_class_names(["archery", "playing guitar"], str(tmp_path / "classes.csv"))
  pairs = zip(by_folder.videos, by_folder.labels, strict=True)
  labels.write_label_list([(os.path.relpath(v, root), int(y)) for v, y in pairs], str(tmp_path / "list.txt"))
  listed = labelled_videos.labelled_set(root, label_list=tmp_path / "list.txt", class_csv=str(tmp_path / "classes.csv"))
  assert listed.videos == by_folder.videos and listed.labels.tolist() == by_folder.labels.tolist()
  matched = labelled_videos.labelled_set(root, class_csv=str(tmp_path / "classes.csv"))
  assert matched.labels.tolist() == by_folder.labels.tolist()
  (tmp_path / "empty_set" / "class_a").mkdir(parents=True)
  with pytest.raises(video_files.VideoInputError, match="no sub-folders with videos"):
    labelled_videos.labelled_set(tmp_path / "empty_set")
  with pytest.raises(video_files.VideoInputError, match=r"\['d.mov'\] are in no class sub-folder"):
    labelled_videos.labelled_set(pathlib.Path(world["videos"]) / "nested" / "deeper")

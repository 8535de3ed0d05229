"""Your own videos (issue 17): train/ val/ test/ folders of class folders holding real videos (the synthetic
moving shapes, written with PyAV), read by the one folder walker that training and evaluation share, fine-tuned
through `main` (configs/finetune.py:variant=tiny,shrink=true), evaluated zero-shot and few-shot, with the
notebook's report in the workdir, and every bad layout named."""

from __future__ import annotations

import csv
import importlib.util
import json
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

from tests import data_fixtures, training_fixtures
from xclip_jax import predict, pretrained, protocols
from xclip_jax.data import config as data_config
from xclip_jax.data import folders, labels, synthetic, video_source
from xclip_jax.evaluation import labelled_videos
from xclip_jax.training import checkpointing

CLASSES = {"CircleGrowing": (0, 4), "CrossShrinking": (3, 5), "SquareMovingLeft": (1, 0),  # (shape, motion)
           "TriangleMovingUp": (2, 2)}
READABLE = ["circle growing", "cross shrinking", "square moving left", "triangle moving up"]
PER_SPLIT = {"train": 4, "val": 1, "test": 2}
FRAMES = 4
REPORT = ("per_class_accuracy.png", "confusion_matrix.png", "worst_videos.png", "predictions.csv")


def load_finetune(arg: str):
  spec = importlib.util.spec_from_file_location("config_finetune", training_fixtures.REPO / "configs" / "finetune.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def write_videos(folder: pathlib.Path, shape: int, motion: int, count: int, seed: int) -> None:
  for k in range(count):
    folder.mkdir(parents=True, exist_ok=True)
    frames = synthetic.render(shape, motion, np.random.default_rng([seed, k]), 32, 8, "plain")
    synthetic.write_mp4(str(folder / f"{folder.name}_{k}.mp4"), frames)


def touch(root: pathlib.Path, *relative: str) -> pathlib.Path:
  """Empty files: enough for the walker, which reads names, not frames."""
  for name in relative:
    (root / name).parent.mkdir(parents=True, exist_ok=True)
    (root / name).touch()
  return root


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> pathlib.Path:
  root = tmp_path_factory.mktemp("my_videos")
  for split_index, (split, count) in enumerate(PER_SPLIT.items()):
    for class_index, (name, (shape, motion)) in enumerate(CLASSES.items()):
      write_videos(root / split / name, shape, motion, count, seed=10 * split_index + class_index)
  return root


@pytest.fixture(scope="module")
def finetuned(videos, tmp_path_factory) -> dict:
  """`main` fine-tuning the tiny model (random init, 4 steps) on a copy of `videos` with an unreadable file in
  train/ and one in test/ (the run the other tests start from, as from a released model)."""
  root = copy_of(videos, tmp_path_factory.mktemp("finetune"))
  data_fixtures.write_corrupt(str(root / "train" / "SquareMovingLeft" / "broken.mp4"))
  data_fixtures.write_corrupt(str(root / "test" / "TriangleMovingUp" / "broken.mp4"), seed=1)
  workdir = root.parent / "run"
  run = training_fixtures.run_main(f"configs/finetune.py:variant=tiny,frames={FRAMES},shrink=true", workdir,
                                   f"--config.data.root={root}", "--config.data.num_workers=0",
                                   "--config.train.total_steps=4", "--config.eval.every_steps=2")
  assert run.returncode == 0, run.stderr[-3000:]
  return {"root": root, "workdir": workdir, "run": run}


@pytest.fixture(scope="module")
def released(finetuned, tmp_path_factory) -> pathlib.Path:
  """The fine-tuned tiny model in the converted-model format, standing in for a released model."""
  path = tmp_path_factory.mktemp("models") / "tiny_xclip"
  pretrained.save_pretrained(path, *checkpointing.load_model_params(finetuned["workdir"]))
  return path


def copy_of(videos: pathlib.Path, parent: pathlib.Path) -> pathlib.Path:
  return pathlib.Path(shutil.copytree(videos, parent / "my_videos"))


def run_config(root: str | pathlib.Path, arg: str = "variant=tiny,frames=4,shrink=true", **fields):
  """configs/finetune.py for the tiny model over `root`, 2 steps, decoding in this process."""
  config = load_finetune(arg)
  config.data.root = str(root)
  config.data.num_workers = 0
  config.data.eval_batch_size = 8  # the 8 simulated devices split every batch
  config.train.total_steps = 2
  for dotted, value in fields.items():
    block, _, name = dotted.rpartition("__")
    (config[block] if block else config)[name] = value
  return config


def test_layout_names_splits_and_one_walker_for_training_and_evaluation(videos, tmp_path):
  layout = folders.read_layout(videos, readable_names=True)
  assert layout.folder_names == list(CLASSES) and layout.class_names == READABLE
  assert [layout.has(s) for s in ("train", "val", "test")] == [True, True, True]
  assert [r.label for r in layout.records("train")] == [0] * 4 + [1] * 4 + [2] * 4 + [3] * 4
  # The evaluation side's labelled_set reads a split with the same walker: same videos, ids and names.
  test = layout.records("test")
  dataset = labelled_videos.labelled_set(videos / "test", readable_names=True)
  assert dataset.class_names == READABLE
  assert dataset.videos == [r.path for r in test] and dataset.labels.tolist() == [r.label for r in test]
  assert labelled_videos.labelled_set(videos / "test").class_names == list(CLASSES)  # as written, without
  # The pipeline's source of each split, the test split included; K per class drawn from train/ with a seed.
  cfg = data_config.data_config(source="folders", root=str(videos), readable_names=True)
  source = video_source.make_source(cfg, "test")
  assert source.class_names == READABLE and [source[i].name for i in range(len(source))] == [r.path for r in test]
  cfg.k_shot, cfg.k_shot_seed = 3, 1
  drawn = video_source.make_source(cfg, "train")
  assert np.bincount(drawn.labels()).tolist() == [3, 3, 3, 3]
  names = [drawn.name(i) for i in range(len(drawn))]
  assert names == [video_source.make_source(cfg, "train").name(i) for i in range(12)]  # seeded
  # The class set is the union of the splits' folders, in one order (sorted by folder name).
  root = copy_of(videos, tmp_path)
  write_videos(root / "val" / "BoxJumping", 3, 5, 1, seed=99)
  union = folders.read_layout(root, readable_names=True)
  assert union.class_names == ["box jumping", *READABLE] and union.classes_without("train") == ["BoxJumping"]
  assert [r.label for r in union.records("test")] == [1, 1, 2, 2, 3, 3, 4, 4]


def test_split_ratio_is_seeded_per_class(tmp_path):
  root = touch(tmp_path / "clips", *[f"{c}/{k:02d}.mp4" for c in ("Archery", "Bowling") for k in range(10)])
  layout = folders.read_layout(root, split_ratio="0.6,0.2,0.2", split_seed=1)
  assert layout.by_ratio and [len(layout.videos[s]["Archery"]) for s in ("train", "val", "test")] == [6, 2, 2]
  archery = [set(layout.videos[s]["Archery"]) for s in ("train", "val", "test")]
  assert set.union(*archery) == {str(p) for p in (root / "Archery").iterdir()} and sum(map(len, archery)) == 10
  assert folders.read_layout(root, split_ratio="0.6,0.2,0.2", split_seed=1).videos == layout.videos
  assert folders.read_layout(root, split_ratio="0.6,0.2,0.2", split_seed=2).videos != layout.videos
  touch(root, *[f"Canoeing/{k}.mp4" for k in range(5)])  # a new class moves no other class's videos
  grown = folders.read_layout(root, split_ratio="0.6,0.2,0.2", split_seed=1)
  assert {s: grown.videos[s]["Archery"] for s in grown.videos} == {s: layout.videos[s]["Archery"] for s in
                                                                  layout.videos}
  only_test = folders.read_layout(root, split_ratio="0,0,1")
  assert list(only_test.videos) == ["test"] and len(only_test.records("test")) == 25
  with pytest.raises(folders.VideoInputError, match="no train/, val/ or test/ sub-folders.*split_ratio"):
    folders.read_layout(root)
  with pytest.raises(ValueError, match="data.split_ratio='0.5,0.5': expected three fractions"):
    folders.read_layout(root, split_ratio="0.5,0.5")
  touch(root, "train/Archery/x.mp4")
  with pytest.raises(folders.VideoInputError, match="has train/ folders, so data.split_ratio"):
    folders.read_layout(root, split_ratio="0.6,0.2,0.2")


def test_bad_layouts_are_named(tmp_path):
  root = touch(tmp_path / "my_videos", "train/Archery/a.mp4", "train/loose.mp4", "test/Archery/b.mp4")
  with pytest.raises(folders.VideoInputError, match=r"my_videos/train: videos \['loose.mp4'\] are in no class "):
    protocols.run(run_config(root), tmp_path / "run")  # through the protocols, before anything is built
  run = training_fixtures.run_main("configs/finetune.py:variant=tiny", tmp_path / "run", f"--config.data.root={root}")
  assert run.returncode == 1 and "Traceback" not in run.stderr  # main says it in one line
  assert f"xclip_jax.main: error: {root / 'train'}: videos ['loose.mp4'] are in no class sub-folder" in run.stderr
  (root / "train" / "loose.mp4").unlink()
  (root / "train" / "Bowling").mkdir()
  touch(root, "train/Bowling/notes.txt")
  with pytest.raises(folders.VideoInputError, match="my_videos/train/Bowling: empty class folder"):
    folders.read_layout(root)
  shutil.rmtree(root / "train" / "Bowling")
  touch(root, "train/tai_chi/c.mp4", "train/TaiChi/d.mp4")
  with pytest.raises(labels.LabelFileError, match="TaiChi / tai_chi -> 'tai chi'"):
    folders.read_layout(root, readable_names=True)
  with pytest.raises(folders.VideoInputError, match="my_videos: holds the splits"):
    labelled_videos.labelled_set(root)
  touch(root, "Archery/e.mp4")
  with pytest.raises(folders.VideoInputError, match="my_videos/Archery: beside the split folders train/, test/"):
    folders.read_layout(root)
  with pytest.raises(folders.VideoInputError, match="nowhere: no such folder"):
    folders.read_layout(tmp_path / "nowhere")
  with pytest.raises(ValueError, match="data.root is empty"):
    protocols.run(run_config(""), tmp_path / "run")


def test_training_refuses_test_only_classes_and_zero_shot_evaluation_says_so(videos, released, tmp_path, capsys):
  root = copy_of(videos, tmp_path)
  write_videos(root / "test" / "BoxJumping", 3, 5, 2, seed=98)
  with pytest.raises(folders.VideoInputError, match="my_videos/test/BoxJumping: test videos of a class with no "
                                                    "training videos .*--config.mode=evaluate"):
    protocols.run(run_config(root), tmp_path / "train")
  config = run_config(root, mode="evaluate", init_from__path=str(released))
  workdir = tmp_path / "evaluate"
  results = protocols.run(config, workdir)
  printed = capsys.readouterr().out
  assert f"Zero-shot: {released} was never trained on {root / 'test'}" in printed
  assert results["step"] is None and results["final"]["videos"] == 10 and results["final"]["num_classes"] == 5
  assert results["report"]["class_names"] == ["box jumping", *READABLE]
  assert [(workdir / "report" / name).is_file() for name in REPORT] == [True] * 4
  assert labels.read_class_names(str(workdir / "classes.csv")) == ["box jumping", *READABLE]
  # The report's single pass agrees with the trainer's evaluation of the same split.
  _, model_config, evaluator, state = protocols._evaluation_model(config, workdir)
  check = evaluator.evaluate(state, config.data, split="test", context_length=model_config.context_length)
  assert (check.top1, check.top5, check.videos) == (results["final"]["top1"], results["final"]["top5"], 10)
  confusion = np.array(results["report"]["confusion"])
  assert confusion.sum() == 10 and 100 * np.trace(confusion) / 10 == pytest.approx(results["final"]["top1"])
  shutil.rmtree(root / "train")
  with pytest.raises(folders.VideoInputError, match="my_videos/train: no such folder.*--config.mode=evaluate"):
    protocols.run(run_config(root), tmp_path / "train")


def test_few_shot_through_main_takes_k_per_class_from_train_without_val(videos, finetuned, tmp_path):
  root = copy_of(videos, tmp_path)
  shutil.rmtree(root / "val")
  with pytest.raises(folders.VideoInputError, match="train/CircleGrowing: 4 videos, fewer than data.k_shot=5"):
    protocols.run(run_config(root, "variant=tiny,frames=4,shrink=true,shots=5"), tmp_path / "five")
  # The same steps as `finetuned` (4 classes, batch 8, 4 steps): its compiled programs are reused from JAX's cache.
  workdir = tmp_path / "few"
  run = training_fixtures.run_main(f"configs/finetune.py:variant=tiny,frames={FRAMES},shrink=true,shots=2", workdir,
                                   f"--config.data.root={root}", "--config.data.num_workers=0",
                                   "--config.data.batch_size=16", "--config.eval.every_steps=1",
                                   "--config.train.total_steps=4")
  assert run.returncode == 0, run.stderr[-3000:]
  assert f"data.batch_size=16 is more than the 8 training videos of {root / 'train'}: using batch 8" in run.stderr
  assert f"No {root / 'val'} folder: no evaluation during training" in run.stderr
  assert "8 training videos, 4 classes, batch 8" in run.stderr and "single-view eval" not in run.stderr
  assert f"Few-shot K=2 on {root / 'train'}, evaluated on {root / 'test'}" in run.stdout
  results = json.loads((workdir / "results.json").read_text())
  assert results["protocol"] == "few_shot" and results["step"] == 4 and results["final"]["videos"] == 8
  assert results["report"]["split"] == "test" and (workdir / "report" / "confusion_matrix.png").is_file()
  saved = json.loads((workdir / "config.json").read_text())
  assert (saved["data"]["k_shot"], saved["data"]["batch_size"], saved["eval"]["every_steps"]) == (2, 8, -1)


def test_fine_tune_through_main_writes_the_report_and_predict_reads_the_result(finetuned, tmp_path):
  root, workdir, run = finetuned["root"], finetuned["workdir"], finetuned["run"]
  # Unreadable files: replaced during training (named once), errors in the evaluation (named, in the CSV too).
  assert f"bad video: {root / 'train' / 'SquareMovingLeft' / 'broken.mp4'}" in run.stderr
  assert f"unreadable (counted as errors): {root / 'test' / 'TriangleMovingUp' / 'broken.mp4'}" in run.stdout
  assert "single-view eval top-1" in run.stderr  # val/ evaluated during training
  for name in REPORT:
    path = workdir / "report" / name
    assert f"{path}" in run.stdout and path.stat().st_size > 0
    if name.endswith(".png"):
      assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  results = json.loads((workdir / "results.json").read_text())
  assert results["final"]["videos"] == 9 and results["final"]["decode_failures"] == 1
  assert results["report"]["class_names"] == READABLE
  rows = list(csv.DictReader((workdir / "report" / "predictions.csv").open()))
  assert len(rows) == 9 and [r["true_label"] for r in rows] == [n for n in READABLE for _ in range(2)] + [
      "triangle moving up"]
  broken = [r for r in rows if r["path"].endswith("broken.mp4")]
  assert [r["status"] for r in rows].count("error") == 1 and broken[0]["status"] == "error" and broken[0]["message"]
  # The class names reached the text tower as words: predict, given those names (workdir/classes.csv), gives
  # the report's probabilities; given the folder names as written, it gives others.
  out = tmp_path / "predicted.csv"
  assert predict.main(["--checkpoint", str(workdir), "--video", str(root / "test"), "--labels-file",
                       str(workdir / "classes.csv"), "--out", str(out), "--no-progress"]) == 1  # broken.mp4
  predicted = {r["path"]: r for r in csv.DictReader(out.open())}
  for row in rows:
    if row["status"] == "ok":
      mine = predicted[row["path"]]
      assert [mine[f"label_{i}"] for i in (1, 2, 3, 4)] == [row[f"label_{i}"] for i in (1, 2, 3, 4)]
      assert [float(mine[f"probability_{i}"]) for i in (1, 2, 3, 4)] == pytest.approx(
          [float(row[f"probability_{i}"]) for i in (1, 2, 3, 4)], abs=2e-6)
  raw = tmp_path / "raw.csv"
  predict.main(["--checkpoint", str(workdir), "--video", str(root / "test"), "--labels", ",".join(CLASSES),
                "--out", str(raw), "--no-progress"])

  def probabilities(path: pathlib.Path, names: list[str]) -> np.ndarray:
    """(videos, classes) probabilities of a predict CSV, columns in class order."""
    table = [r for r in csv.DictReader(path.open()) if r["status"] == "ok"]
    return np.array([[float(r[f"probability_{i}"]) for i in (1, 2, 3, 4) if r[f"label_{i}"] == name]
                     for r in table for name in names]).reshape(len(table), len(names))

  readable, as_written = probabilities(out, READABLE), probabilities(raw, list(CLASSES))
  assert np.abs(readable - as_written).max() > 1e-3


def test_a_shrunk_evaluation_spreads_over_the_classes_and_says_what_it_left_out(finetuned, tmp_path):
  """eval.max_batches shrinks the final evaluation to 2 of the 9 test videos: they come from two classes (the
  first video of each), not from the first class only; the console, results.json and the split report say 2 of
  9 videos in 2 of 4 classes, and the two classes without a video are "not evaluated", never 0%."""
  workdir = tmp_path / "run"  # a copy: the module's other tests read the fine-tuning's own results
  shutil.copytree(finetuned["workdir"], workdir)
  run = training_fixtures.run_main(f"configs/finetune.py:variant=tiny,frames={FRAMES},shrink=true",
                                   workdir, f"--config.data.root={finetuned['root']}",
                                   "--config.data.num_workers=0", "--config.mode=evaluate",
                                   "--config.eval.max_batches=1", "--config.data.eval_batch_size=2")
  assert run.returncode == 0, run.stderr[-3000:]
  [line] = [line for line in run.stdout.splitlines() if "top-1" in line and "weakest" in line]
  assert "2 of 9 videos in 2 of 4 classes, 1x1 views" in line, line
  assert "not evaluated (no video in this evaluation): 'square moving left', 'triangle moving up'" in line, line
  assert "weakest class 'square moving left'" not in line and "weakest class 'triangle moving up'" not in line
  results = json.loads((workdir / "results.json").read_text())
  assert results["final"]["videos"] == 2 and results["final"]["videos_in_split"] == 9
  assert results["final"]["classes_evaluated"] == 2
  report = results["report"]
  assert report["classes_not_evaluated"] == ["square moving left", "triangle moving up"]
  assert report["per_class_accuracy"][2:] == [None, None]
  with open(workdir / "report" / "predictions.csv", newline="") as f:
    truth = [row["true_label"] for row in csv.DictReader(f)]
  assert truth == ["circle growing", "cross shrinking"]


def test_a_fine_tune_starts_from_a_training_workdir_without_model_flags(finetuned, videos, tmp_path, caplog):
  """configs/finetune.py for B/16 at 8 frames and 224 px, started from the tiny 4-frame 32 px workdir: the
  architecture is the workdir's, the data follow it, and the run's log says which architecture it took."""
  root = copy_of(videos, tmp_path)
  for split in ("val", "test"):  # training only: the evaluation paths are tested above
    shutil.rmtree(root / split)
  config = run_config(root, "shrink=true", init_from__path=str(finetuned["workdir"]), model__dtype="float32",
                      model__remat=False)
  assert (config.model.variant, config.model.frames, config.data.input_size) == ("B/16", 8, 224)
  with caplog.at_level("INFO"):
    results = protocols.run(config, tmp_path / "run")
  trained, _ = checkpointing.load_model_params(finetuned["workdir"])
  tuned, params = checkpointing.load_model_params(tmp_path / "run")
  assert results["step"] == 2 and tuned.replace(dtype="float32") == trained.replace(dtype="float32")
  assert params[("visual", "conv1")].shape[0] == trained.patch_size
  assert f"init_from {finetuned['workdir']}, workdir: {trained.describe()}" in caplog.text
  assert "the data follow the model: data.num_frames=4 (was 8), data.input_size=32 (was 224)" in caplog.text
  saved = json.loads((tmp_path / "run" / "config.json").read_text())
  assert (saved["model"]["frames"], saved["data"]["num_frames"], saved["data"]["input_size"]) == (4, 4, 32)


def test_main_and_predict_give_every_video_the_same_numbers_with_the_same_views(released, videos, tmp_path):
  """One folder with 3 clips x 3 crops (clips placed at random, seeded by the file name): main's evaluate mode
  (its report's predictions.csv) and predict give every video the same top-1 class and the same probability
  of every class; predict with the other clip placement gives other numbers."""
  root = copy_of(videos, tmp_path)
  workdir = tmp_path / "evaluate"
  run = training_fixtures.run_main(f"configs/finetune.py:variant=tiny,frames={FRAMES},shrink=true", workdir,
                                   f"--config.data.root={root}", "--config.mode=evaluate",
                                   f"--config.init_from.path={released}", "--config.eval.final_clips=3",
                                   "--config.eval.final_crops=3", "--config.eval.max_batches=-1",
                                   "--config.data.num_workers=0")
  assert run.returncode == 0, run.stderr[-3000:]

  def predicted(sampling: str) -> dict[str, dict[str, str]]:
    out = tmp_path / f"{sampling}.csv"
    command = [sys.executable, "-m", "xclip_jax.predict", "--checkpoint", str(released), "--video", str(root / "test"),
               "--labels-file", str(workdir / "classes.csv"), "--clips", "3", "--crops", "3", "--top", "4",
               "--batch-size", "4", "--multiview-sampling", sampling, "--out", str(out), "--no-progress"]
    done = subprocess.run(command, cwd=training_fixtures.REPO, env=training_fixtures.subprocess_env(),
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return {row["path"]: row for row in csv.DictReader(out.open())}

  def probabilities(row: dict[str, str]) -> dict[str, float]:
    return {row[f"label_{i}"]: float(row[f"probability_{i}"]) for i in (1, 2, 3, 4)}

  evaluated = {row["path"]: row for row in csv.DictReader((workdir / "report" / "predictions.csv").open())}
  official, uniform = predicted("official"), predicted("uniform")
  assert sorted(evaluated) == sorted(official) and len(evaluated) == 8
  for path, row in evaluated.items():
    assert official[path]["label_1"] == row["label_1"], path
    mine = probabilities(official[path])
    assert mine == pytest.approx(probabilities(row), abs=1e-6), path
  assert max(abs(probabilities(uniform[p])[name] - probabilities(evaluated[p])[name])
             for p in evaluated for name in READABLE) > 1e-4

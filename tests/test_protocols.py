"""The few-shot and zero-shot protocols end to end on tiny data laid out like the real datasets
(UCF-101 folders and official split files, a Kinetics-600 label list), plus the prediction CLI."""

from __future__ import annotations

import importlib.util
import json
import pathlib
import shutil

import ml_collections
import pytest

from tests import training_fixtures
from xclip_jax import predict, pretrained, protocols
from xclip_jax.data import labels
from xclip_jax.models.config import variant_config
from xclip_jax.models.params import flat_params
from xclip_jax.models.xclip import create_model

UCF_CLASSES = labels.read_class_names("ucf_101")[:4]


def load_config(name: str, arg: str) -> ml_collections.ConfigDict:
  path = training_fixtures.REPO / "configs" / name
  spec = importlib.util.spec_from_file_location(f"config_{path.stem}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def tiny(config: ml_collections.ConfigDict, init: pathlib.Path) -> ml_collections.ConfigDict:
  """Shrinks a protocol config to the tiny model, starting from the converted model `init`."""
  config.model.variant = "tiny"
  config.model.frames = config.data.num_frames = training_fixtures.FRAMES
  config.model.dtype = "float32"
  config.model.overrides = ml_collections.ConfigDict(training_fixtures.TINY_MODEL)
  config.data.input_size = config.data.resize_short = 32
  config.data.batch_size = config.data.eval_batch_size = 8
  config.data.num_workers = 0
  config.train.total_steps = 2
  config.eval.every_steps = -1
  config.init_from.path = str(init)
  return config


@pytest.fixture(scope="module")
def world(tmp_path_factory):
  """UCF-101-style videos and split files, a K600 label list, and a 'converted' tiny X-CLIP."""
  root = tmp_path_factory.mktemp("datasets")
  synthetic = training_fixtures.make_dataset(root / "synthetic")
  clips = sorted((synthetic / "videos").rglob("*.mp4"))
  ucf, splits = root / "ucf101", root / "ucfTrainTestlist"
  splits.mkdir()
  source = iter(clips)
  train_lines = {n: [] for n in (1, 2, 3)}
  test_lines = {n: [] for n in (1, 2, 3)}
  for name in UCF_CLASSES:
    (ucf / name).mkdir(parents=True)
    for group in range(1, 5):  # groups 1-2 train, 3-4 test (split 1); other splits shuffle the roles
      relative = f"{name}/v_{name}_g{group:02d}_c01.avi"
      shutil.copy(next(source), ucf / relative)  # mp4 content under UCF's .avi name: decoded by content
      for split in (1, 2, 3):
        is_test = ((group + split) % 4) in (0, 1)
        (test_lines if is_test else train_lines)[split].append(relative)
  for split in (1, 2, 3):
    (splits / f"trainlist0{split}.txt").write_text("".join(f"{r} 1\n" for r in train_lines[split]))
    (splits / f"testlist0{split}.txt").write_text("".join(f"{r}\n" for r in test_lines[split]))

  k600_names = labels.read_class_names("kinetics_600")
  new = labels.kinetics600_new_classes()
  k600_list = root / "k600_val.txt"
  k600_list.write_text("".join(f"{path} {k600_names.index(new[i])}\n" for i, path in enumerate(clips[16:32])))

  init = root / "tiny_xclip"
  config = variant_config("tiny", frames=training_fixtures.FRAMES, **training_fixtures.TINY_MODEL)
  pretrained.save_pretrained(init, config, flat_params(create_model(config, seed=3)))
  return {"ucf": ucf, "splits": splits, "k600_list": k600_list, "init": init}


def test_few_shot_ucf101_from_split_files(world, tmp_path):
  config = tiny(load_config("few_shot.py", "dataset=ucf101,shots=2"), world["init"])
  config.data.root = str(world["ucf"])
  config.few_shot.split_dir = str(world["splits"])
  results = protocols.run(config, tmp_path)
  written = (tmp_path / "few_shot" / "ucf101_split1_train.txt").read_text().splitlines()
  assert len(written) == 8  # 2 training groups of each of the 4 classes in split 1
  assert results["protocol"] == "few_shot" and results["step"] == 2
  assert results["final"]["videos"] == 8 and results["final"]["num_classes"] == 101  # all UCF names compete
  assert results["final"]["views"] == "1x1"
  assert json.loads((tmp_path / "results.json").read_text())["final"]["videos"] == 8

  # Open-set prediction from the trained workdir, with any class names.
  video = world["ucf"] / f"{UCF_CLASSES[0]}/v_{UCF_CLASSES[0]}_g01_c01.avi"
  assert predict.main(["--checkpoint", str(tmp_path), "--video", str(video), "--labels",
                       "apply eye makeup,archery,playing guitar", "--json"]) == 0


def test_zero_shot_ucf101_three_splits(world, tmp_path, capsys):
  config = tiny(load_config("zero_shot.py", "dataset=ucf101"), world["init"])
  config.data.root = str(world["ucf"])
  config.zero_shot.split_dir = str(world["splits"])
  results = protocols.run(config, tmp_path)
  assert [r["name"] for r in results["rounds"]] == ["ucf101 split 1", "ucf101 split 2", "ucf101 split 3"]
  assert all(r["videos"] == 8 and r["num_classes"] == 101 for r in results["rounds"])
  values = [r["top1"] for r in results["rounds"]]
  assert results["top1"]["values"] == pytest.approx(values)
  assert results["top1"]["mean"] == pytest.approx(sum(values) / 3)
  assert "ucf101 mean ± std" in capsys.readouterr().out


def test_zero_shot_k600_rounds_of_new_classes(world, tmp_path):
  config = tiny(load_config("zero_shot.py", "dataset=k600"), world["init"])
  config.zero_shot.k600_val_list = str(world["k600_list"])
  config.zero_shot.k600_classes = 10
  results = protocols.run(config, tmp_path)
  assert len(results["rounds"]) == 3
  for index, round_result in enumerate(results["rounds"], start=1):
    names = labels.read_class_names(str(tmp_path / "zero_shot" / f"k600_round{index}_classes.csv"))
    assert len(names) == 10 and set(names) <= set(labels.kinetics600_new_classes())
    assert round_result["num_classes"] == 10
    listed = (tmp_path / "zero_shot" / f"k600_round{index}.txt").read_text().splitlines()
    assert round_result["videos"] == len(listed)


def test_missing_protocol_inputs_are_named(world, tmp_path):
  config = tiny(load_config("zero_shot.py", "dataset=hmdb51"), world["init"])
  with pytest.raises(ValueError, match="config.zero_shot.split_dir"):
    protocols.run(config, tmp_path)
  config = tiny(load_config("zero_shot.py", "dataset=k600"), world["init"])
  with pytest.raises(ValueError, match="config.zero_shot.k600_val_list"):
    protocols.run(config, tmp_path)
  config = tiny(load_config("zero_shot.py", "dataset=ucf101"), tmp_path / "nowhere")
  with pytest.raises(FileNotFoundError, match="nowhere"):
    protocols.run(config, tmp_path)

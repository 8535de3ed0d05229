"""Every config file builds, with its arguments, and describes a model the trainer can construct."""

from __future__ import annotations

import importlib.util
import pathlib

import pytest

from xclip_jax.data import config as data_config
from xclip_jax.models.config import ModelConfig
from xclip_jax.training import trainer

CONFIGS = pathlib.Path(__file__).resolve().parents[1] / "configs"
CASES = [
    ("demo.py", ""), ("demo.py", "shrink=true"),
    *[("kinetics.py", f"variant={v},frames={f}") for v, f in
      [("B/32", 8), ("B/32", 16), ("B/16", 8), ("B/16", 16), ("B/16", 32), ("L/14", 8), ("L/14@336", 16)]],
    ("kinetics.py", "variant=B/16,frames=8,dataset=k600"), ("kinetics.py", "shrink=true"),
    *[("few_shot.py", f"dataset={d},shots={k}") for d in ("hmdb51", "ucf101") for k in (2, 4, 8, 16)],
    ("few_shot.py", "shrink=true"),
    *[("zero_shot.py", f"dataset={d}") for d in ("hmdb51", "ucf101", "k600")], ("zero_shot.py", "source=tfds"),
]


def load(name: str, arg: str):
  """Imports a config file by path and calls get_config(arg), as ml_collections' config_flags does."""
  spec = importlib.util.spec_from_file_location(f"config_{name[:-3]}", CONFIGS / name)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg or None)


@pytest.mark.parametrize(("name", "arg"), CASES, ids=[f"{n}:{a}" for n, a in CASES])
def test_config_builds(name, arg):
  config = load(name, arg)
  data_config.validate(config.data)
  model = trainer.model_config_from(config)
  assert isinstance(model, ModelConfig)
  assert config.protocol in ("supervised", "few_shot", "zero_shot", "demo")
  assert model.num_frames == config.data.num_frames
  if "@336" in arg:
    assert config.data.input_size == 336 and model.image_size == 336 and config.model.remat
  if name == "kinetics.py" and "shrink" not in arg:
    assert config.data.batch_size == 256 and config.train.lr == 8e-6 and (config.eval.final_clips,
                                                                          config.eval.final_crops) == (4, 3)
  if name == "few_shot.py" and "shrink" not in arg:
    assert config.data.k_shot in (2, 4, 8, 16) and config.train.epochs == 50 and config.train.lr == 2e-6
  config.lock()  # main locks configs: every field the code reads must exist already
  assert config.train.train_text in (True, False)


def test_every_config_file_is_covered():
  assert {path.name for path in CONFIGS.glob("*.py")} == {name for name, _ in CASES}


@pytest.mark.parametrize("arg", ["variant", "frames=eight", "unknown=1", "shrink=maybe"])
def test_bad_arguments_are_named(arg):
  with pytest.raises(ValueError, match="config argument"):
    load("kinetics.py", arg)


def test_bad_choices_are_named():
  with pytest.raises(ValueError, match="dataset must be k400 or k600"):
    load("kinetics.py", "dataset=k700")
  with pytest.raises(ValueError, match="Unknown variant 'H/14'"):
    trainer.model_config_from(load("kinetics.py", "variant=H/14"))

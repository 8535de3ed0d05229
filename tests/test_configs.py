"""Every config file builds, with its arguments, and describes a model the trainer can construct."""

from __future__ import annotations

import importlib.util
import pathlib

import jax
import numpy as np
import pytest
from flax import nnx

from xclip_jax import demo, protocols, run_config
from xclip_jax.data import config as data_config
from xclip_jax.models.config import ModelConfig
from xclip_jax.models.xclip import create_model
from xclip_jax.training import run_model

CONFIGS = pathlib.Path(__file__).resolve().parents[1] / "configs"
CASES = [
    ("demo.py", ""), ("demo.py", "shrink=true"), ("demo.py", "seed=2"),
    *[("kinetics.py", f"variant={v},frames={f}") for v, f in
      [("B/32", 8), ("B/32", 16), ("B/16", 8), ("B/16", 16), ("B/16", 32), ("L/14", 8), ("L/14@336", 16)]],
    ("kinetics.py", "variant=B/16,frames=8,dataset=k600"), ("kinetics.py", "shrink=true"),
    *[("few_shot.py", f"dataset={d},shots={k}") for d in ("hmdb51", "ucf101") for k in (2, 4, 8, 16)],
    ("few_shot.py", "shrink=true"),
    *[("zero_shot.py", f"dataset={d}") for d in ("hmdb51", "ucf101", "k600")], ("zero_shot.py", "source=tfds"),
    *[("finetune.py", a) for a in ("", "variant=B/16,frames=8", "frames=16", "variant=B/32", "variant=L/14",
                                   "variant=L/14@336", "init=zero", "init=clip,frames=32", "init=none", "shots=2",
                                   "shrink=true", "variant=tiny,frames=4,shrink=true")],
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
  model = run_model.model_config_from(config)
  assert isinstance(model, ModelConfig)
  assert config.protocol in protocols.PROTOCOLS
  assert tuple(protocols.PROTOCOLS) == run_config.PROTOCOLS  # every protocol a config may name has its runner
  assert model.num_frames == config.data.num_frames
  if "@336" in arg:
    assert config.data.input_size == 336 and model.image_size == 336 and config.model.remat
  if name == "kinetics.py" and "shrink" not in arg:
    assert config.data.batch_size == 256 and config.train.lr == 8e-6 and (config.eval.final_clips,
                                                                          config.eval.final_crops) == (4, 3)
  if name == "few_shot.py" and "shrink" not in arg:
    assert config.data.k_shot in (2, 4, 8, 16) and config.train.epochs == 50 and config.train.lr == 2e-6
  if name == "finetune.py":
    assert config.data.source == "folders" and config.data.readable_names and config.train.lr == 2e-6
    assert config.protocol == ("few_shot" if "shots" in arg else "supervised")
  config.lock()  # main locks configs: every field the code reads must exist already
  assert config.train.train_text in (True, False)
  # One home per value: the clips have the model's frames, whichever of the two names is set.
  for name_set, value in (("model.frames", 16), ("data.num_frames", 32)):
    block, field = name_set.split(".")
    config[block][field] = value
    assert config.model.frames == config.data.num_frames == value, name_set
  assert "test_clips" not in config.data and "test_crops" not in config.data  # eval.final_* are the views


def test_the_schedule_length_is_computed_in_one_place():
  """optimizer.schedule_steps: epochs x steps per epoch, or total_steps with the warm-up's share of the epochs."""
  from xclip_jax.training import optimizer

  train = load("kinetics.py", "").train  # 30 epochs, 5 of warm-up
  assert optimizer.schedule_steps(train, 40) == (1200, 200)
  train.total_steps = 600
  assert optimizer.schedule_steps(train, 40) == (600, 100)


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
    run_model.model_config_from(load("kinetics.py", "variant=H/14"))


def test_demo_seed_changes_data_and_initialisation():
  one, two = load("demo.py", "seed=1"), load("demo.py", "seed=2")
  seeds = lambda c: (c.data.seed, c.train.seed, c.demo.synthetic.seed, c.demo.few_shot.data.k_shot_seed)
  assert seeds(one) == (1, 1, 1, 1) and seeds(two) == (2, 2, 2, 2)
  # Each run's data is under its own workdir unless data.synthetic_dir says otherwise.
  assert one.data.synthetic_dir == two.data.synthetic_dir == ""
  assert demo.demo_data_dir(one, "gs://bucket/runs/demo") == "gs://bucket/runs/demo/data"
  one.data.synthetic_dir = "/data/shapes"
  assert demo.demo_data_dir(one, "runs/demo") == "/data/shapes"


def test_video_position_init_std_changes_only_the_position_embeddings():
  """The demo's one model change (configs/demo.py): the ViT's spatial and the MIT's temporal position
  embeddings start at std 1.0; every other parameter is drawn exactly as with the official init."""
  demo = run_model.model_config_from(load("demo.py", ""))
  faithful = demo.replace(video_position_init_std=ModelConfig().video_position_init_std)
  assert faithful.video_position_init_std == 0.0 and demo.video_position_init_std == 1.0
  flat = lambda config: {jax.tree_util.keystr(k): np.asarray(v) for k, v in jax.tree_util.tree_leaves_with_path(
      nnx.to_pure_dict(nnx.state(create_model(config, seed=3), nnx.Param)))}
  a, b = flat(faithful), flat(demo)
  assert sorted(k for k in a if not np.array_equal(a[k], b[k])) == ["['mit']['positional_embedding']",
                                                                    "['visual']['positional_embedding']"]
  mit, visual = "['mit']['positional_embedding']", "['visual']['positional_embedding']"
  assert 0.015 < a[mit].std() < 0.025 and 0.8 < b[mit].std() < 0.95  # trunc-normal, cut at +-2
  assert abs(a[visual].std() - demo.vision_width**-0.5) < 0.01 and 0.95 < b[visual].std() < 1.05
  with pytest.raises(ValueError, match="video_position_init_std"):
    ModelConfig(video_position_init_std=-1.0)


def test_finetune_starts_from_the_released_model_of_its_shape():
  init = lambda arg: load("finetune.py", arg).init_from.path
  assert init("") == init("variant=B/16,frames=8") == "microsoft/xclip-base-patch16"
  assert init("frames=16") == "microsoft/xclip-base-patch16-16-frames"
  assert init("variant=L/14@336") == "microsoft/xclip-large-patch14-16-frames"
  assert init("init=zero") == "microsoft/xclip-base-patch16-zero-shot"
  assert load("finetune.py", "init=zero").model.frames == 32
  assert init("init=clip,frames=32") == "openai:ViT-B/16" and init("variant=tiny") == init("init=none") == ""
  few = load("finetune.py", "shots=4")
  assert (few.data.k_shot, few.train.epochs, few.eval.every_steps) == (4, 50, -1)
  assert [load("finetune.py", f"init=clip,frames={f}").data.batch_size for f in (8, 16, 32)] == [32, 16, 8]
  with pytest.raises(ValueError, match="no released Kinetics-400 model for variant=B/16, frames=32"):
    load("finetune.py", "frames=32")
  with pytest.raises(ValueError, match="the zero-shot model is B/16 with 32 frames"):
    load("finetune.py", "init=zero,frames=8")
  with pytest.raises(ValueError, match="variant=tiny has no released weights"):
    load("finetune.py", "variant=tiny,init=clip")

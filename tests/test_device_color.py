"""Colour jitter and grayscale on the device (data.augment.color_on_device): the host path's values and draws."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from tests import data_fixtures as F
from tests import training_fixtures
from xclip_jax.data import config, device_color, labels, pipeline, transforms

apply = jax.jit(device_color.apply)


def _clips(seed=0):
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[0:64, 0:80]
  smooth = np.stack([np.stack([xx * 3 + t * 5, yy * 4, (xx + yy) * 2], -1) for t in range(4)])
  return [rng.integers(0, 256, (4, 64, 80, 3), np.uint8), np.clip(smooth, 0, 255).astype(np.uint8)]


def _both_ways(frames, seed, **color):
  host = transforms.train_clip(frames, np.random.default_rng(seed), input_size=48, short=64, **color)
  rng = np.random.default_rng(seed)
  geometry = transforms.train_geometry(frames, rng, input_size=48, short=64)
  params = transforms.color_params(rng, len(geometry), **color)
  return host, np.asarray(apply(geometry[None], params[None]))[0], params


def test_brightness_contrast_saturation_and_grayscale_are_exact():
  for frames in _clips():
    for seed in range(12):
      host, device, params = _both_ways(frames, seed, hue=0.0, color_jitter_p=0.7, gray_scale=0.3)
      np.testing.assert_array_equal(device, host)
  assert params[:, device_color.HUE_ON].max() == 0


def test_hue_matches_pillow_up_to_rounding():
  differing, jittered = [], 0
  for frames in _clips(1):
    for seed in range(12):
      host, device, params = _both_ways(frames, seed, color_jitter_p=1.0, gray_scale=0.0)
      jittered += int(params[:, device_color.HUE_ON].min() == 1)
      differing.append(np.mean(host != device))
  # Pillow rounds its HSV hue through doubles, this float32: one hue level apart on a few pixels.
  assert jittered == 24 and np.mean(differing) < 0.01


def test_draws_match_the_host_path_so_later_clips_do_not_shift():
  frames = _clips()[0]
  rng_host, rng_device = np.random.default_rng(3), np.random.default_rng(3)
  for _ in range(3):
    transforms.train_clip(frames, rng_host, input_size=48, short=64)
    g = transforms.train_geometry(frames, rng_device, input_size=48, short=64)
    transforms.color_params(rng_device, len(g))
  assert rng_host.random() == rng_device.random()


def test_train_step_applies_the_colour_parameters():
  """Through the jitted step with 2 micro-batches: gray parameters give the loss of the batch grayed on the host."""
  import jax.numpy as jnp
  import optax

  from xclip_jax import sharding
  from xclip_jax.models.config import variant_config
  from xclip_jax.tokenizer import tokenize
  from xclip_jax.training import optimizer, steps, train_state

  config = training_fixtures.tiny_config(training_fixtures.REPO)
  model_config = variant_config("tiny", frames=training_fixtures.FRAMES, **training_fixtures.TINY_MODEL)
  mesh = sharding.make_mesh({"data": 4}, devices=jax.devices()[:4])
  rng = np.random.default_rng(0)
  video = rng.integers(0, 256, (8, training_fixtures.FRAMES, 32, 32, 3), dtype=np.uint8)
  label = rng.integers(0, 3, (8,)).astype(np.int32)
  identity = np.stack([transforms.color_params(rng, training_fixtures.FRAMES, color_jitter_p=0.0, gray_scale=0.0)
                       for _ in range(8)])
  gray = identity.copy()
  gray[4:, :, device_color.GRAY] = 1.0  # The second micro-batch only.
  host_gray = video.copy()
  host_gray[4:] = transforms.grayscale(video[4:].reshape(-1, 32, 32, 3)).reshape(video[4:].shape)
  tokens = jnp.asarray(tokenize(["a circle", "a square", "a cross"]))
  _, schedules = optimizer.make_optimizer(config.train, total_steps=10, warmup_steps=0)
  trainable = optimizer.trainable_filter(True)
  state = train_state.create_train_state(model_config, optax.sgd(1.0), trainable, mesh, seed=0)
  step_config = steps.TrainStepConfig(num_classes=3, grad_accum_steps=2, train_text=True, mixup=0.0)
  step = jax.jit(steps.make_train_step(state.graphdef, trainable, step_config, schedules))
  losses = {}
  with jax.set_mesh(mesh):
    for name, (frames, params) in {"plain": (video, identity), "host gray": (host_gray, identity),
                                   "device gray": (video, gray)}.items():
      batch = {"video": frames, "label": label, "color": params}
      losses[name] = float(step(state.state, batch, tokens, jax.random.key(0))[1]["loss"])
  assert losses["device gray"] == pytest.approx(losses["host gray"], rel=1e-6)
  assert abs(losses["host gray"] - losses["plain"]) > 1e-4


def test_pipeline_ships_the_parameters_of_the_same_clip(tmp_path):
  list_path, csv_path, _ = F.make_file_dataset(str(tmp_path), num_classes=2, per_class=2, height=64, width=80)
  cfg = dict(source="files", train_list=list_path, root=str(tmp_path), class_names=csv_path, num_frames=4,
             input_size=48, resize_short=64, batch_size=4, num_workers=0, seed=2, augment={"hue": 0.0})
  host = next(pipeline.make_train_iterator(config.data_config(**cfg), process_index=0, process_count=1))
  cfg["augment"] = {"hue": 0.0, "color_on_device": True}
  device = next(pipeline.make_train_iterator(config.data_config(**cfg), process_index=0, process_count=1))
  assert device["color"].shape == (4, 4, device_color.COLUMNS) and "color" not in host
  np.testing.assert_array_equal(host["index"], device["index"])
  np.testing.assert_array_equal(np.asarray(apply(device["video"], device["color"])), host["video"])
  assert labels.read_class_names(csv_path) == ["class 0", "class 1"]

"""Compile options of the inference and evaluation programs: float32 programs on the CPU take XLA's Eigen products
instead of YNNPACK's (faster at this model's shapes, docs/performance.md), bf16 ones keep YNNPACK's AVX512-BF16
kernels, and every program whose probabilities a user compares (load_model/predict, main's evaluation) takes the
same options."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from tests import training_fixtures
from xclip_jax import sharding
from xclip_jax.evaluation import video_files
from xclip_jax.evaluation.evaluator import Evaluator
from xclip_jax.inference import InferenceModel
from xclip_jax.models import layers
from xclip_jax.models.config import variant_config
from xclip_jax.models.xclip import create_model
from xclip_jax.tokenizer import tokenize

pytestmark = pytest.mark.skipif(jax.default_backend() != "cpu", reason="XLA:CPU's programs")
YNNPACK = "ynn_fusion"  # how a YNNPACK fusion is named in a compiled XLA:CPU program


def _tiny(dtype: str):
  config = variant_config("tiny", frames=training_fixtures.FRAMES, dtype=dtype, **training_fixtures.TINY_MODEL)
  module = create_model(config, seed=0)
  videos = jax.random.normal(jax.random.key(1), (2, config.num_frames, config.image_size, config.image_size, 3))
  tokens = tokenize(["archery", "juggling balls", "surfing"], context_length=config.context_length)
  return config, InferenceModel(module), videos, tokens


def test_options_are_eigen_products_for_float32_on_the_cpu_only():
  assert layers.inference_compiler_options("float32") == layers.EIGEN_PRODUCTS
  assert layers.inference_compiler_options("bfloat16") is None
  assert layers.inference_compiler_options("float32", platform="tpu") is None
  assert layers.inference_compiler_options("float32", platform="gpu") is None


def test_float32_programs_use_eigen_products_and_bf16_programs_keep_ynnpack():
  for dtype, uses_ynnpack in (("float32", False), ("bfloat16", True)):
    config, model, videos, tokens = _tiny(dtype)
    programs = {"encode_video": model._encode_video.lower(model.state, videos),
                "encode_text": model._encode_text.lower(model.state, tokens)}
    mesh = sharding.make_mesh({"data": 1, "fsdp": 1, "tensor": 1}, devices=jax.devices()[:1])
    evaluator = Evaluator(model.graphdef, mesh, dtype=dtype)
    programs["evaluator.text_encoder"] = evaluator.text_encoder.lower(model.state, tokens)
    features = model.encode_text(tokens)
    views = np.zeros((2, 1, *videos.shape[1:]), np.uint8)  # (B, V, T, H, W, 3) uint8 frames
    programs["predict's probability step"] = video_files._probability_step(model.graphdef, config.dtype).lower(
        model.state, views, features)
    for name, lowered in programs.items():
      assert (YNNPACK in lowered.compile().as_text()) == uses_ynnpack, (dtype, name)


def test_float32_logits_stay_within_float32_rounding_of_the_default_products():
  """Eigen's products sum in another order than YNNPACK's: the same logits to float32 rounding."""
  _, model, videos, tokens = _tiny("float32")
  module = model.module
  default = jax.jit(lambda m, v, t: m(v, t))(module, videos, tokens)
  np.testing.assert_allclose(np.asarray(model(videos, tokens)), np.asarray(default), rtol=0, atol=1e-4)

"""bfloat16 on the CPU: the model's products reach XLA:CPU as bf16 x bf16 with float32 accumulation (the form
its AVX512-BF16 kernels run, docs/performance.md#bfloat16-on-the-cpu), and bf16 prediction stays close to
float32."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xclip_jax
from tests import training_fixtures
from xclip_jax import pretrained
from xclip_jax.inference import normalize_frames
from xclip_jax.models import layers
from xclip_jax.models.config import variant_config
from xclip_jax.models.params import flat_params
from xclip_jax.models.xclip import create_model

pytestmark = pytest.mark.skipif(jax.default_backend() != "cpu", reason="XLA:CPU's program")
HLO_TYPE = {"bfloat16": "bf16", "float32": "f32"}


def product_operand_types(hlo: str) -> list[list[str]]:
  """The operand element types of every dot in a compiled program (fused dots: their computation's
  parameters; a dot in the entry computation: its operands' types)."""
  types = {}
  for name, element in re.findall(r"%([\w.\-]+) = (\w+)\[", hlo):
    types[name] = element
  for name, element in re.findall(r"([\w.\-]+): (\w+)\[", hlo):  # computation parameters
    types[name] = element
  found = []
  for operands in re.findall(r" dot\(%([\w.\-]+), %([\w.\-]+)\)", hlo):
    found.append([types[operand] for operand in operands])
  return found


@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
def test_products_keep_the_compute_dtype_on_the_cpu(dtype):
  linear = layers.Linear(64, 32, axes=(None, None), rngs=layers.KeySequence(0), dtype=dtype)
  x = jnp.ones((16, 64), jnp.float32)
  hlo = jax.jit(lambda x: linear(x)).lower(x).compile().as_text()
  assert product_operand_types(hlo) == [[HLO_TYPE[dtype]] * 2]
  assert linear(x).dtype == jnp.dtype(dtype)


def test_bfloat16_prediction_stays_close_to_float32(tmp_path):
  config = variant_config("tiny", frames=training_fixtures.FRAMES, **training_fixtures.TINY_MODEL)
  pretrained.save_pretrained(tmp_path / "model", config, flat_params(create_model(config, seed=0)))
  rng = np.random.default_rng(0)
  videos = normalize_frames(rng.integers(0, 256, (4, config.num_frames, config.image_size, config.image_size, 3),
                                         np.uint8))
  classes = ["archery", "juggling balls", "playing piano", "petting a cat", "surfing"]
  logits = {}
  for dtype in ("float32", "bfloat16"):
    model = xclip_jax.load_model(tmp_path / "model", dtype=dtype)
    logits[dtype] = np.asarray(model(videos, xclip_jax.tokenize(classes)))
  difference = np.abs(logits["bfloat16"] - logits["float32"])
  spread = logits["float32"].max() - logits["float32"].min()
  print(f"bf16 vs float32 logits: max |difference| {difference.max():.3g}, float32 spread {spread:.3g}")
  assert 0 < difference.max() < 0.05 * spread

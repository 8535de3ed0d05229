"""bfloat16 on the CPU: the model's products reach XLA:CPU as bf16 x bf16 with float32 accumulation (the form
its AVX512-BF16 kernels run, docs/performance.md#bfloat16-on-the-cpu), and bf16 prediction stays close to
float32."""

from __future__ import annotations

import json
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests import data_fixtures as F
from tests import training_fixtures
from xclip_jax import predict, pretrained
from xclip_jax.inference import InferenceModel
from xclip_jax.models import layers
from xclip_jax.models.config import variant_config
from xclip_jax.models.params import flat_params
from xclip_jax.models.xclip import create_model
from xclip_jax.tokenizer import tokenize

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
  # Training: the input's and the kernel's gradient products too; the kernel's gradient stays float32.
  loss = lambda kernel, x: jnp.sum(layers.matmul(x, kernel, linear.dtype).astype(jnp.float32) ** 2)
  gradient = jax.jit(jax.grad(loss, argnums=(0, 1)))
  x = jax.random.normal(jax.random.key(1), (2, 8, 64))
  hlo = gradient.lower(linear.kernel[...], x).compile().as_text()
  assert product_operand_types(hlo) == [[HLO_TYPE[dtype]] * 2] * 3
  kernel_grad, x_grad = gradient(linear.kernel[...], x)
  reference = jax.grad(lambda k, x: jnp.sum(layers.matmul(x, k, jnp.float32) ** 2), argnums=(0, 1))
  for got, want in zip((kernel_grad, x_grad), reference(linear.kernel[...], x), strict=True):
    assert got.dtype == jnp.float32 and float(jnp.max(jnp.abs(got - want)) / jnp.max(jnp.abs(want))) < 0.02


# bf16 keeps 8 bits of mantissa, and the logit scale (100) magnifies what that moves: on this tiny random model
# predict's probabilities move by up to 0.0098 (2026-12-06); the B/32 figures are in
# docs/performance.md#bfloat16-on-the-cpu.
PROBABILITY_TOLERANCE = 0.03


def test_predict_dtype_bfloat16_stays_close_to_float32(tmp_path, capsys):
  config = variant_config("tiny", frames=training_fixtures.FRAMES, **training_fixtures.TINY_MODEL)
  pretrained.save_pretrained(tmp_path / "model", config, flat_params(create_model(config, seed=0)))
  rng = np.random.default_rng(0)
  videos = [F.write_video(str(tmp_path / f"{i}.mp4"), rng.integers(0, 256, (12, 48, 64, 3), np.uint8))
            for i in range(2)]
  classes = ["archery", "juggling balls", "playing piano", "petting a cat", "surfing"]
  probabilities = {}
  for dtype in ("float32", "bfloat16"):
    assert predict.main(["--checkpoint", str(tmp_path / "model"), "--video", *videos, "--labels", ",".join(classes),
                         "--top", str(len(classes)), "--json", "--no-progress", "--dtype", dtype]) == 0
    rows = json.loads(capsys.readouterr().out)
    probabilities[dtype] = np.array([[dict((t["label"], t["probability"]) for t in row["top"])[name]
                                      for name in classes] for row in rows])
  difference = np.abs(probabilities["bfloat16"] - probabilities["float32"])
  print(f"bf16 vs float32 probabilities: max |difference| {difference.max():.3g}")
  assert 0 < difference.max() < PROBABILITY_TOLERANCE  # bf16 really ran, and stayed close


def test_inference_stores_bf16_weights_and_gives_the_same_logits():
  """A bf16 model loaded for inference holds its products' weights rounded once (half the memory, no
  conversion per call); every call rounded them anyway, so the logits must be bit-identical."""
  config = variant_config("tiny", frames=training_fixtures.FRAMES, dtype="bfloat16", **training_fixtures.TINY_MODEL)
  module = create_model(config, seed=0)
  videos = jax.random.normal(jax.random.key(1), (2, config.num_frames, config.image_size, config.image_size, 3))
  tokens = tokenize(["archery", "juggling balls", "surfing"], context_length=config.context_length)
  want = jax.jit(lambda m, v, t: m(v, t))(module, videos, tokens)
  model = InferenceModel(module)
  kernels = {str(path): leaf.dtype for path, leaf in jax.tree_util.tree_leaves_with_path(model.state)
             if "kernel" in str(path)}
  assert kernels and set(kernels.values()) == {jnp.dtype(jnp.bfloat16)}, kernels
  assert model.state["logit_scale"][...].dtype == jnp.float32  # only the products' weights change
  np.testing.assert_array_equal(np.asarray(model(videos, tokens)), np.asarray(want))

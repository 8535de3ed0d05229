"""The heads-first attention (the CPU's default) computes what `jax.nn.dot_product_attention` computes."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xclip_jax.models import layers

# (queries, keys, causal): self-attention of a vision block, the text tower's causal one, the prompt
# generator's class texts attending to video tokens.
CASES = [(13, 13, False), (9, 9, True), (5, 21, False)]


def _inputs(lq: int, lk: int, dtype) -> tuple[jax.Array, ...]:
  keys = jax.random.split(jax.random.key(0), 3)
  return tuple(jax.random.normal(key, (3, length, 4, 16), jnp.float32).astype(dtype)
               for key, length in zip(keys, (lq, lk, lk), strict=True))


def _outputs_and_gradients(attention, q, k, v):
  """The attention's output and the gradients of a loss of it by q, k and v, in one compiled program."""
  loss = lambda q, k, v: jnp.sum(attention(q, k, v).astype(jnp.float32) ** 2)
  return jax.jit(lambda q, k, v: (attention(q, k, v), jax.grad(loss, argnums=(0, 1, 2))(q, k, v)))(q, k, v)


@pytest.mark.parametrize(("lq", "lk", "causal"), CASES)
@pytest.mark.parametrize(("dtype", "tolerance"), [(jnp.float32, 2e-6), (jnp.bfloat16, 2e-2)])
def test_heads_first_attention_matches_jax_and_so_does_its_gradient(lq, lk, causal, dtype, tolerance):
  q, k, v = _inputs(lq, lk, dtype)
  got, grads = _outputs_and_gradients(lambda *x: layers.heads_first_attention(*x, causal=causal), q, k, v)
  want, reference = _outputs_and_gradients(
      lambda *x: jax.nn.dot_product_attention(*x, is_causal=causal, implementation="xla"), q, k, v)
  assert got.dtype == want.dtype and got.shape == want.shape
  np.testing.assert_allclose(np.asarray(got, np.float32), np.asarray(want, np.float32), atol=tolerance)
  if causal:  # the first query sees only the first key: its output is that key's value
    np.testing.assert_allclose(np.asarray(got[:, 0], np.float32), np.asarray(v[:, 0], np.float32), atol=tolerance)
  for got_grad, want_grad in zip(grads, reference, strict=True):
    scale = float(jnp.max(jnp.abs(want_grad.astype(jnp.float32))))
    np.testing.assert_allclose(np.asarray(got_grad, np.float32) / scale, np.asarray(want_grad, np.float32) / scale,
                               atol=tolerance * 4)


def test_auto_attention_is_heads_first_on_the_cpu_only():
  expected = "heads_first" if jax.default_backend() == "cpu" else "xla"
  assert layers.attention_backend("auto", jnp.float32, 64) == expected
  assert layers.attention_backend("xla", jnp.float32, 64) == "xla"  # what export asks for keeps jax.nn's


def test_a_program_for_tpus_traced_on_a_cpu_host_takes_the_tpu_forms():
  """A TPU plan is traced on a CPU host under a mesh of TPU devices (xclip_jax.plan): the CPU-only forms
  (heads-first attention, bf16 products with their own gradient) follow the mesh's platform, not the host's."""
  tpu = jax.sharding.AbstractDevice(device_kind="TPU v5 lite", num_cores=None, platform="tpu")
  mesh = jax.sharding.AbstractMesh((1,), ("data",), abstract_device=tpu)
  x, kernel = jnp.ones((4, 8), jnp.bfloat16), jnp.ones((8, 8), jnp.float32)
  with jax.sharding.use_abstract_mesh(mesh):
    assert layers.target_platform() == "tpu"
    assert layers.attention_backend("auto", jnp.bfloat16, 64) == "xla"
    traced = str(jax.make_jaxpr(lambda x, k: layers.matmul(x, k, jnp.bfloat16))(x, kernel))
  assert "custom_vjp" not in traced, traced
  if jax.default_backend() == "cpu":  # and without that mesh, this host's own forms
    assert "custom_vjp" in str(jax.make_jaxpr(lambda x, k: layers.matmul(x, k, jnp.bfloat16))(x, kernel))

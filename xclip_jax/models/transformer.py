"""The pre-LayerNorm residual attention block of CLIP, and a stack of them.

Used by the text tower (causal) and the multi-frame integration transformer. The vision tower uses its
own block (cross-frame communication) in `cct.py`.
"""

from __future__ import annotations

import jax
from flax import nnx

from xclip_jax.models import layers


class ResidualAttentionBlock(nnx.Module):
  """x + attn(ln_1(x)), then x + mlp(ln_2(x)), as CLIP's `ResidualAttentionBlock`."""

  def __init__(self, width: int, heads: int, mlp_dim: int, *, rngs: nnx.Rngs, causal: bool = False,
               eps: float = 1e-5, dtype: str = "float32", implementation: str = "auto",
               qkv_init: layers.Initializer | None = None, out_init: layers.Initializer | None = None,
               mlp_init: layers.Initializer | None = None):
    self.ln_1 = layers.LayerNorm(width, eps=eps, dtype=dtype)
    self.attn = layers.Attention(width, heads, rngs=rngs, dtype=dtype, implementation=implementation,
                                 qkv_init=qkv_init, out_init=out_init)
    self.ln_2 = layers.LayerNorm(width, eps=eps, dtype=dtype)
    self.mlp = layers.MLP(width, mlp_dim, rngs=rngs, dtype=dtype, kernel_init=mlp_init)
    self.causal = causal

  def __call__(self, x: jax.Array) -> jax.Array:
    x = x + self.attn(self.ln_1(x), causal=self.causal)
    return x + self.mlp(self.ln_2(x))


def _apply_block(block: nnx.Module, x: jax.Array, *args) -> jax.Array:
  return block(x, *args)


def run_blocks(blocks: nnx.List, x: jax.Array, *args, remat: bool = False) -> jax.Array:
  """Applies blocks in order, passing the same extra array arguments to each.

  With `remat`, each block's activations are recomputed in the backward pass instead of stored.
  """
  apply = nnx.remat(_apply_block) if remat else _apply_block
  for block in blocks:
    x = apply(block, x, *args)
  return x


class Transformer(nnx.Module):
  """`layers` residual attention blocks of equal width."""

  def __init__(self, width: int, layers_: int, heads: int, mlp_dim: int, *, rngs: nnx.Rngs,
               causal: bool = False, eps: float = 1e-5, dtype: str = "float32", implementation: str = "auto",
               remat: bool = False,
               qkv_init: layers.Initializer | None = None, out_init: layers.Initializer | None = None,
               mlp_init: layers.Initializer | None = None):
    self.resblocks = nnx.List([
        ResidualAttentionBlock(width, heads, mlp_dim, rngs=rngs, causal=causal, eps=eps, dtype=dtype,
                               implementation=implementation, qkv_init=qkv_init, out_init=out_init,
                               mlp_init=mlp_init)
        for _ in range(layers_)
    ])
    self.remat = remat

  def __call__(self, x: jax.Array) -> jax.Array:
    return run_blocks(self.resblocks, x, remat=self.remat)

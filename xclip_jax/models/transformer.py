"""The pre-LayerNorm residual attention block of CLIP, and a stack of them.

Used by the text tower (causal) and the multi-frame integration transformer. The vision tower uses its
own block (cross-frame communication) in `cct.py`.
"""

from __future__ import annotations

import jax
from flax import nnx

from xclip_jax.models import layer_stack, layers


class ResidualAttentionBlock(nnx.Module):
  """x + attn(ln_1(x)), then x + mlp(ln_2(x)), as CLIP's `ResidualAttentionBlock`."""

  def __init__(self, width: int, heads: int, mlp_dim: int, *, rngs: layers.KeySequence, causal: bool = False,
               eps: float = 1e-5, dtype: str = "float32", implementation: str = "auto",
               qkv_init: layers.Initializer | None = None, out_init: layers.Initializer | None = None,
               mlp_init: layers.Initializer | None = None):
    self.ln_1 = layers.LayerNorm(width, eps=eps, dtype=dtype)
    self.attn = layers.Attention(width, heads, rngs=rngs, dtype=dtype, implementation=implementation,
                                 qkv_init=qkv_init, out_init=out_init)
    self.ln_2 = layers.LayerNorm(width, eps=eps, dtype=dtype)
    self.mlp = layers.MLP(width, mlp_dim, rngs=rngs, dtype=dtype, kernel_init=mlp_init)
    self.causal = causal

  def __call__(self, x: jax.Array, *, layer: int | jax.Array | None = None) -> jax.Array:
    del layer  # every block of a stack is told its index; this one does not need it
    x = x + self.attn(self.ln_1(x), causal=self.causal)
    return x + self.mlp(self.ln_2(x))


class Transformer(nnx.Module):
  """`layers` residual attention blocks of equal width."""

  def __init__(self, width: int, layers_: int, heads: int, mlp_dim: int, *, rngs: layers.KeySequence,
               causal: bool = False, eps: float = 1e-5, dtype: str = "float32", implementation: str = "auto",
               remat: bool = False, scan_layers: bool = False,
               qkv_init: layers.Initializer | None = None, out_init: layers.Initializer | None = None,
               mlp_init: layers.Initializer | None = None):
    self.resblocks = layer_stack.init_blocks(
        lambda keys: ResidualAttentionBlock(width, heads, mlp_dim, rngs=keys, causal=causal, eps=eps, dtype=dtype,
                                            implementation=implementation, qkv_init=qkv_init, out_init=out_init,
                                            mlp_init=mlp_init),
        layers_, rngs, stacked=scan_layers)
    self.remat = remat

  def __call__(self, x: jax.Array) -> jax.Array:
    return layer_stack.run_blocks(self.resblocks, x, remat=self.remat)

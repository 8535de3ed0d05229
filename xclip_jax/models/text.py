"""CLIP's text transformer: causal self-attention over 77 tokens, pooled at the end-of-text token."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from xclip_jax.models import layers
from xclip_jax.models.config import ModelConfig
from xclip_jax.models.transformer import Transformer


class TextTransformer(nnx.Module):
  """Tokens (K, context_length) int32 -> class-text embeddings (K, E)."""

  def __init__(self, config: ModelConfig, *, rngs: layers.KeySequence):
    width, depth = config.text_width, config.text_layers
    self.dtype = layers.compute_dtype(config.dtype)
    self.context_length = config.context_length
    # CLIP's `initialize_parameters` stds; only used when not loading pretrained weights.
    attn_std, fc_std = width**-0.5, (2 * width)**-0.5
    self.token_embedding = layers.param(0.02 * jax.random.normal(rngs.params(), (config.vocab_size, width)),
                                        (layers.VOCAB, layers.EMBED))
    self.positional_embedding = layers.param(
        0.01 * jax.random.normal(rngs.params(), (config.context_length, width)), (None, layers.EMBED))
    self.transformer = Transformer(
        width, depth, config.text_heads, config.text_mlp_dim, rngs=rngs, causal=True,
        eps=config.layer_norm_eps, dtype=config.dtype, implementation=config.attention_implementation,
        remat=config.remat, scan_layers=config.scan_layers, qkv_init=nnx.initializers.normal(attn_std),
        out_init=nnx.initializers.normal(attn_std * (2 * depth)**-0.5), mlp_init=nnx.initializers.normal(fc_std))
    self.ln_final = layers.LayerNorm(width, eps=config.layer_norm_eps, dtype=config.dtype)
    self.text_projection = layers.param(attn_std * jax.random.normal(rngs.params(), (width, config.embed_dim)),
                                        (layers.EMBED, layers.JOINT))

  def __call__(self, tokens: jax.Array) -> jax.Array:
    if tokens.ndim != 2 or tokens.shape[1] != self.context_length:
      raise ValueError(f"tokens must be (K, {self.context_length}) as made by xclip_jax.tokenize, "
                       f"got shape {tokens.shape}.")
    x = jnp.take(self.token_embedding[...], tokens, axis=0).astype(self.dtype)
    x = x + self.positional_embedding[...].astype(self.dtype)
    x = self.ln_final(self.transformer(x))
    # The end-of-text token has the largest id (49407): pool there, as CLIP does. A take_along_axis rather than
    # x[arange(K), argmax], which jax2onnx cannot convert with a dynamic K (xclip_jax/export, docs/export.md).
    eos = jnp.argmax(tokens, axis=-1)
    pooled = jnp.take_along_axis(x, eos[:, None, None], axis=1)[:, 0]
    return layers.matmul(pooled, self.text_projection[...], self.dtype)

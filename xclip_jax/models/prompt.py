"""Video-specific prompt generator: class-text embeddings attend to the video's patch tokens.

Official `models/prompt.py` (`VideoSpecificPrompt`): the visual context is LayerNorm-ed once, then each
decoder layer does text -> video cross-attention and an MLP, both residual; the result is scaled by a
learnable per-channel alpha (init 0.1) and added to the text embedding by the caller.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from xclip_jax.models import layers
from xclip_jax.models.config import ModelConfig


class PromptGeneratorLayer(nnx.Module):
  """text + CrossAttn(norm1(text), visual), then text + MLP(norm3(text))."""

  def __init__(self, config: ModelConfig, *, rngs: layers.KeySequence):
    width, dtype = config.embed_dim, config.dtype
    self.norm1 = layers.LayerNorm(width, eps=config.layer_norm_eps, dtype=dtype)
    self.cross_attn = layers.Attention(
        width, config.prompt_heads, rngs=rngs, qkv_bias=False, dtype=dtype,
        implementation=config.attention_implementation, qkv_init=layers.TRUNC_NORMAL_002,
        out_init=layers.TRUNC_NORMAL_002)
    self.norm3 = layers.LayerNorm(width, eps=config.layer_norm_eps, dtype=dtype)
    self.mlp = layers.MLP(width, 4 * width, rngs=rngs, dtype=dtype, kernel_init=layers.TRUNC_NORMAL_002)

  def __call__(self, text: jax.Array, visual: jax.Array) -> jax.Array:
    text = text + self.cross_attn(self.norm1(text), visual)
    return text + self.mlp(self.norm3(text))


class VideoSpecificPrompt(nnx.Module):
  """Returns alpha * Dec(text, visual): text (B, K, E), visual (B, N, E) -> (B, K, E)."""

  def __init__(self, config: ModelConfig, *, rngs: layers.KeySequence):
    self.norm = layers.LayerNorm(config.embed_dim, eps=config.layer_norm_eps, dtype=config.dtype)
    self.decoder = nnx.List([PromptGeneratorLayer(config, rngs=rngs) for _ in range(config.prompt_layers)])
    self.alpha = layers.param(jnp.full((config.embed_dim,), config.prompt_alpha), (layers.NORM,))

  def __call__(self, text: jax.Array, visual: jax.Array) -> jax.Array:
    visual = self.norm(visual)
    for layer in self.decoder:
      text = layer(text, visual)
    return self.alpha[...] * text.astype(jnp.float32)

"""Multi-frame Integration Transformer: temporal self-attention over the T frame embeddings.

Official `models/mit.py`: x = H + temporal position embedding, 1 residual attention block, then the
output is added to H *without* the position embedding and averaged over frames.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from xclip_jax.models import layers
from xclip_jax.models.config import ModelConfig
from xclip_jax.models.transformer import Transformer


class MultiframeIntegrationTransformer(nnx.Module):
  """Frame embeddings (B, T, E) -> video embedding (B, E)."""

  def __init__(self, config: ModelConfig, *, rngs: layers.KeySequence):
    width = config.embed_dim
    # trunc_normal_(std) cut at +-2 in absolute value, as PyTorch's default bounds (+-100 std at 0.02).
    std = config.video_position_init_std or 0.02
    position_init = nnx.initializers.truncated_normal(stddev=std, lower=-2.0 / std, upper=2.0 / std)
    self.positional_embedding = layers.param(
        position_init(rngs.params(), (1, config.num_frames, width)), (None, None, layers.EMBED))
    # Official init: every Linear (out_proj included) trunc-normal 0.02, in_proj keeps xavier-uniform.
    self.transformer = Transformer(
        width, config.mit_layers, config.mit_heads, config.mit_mlp_dim, rngs=rngs, eps=config.layer_norm_eps,
        dtype=config.dtype, implementation=config.attention_implementation, remat=config.remat,
        scan_layers=config.scan_layers,
        qkv_init=layers.packed_xavier_uniform(width), out_init=layers.TRUNC_NORMAL_002,
        mlp_init=layers.TRUNC_NORMAL_002)

  def __call__(self, frame_features: jax.Array) -> jax.Array:
    x = self.transformer(frame_features + self.positional_embedding[...].astype(frame_features.dtype))
    return jnp.mean((x + frame_features).astype(jnp.float32), axis=1)

"""Cross-frame Communication Transformer: CLIP's ViT with one message token per frame.

In every block, each frame's current class token is mapped to a message token, the T message tokens of
a video attend to each other (cross-frame fusion attention), each message is appended as the last token
of its frame for the pretrained intra-frame attention, and dropped again before the MLP
(paper Eqs. 7-9; official `models/cct.py`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from xclip_jax.models import layer_stack, layers
from xclip_jax.models.config import ModelConfig


class CrossFrameBlock(nnx.Module):
  """One CCT block; without cross-frame communication it is exactly CLIP's residual block."""

  def __init__(self, config: ModelConfig, *, rngs: layers.KeySequence):
    width, dtype, eps = config.vision_width, config.dtype, config.layer_norm_eps
    impl = config.attention_implementation
    self.num_frames = config.num_frames
    self.num_layers = config.vision_layers
    self.drop_path_rate = config.drop_path_rate
    # CLIP weights (random init here only matters when training from scratch).
    clip_std = width**-0.5
    self.ln_1 = layers.LayerNorm(width, eps=eps, dtype=dtype)
    self.attn = layers.Attention(
        width, config.vision_heads, rngs=rngs, dtype=dtype, implementation=impl,
        qkv_init=nnx.initializers.normal(clip_std),
        out_init=nnx.initializers.normal(clip_std * (2 * config.vision_layers)**-0.5))
    self.ln_2 = layers.LayerNorm(width, eps=eps, dtype=dtype)
    self.mlp = layers.MLP(width, config.vision_mlp_dim, rngs=rngs, dtype=dtype,
                          kernel_init=nnx.initializers.normal((2 * width)**-0.5))
    if config.use_cross_frame:
      # New modules, initialised as the official code leaves them: PyTorch defaults.
      self.message_fc = layers.Linear(width, width, axes=(layers.EMBED, None), rngs=rngs, dtype=dtype,
                                      bias_init=layers.torch_linear_init(width))
      self.message_ln = layers.LayerNorm(width, eps=eps, dtype=dtype)
      self.message_attn = layers.Attention(
          width, config.vision_heads, rngs=rngs, dtype=dtype, implementation=impl,
          qkv_init=layers.packed_xavier_uniform(width), out_init=layers.torch_linear_init(width))
    else:
      self.message_fc = self.message_ln = self.message_attn = None

  def __call__(self, x: jax.Array, drop_rng: jax.Array | None, *, layer: int | jax.Array) -> jax.Array:
    """x: (B*T, L, D) tokens of every frame, frame index fastest; `layer` is this block's index (traced
    when the layers are scanned). Returns the same shape."""
    frames_total, length, width = x.shape
    # Official schedule: linspace(0, rate, layers), one rate for the three residuals of a block.
    drop_rate = self.drop_path_rate * layer / (self.num_layers - 1) if self.num_layers > 1 else 0.0
    rngs = (list(jax.random.split(jax.random.fold_in(drop_rng, layer), 3))
            if drop_rng is not None and self.drop_path_rate > 0 else [None] * 3)
    if self.message_fc is not None:
      message = self.message_fc(x[:, 0]).reshape(-1, self.num_frames, width)  # (B, T, D)
      message = message + layers.drop_path(self.message_attn(self.message_ln(message)), drop_rate, rngs[0])
      x = jnp.concatenate([x, message.reshape(frames_total, 1, width).astype(x.dtype)], axis=1)
    x = x + layers.drop_path(self.attn(self.ln_1(x)), drop_rate, rngs[1])
    x = x[:, :length]  # drop the message token before the MLP
    return x + layers.drop_path(self.mlp(self.ln_2(x)), drop_rate, rngs[2])


class VisionTransformer(nnx.Module):
  """Frames (B*T, H, W, 3) -> per-frame embeddings (B*T, E) and last-block patch tokens (B*T, N, D)."""

  def __init__(self, config: ModelConfig, *, rngs: layers.KeySequence):
    width, patch = config.vision_width, config.patch_size
    scale = width**-0.5
    self.patch_size = patch
    self.dtype = layers.compute_dtype(config.dtype)
    self.remat = config.remat
    # conv1 of CLIP (kernel = stride = patch, no bias), stored HWIO as a Flax conv kernel.
    self.conv1 = layers.param(
        nnx.initializers.lecun_normal()(rngs.params(), (patch, patch, 3, width)),
        (None, None, None, layers.EMBED))
    self.class_embedding = layers.param(scale * jax.random.normal(rngs.params(), (width,)), (layers.EMBED,))
    position_std = config.video_position_init_std or scale  # see ModelConfig.video_position_init_std
    self.positional_embedding = layers.param(
        position_std * jax.random.normal(rngs.params(), (config.num_patches + 1, width)), (None, layers.EMBED))
    self.ln_pre = layers.LayerNorm(width, eps=config.layer_norm_eps, dtype=config.dtype)
    self.resblocks = layer_stack.init_blocks(lambda keys: CrossFrameBlock(config, rngs=keys), config.vision_layers,
                                             rngs, stacked=config.scan_layers)
    self.ln_post = layers.LayerNorm(width, eps=config.layer_norm_eps, dtype=config.dtype)
    self.proj = layers.param(scale * jax.random.normal(rngs.params(), (width, config.embed_dim)),
                             (layers.EMBED, layers.JOINT))

  def embed_patches(self, frames: jax.Array) -> jax.Array:
    """Non-overlapping patches times the conv kernel: (N, H, W, 3) -> (N, g*g, D), row-major patches."""
    n, height, width, channels = frames.shape
    p = self.patch_size
    gh, gw = height // p, width // p
    patches = frames.reshape(n, gh, p, gw, p, channels).transpose(0, 1, 3, 2, 4, 5)
    patches = patches.reshape(n, gh * gw, p * p * channels).astype(self.dtype)
    return layers.matmul(patches, self.conv1[...].reshape(p * p * channels, -1), self.dtype)

  def __call__(self, frames: jax.Array, drop_rng: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    x = self.embed_patches(frames)
    cls = jnp.broadcast_to(self.class_embedding[...].astype(x.dtype), (x.shape[0], 1, x.shape[-1]))
    x = jnp.concatenate([cls, x], axis=1) + self.positional_embedding[...].astype(x.dtype)
    x = self.ln_pre(x)
    x = layer_stack.run_blocks(self.resblocks, x, drop_rng, remat=self.remat)
    cls_features = layers.matmul(self.ln_post(x[:, 0]), self.proj[...], self.dtype)
    return cls_features, x[:, 1:]


"""The X-CLIP model: video tower (CCT + MIT), text tower, video-specific prompts, cosine logits."""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from xclip_jax.models import layers
from xclip_jax.models.cct import VisionTransformer
from xclip_jax.models.config import ModelConfig
from xclip_jax.models.mit import MultiframeIntegrationTransformer
from xclip_jax.models.prompt import VideoSpecificPrompt
from xclip_jax.models.text import TextTransformer


class VideoFeatures(NamedTuple):
  """What the video tower hands to the similarity: kept apart so class texts can be encoded once."""

  embedding: jax.Array  # (B, E) video embedding (MIT output, or mean of frame embeddings), not normalised.
  prompt_context: jax.Array | None  # (B, N, E) projected patch tokens averaged over frames; None w/o prompts.


class XCLIP(nnx.Module):
  """X-CLIP (Ni et al., ECCV 2022), parameter names following the official PyTorch code.

  Inputs are videos (B, T, H, W, 3) float32, ImageNet-normalised, and tokens (K, 77) int32.
  """

  def __init__(self, config: ModelConfig, *, rngs: layers.KeySequence):
    self.config = config
    self.dtype = layers.compute_dtype(config.dtype)
    self.visual = VisionTransformer(config, rngs=rngs)
    self.text = TextTransformer(config, rngs=rngs)
    self.mit = MultiframeIntegrationTransformer(config, rngs=rngs) if config.use_mit else None
    if config.use_prompt:
      self.prompts_visual_ln = layers.LayerNorm(config.vision_width, eps=config.layer_norm_eps,
                                                dtype=config.dtype)
      # Official init: torch.randn(D, E), unscaled (prompts_generator.norm follows, so the forward is
      # scale-invariant).
      self.prompts_visual_proj = layers.param(
          jax.random.normal(rngs.params(), (config.vision_width, config.embed_dim)), (layers.EMBED, layers.JOINT))
      self.prompts_generator = VideoSpecificPrompt(config, rngs=rngs)
    else:
      self.prompts_visual_ln = self.prompts_visual_proj = self.prompts_generator = None
    self.logit_scale = layers.param(jnp.asarray(math.log(1 / 0.07)), ())

  def _check_videos(self, videos: jax.Array) -> None:
    c = self.config
    expected = (c.num_frames, c.image_size, c.image_size, 3)
    if videos.ndim != 5 or tuple(videos.shape[1:]) != expected:
      raise ValueError(f"videos must have shape (B, {', '.join(map(str, expected))}) for this model "
                       f"({c.num_frames} frames at {c.image_size}px, channels last), got {tuple(videos.shape)}.")

  def encode_frames(self, videos: jax.Array, drop_rng: jax.Array | None = None
                    ) -> tuple[jax.Array, jax.Array]:
    """Per-frame embeddings (B, T, E) and last-block patch tokens (B, T, N, D), before any pooling."""
    self._check_videos(videos)
    batch, frames = videos.shape[:2]
    cls_features, patch_tokens = self.visual(videos.reshape(batch * frames, *videos.shape[2:]), drop_rng)
    return (cls_features.reshape(batch, frames, -1),
            patch_tokens.reshape(batch, frames, *patch_tokens.shape[1:]))

  def encode_video(self, videos: jax.Array, drop_rng: jax.Array | None = None) -> VideoFeatures:
    frame_features, patch_tokens = self.encode_frames(videos, drop_rng)
    if self.mit is not None:
      embedding = self.mit(frame_features)
    else:
      embedding = jnp.mean(frame_features.astype(jnp.float32), axis=1)
    context = None
    if self.prompts_generator is not None:
      projected = layers.matmul(self.prompts_visual_ln(patch_tokens), self.prompts_visual_proj[...], self.dtype)
      context = jnp.mean(projected.astype(jnp.float32), axis=1)  # average over frames -> (B, N, E)
    return VideoFeatures(embedding, context)

  def encode_text(self, tokens: jax.Array) -> jax.Array:
    """Class-text embeddings (K, E) in float32, before prompting and normalisation."""
    return self.text(tokens).astype(jnp.float32)

  def prompted_text(self, video: VideoFeatures, text_features: jax.Array) -> jax.Array:
    """Video-specific class embeddings (B, K, E): c + alpha * Dec(c, z), or c broadcast without prompts."""
    text = jnp.broadcast_to(text_features, (video.embedding.shape[0],) + text_features.shape)
    if self.prompts_generator is None:
      return text
    prompt = self.prompts_generator(text.astype(self.dtype), video.prompt_context.astype(self.dtype))
    return text + prompt

  def logits(self, video: VideoFeatures, text_features: jax.Array) -> jax.Array:
    """exp(logit_scale) * cosine(video, prompted class text), (B, K) float32."""
    text = self.prompted_text(video, text_features)
    video_unit = _l2_normalize(video.embedding.astype(jnp.float32))
    text_unit = _l2_normalize(text.astype(jnp.float32))
    return jnp.exp(self.logit_scale[...]) * jnp.einsum("be,bke->bk", video_unit, text_unit)

  def __call__(self, videos: jax.Array, tokens: jax.Array | None = None, *,
               text_features: jax.Array | None = None, drop_rng: jax.Array | None = None) -> jax.Array:
    """Logits (B, K) of videos against class texts, given as tokens or as cached `encode_text` output."""
    if (tokens is None) == (text_features is None):
      raise ValueError("Pass exactly one of `tokens` or `text_features`.")
    if text_features is None:
      text_features = self.encode_text(tokens)
    return self.logits(self.encode_video(videos, drop_rng), text_features)


def _l2_normalize(x: jax.Array) -> jax.Array:
  return x / jnp.linalg.norm(x, axis=-1, keepdims=True)


def create_model(config: ModelConfig, seed: int = 0) -> XCLIP:
  """A randomly initialised model (new X-CLIP modules get the official initialisation)."""
  return XCLIP(config, rngs=layers.KeySequence(seed))

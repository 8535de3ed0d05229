"""Device-side input ops for the train/eval steps: normalisation and mixup/cutmix with label smoothing.

Frames travel host -> device as uint8 (4x fewer bytes than float32); `normalize` turns them into float32
with X-CLIP's ImageNet statistics (reference xclip.md §3: mean 123.675/116.28/103.53, std 58.395/57.12/
57.375 on 0-255 RGB; *not* CLIP's). Layout is channel-last: (..., H, W, 3).

`mixup_cutmix` follows the official `CutmixMixupBlending` (datasets/blending.py): smoothed one-hot targets
(off = s/K, on = 1 - s + s/K); with probability `switch_prob` CutMix (lambda ~ Beta(1, 1), one box shared by
all frames and all videos of the batch, lambda recomputed from the clipped box area), else Mixup (lambda ~
Beta(0.8, 0.8), one lambda per batch); the partner of each video is a random permutation of the batch, drawn
within each device's part of it as the official per-GPU `torch.randperm(local batch)` does (`groups`): a
permutation across the whole global batch would make every device gather every other device's clips.
All functions are pure and work under `jax.jit` (shapes static, randomness from the key).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)


def normalize(video: jax.Array, dtype=jnp.float32) -> jax.Array:
  """uint8 (..., H, W, 3) -> (x - mean) / std with ImageNet statistics on 0-255 values."""
  mean = jnp.asarray(IMAGENET_MEAN, jnp.float32)
  inv_std = 1.0 / jnp.asarray(IMAGENET_STD, jnp.float32)
  return ((video.astype(jnp.float32) - mean) * inv_std).astype(dtype)


def one_hot_smoothed(labels: jax.Array, num_classes: int, smoothing: float = 0.1) -> jax.Array:
  """Official smoothed one-hot: off = smoothing / K, on = 1 - smoothing + smoothing / K (rows sum to 1)."""
  off = smoothing / num_classes
  return jax.nn.one_hot(labels, num_classes, dtype=jnp.float32) * (1.0 - smoothing) + off


def cutmix_box(rng: jax.Array, height: int, width: int, lam: jax.Array) -> tuple[jax.Array, ...]:
  """Official `rand_bbox`: cut = int(side * sqrt(1 - lam)), centre uniform, edges clipped to the image.

  Returns (y1, y2, x1, x2) as int32 scalars.
  """
  ky, kx = jax.random.split(rng)
  cut_rat = jnp.sqrt(1.0 - lam)
  cut_w = jnp.floor(width * cut_rat).astype(jnp.int32)
  cut_h = jnp.floor(height * cut_rat).astype(jnp.int32)
  cx = jax.random.randint(kx, (), 0, width)
  cy = jax.random.randint(ky, (), 0, height)
  x1, x2 = jnp.clip(cx - cut_w // 2, 0, width), jnp.clip(cx + cut_w // 2, 0, width)
  y1, y2 = jnp.clip(cy - cut_h // 2, 0, height), jnp.clip(cy + cut_h // 2, 0, height)
  return y1, y2, x1, x2


def mixup_cutmix(rng: jax.Array, videos: jax.Array, labels: jax.Array, num_classes: int, *, mixup_alpha: float = 0.8,
                 cutmix_alpha: float = 1.0, switch_prob: float = 0.5, label_smoothing: float = 0.1,
                 groups: int = 1) -> tuple[jax.Array, jax.Array]:
  """Mixes a batch as the official training does.

  Args:
    rng: PRNG key (one draw of lambda, permutation, mode and box per call).
    videos: (B, T, H, W, C) float (normalise first), or any (B, ..., H, W, C) layout.
    labels: (B,) int class ids.
    num_classes: K.
    mixup_alpha, cutmix_alpha: Beta parameters (official 0.8, 1.0).
    switch_prob: probability of CutMix instead of Mixup (official 0.5).
    label_smoothing: official 0.1.
    groups: partners are drawn within each of `groups` equal, contiguous slices of the batch (one per device
      of a batch-sharded mesh; the same permutation in every slice), so mixing never crosses devices.

  Returns:
    (mixed videos, same shape and dtype; soft targets (B, K) float32 whose rows sum to 1).
  """
  k_mode, k_perm, k_mix, k_cut, k_box = jax.random.split(rng, 5)
  targets = one_hot_smoothed(labels, num_classes, label_smoothing)
  batch = videos.shape[0]
  height, width = videos.shape[-3], videos.shape[-2]
  if batch % groups:
    raise ValueError(f"mixup_cutmix: a batch of {batch} does not split into {groups} groups")
  perm = jax.random.permutation(k_perm, batch // groups)

  def partners(x: jax.Array) -> jax.Array:
    grouped = x.reshape(groups, batch // groups, *x.shape[1:])
    return grouped[:, perm].reshape(x.shape)

  partner_videos, partner_targets = partners(videos), partners(targets)

  def do_mixup(_):
    lam = jax.random.beta(k_mix, mixup_alpha, mixup_alpha)
    mixed = lam * videos.astype(jnp.float32) + (1.0 - lam) * partner_videos.astype(jnp.float32)
    return mixed.astype(videos.dtype), lam

  def do_cutmix(_):
    lam = jax.random.beta(k_cut, cutmix_alpha, cutmix_alpha)
    y1, y2, x1, x2 = cutmix_box(k_box, height, width, lam)
    ys = jnp.arange(height)[:, None]
    xs = jnp.arange(width)[None, :]
    inside = (ys >= y1) & (ys < y2) & (xs >= x1) & (xs < x2)  # (H, W), shared by every frame and video.
    mixed = jnp.where(inside[:, :, None], partner_videos, videos)
    area = ((y2 - y1) * (x2 - x1)).astype(jnp.float32)
    return mixed, 1.0 - area / (height * width)

  use_cutmix = jax.random.uniform(k_mode) < switch_prob
  mixed, lam = jax.lax.cond(use_cutmix, do_cutmix, do_mixup, None)
  soft = lam * targets + (1.0 - lam) * partner_targets
  return mixed, soft

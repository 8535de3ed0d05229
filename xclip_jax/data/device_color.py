"""Colour jitter and grayscale on the device, with the random draws made on the host (data.augment.color_on_device).

Measured on this CPU (docs/frame_shards.md), colour jitter is the largest host cost of a frame-shard training
clip: torchvision's per-frame PIL jitter (its hue step converts every frame to HSV and back) takes about three
times as long as reading and decoding the clip's JPEGs. With `data.augment.color_on_device`, the host draws the
same random numbers in the same order as `transforms.train_clip` (`transforms.color_params`), ships them with
the batch as `batches.COLOR` (B, T, COLUMNS) float32, and the train step applies them here, before normalisation and
mixup (where the host would have applied them: after crop and flip).

The ops follow Pillow's integer semantics (what the host path runs): `ImageEnhance` blends truncate to uint8 and
clip, contrast blends with the rounded mean of the frame's luma, saturation with the per-pixel luma
(ITU-R 601-2, Pillow's fixed-point formula), hue shifts Pillow's 8-bit HSV hue with wrap-around, grayscale
uses the same luma. Arithmetic is float32, as in Pillow's C code; HSV conversion rounding can differ by one
level on a small share of pixels.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from xclip_jax.data.transforms import ColorColumns

# Columns of the per-frame parameters (`transforms.color_params` writes them; kept there, without jax, for the
# grain workers).
JITTER, BRIGHTNESS, CONTRAST, SATURATION = ColorColumns.JITTER, ColorColumns.BRIGHTNESS, ColorColumns.CONTRAST, \
    ColorColumns.SATURATION
HUE_SHIFT, HUE_ON, ORDER, GRAY = ColorColumns.HUE_SHIFT, ColorColumns.HUE_ON, ColorColumns.ORDER, ColorColumns.GRAY
COLUMNS = ColorColumns.COUNT


def _luma(x: jax.Array) -> jax.Array:
  """Pillow's RGB -> L: (R*19595 + G*38470 + B*7471 + 0x8000) >> 16, on integer-valued float32 (..., 3)."""
  i = x.astype(jnp.int32)
  return ((i[..., 0] * 19595 + i[..., 1] * 38470 + i[..., 2] * 7471 + 0x8000) >> 16).astype(jnp.float32)


def _blend(degenerate: jax.Array, image: jax.Array, factor: jax.Array) -> jax.Array:
  """Pillow's Image.blend(degenerate, image, factor) for uint8 images: truncate, then clip to [0, 255]."""
  return jnp.clip(jnp.trunc(degenerate + factor * (image - degenerate)), 0.0, 255.0)


def _contrast(x: jax.Array, factor: jax.Array) -> jax.Array:
  luma = _luma(x).astype(jnp.int32)
  n = luma.shape[-1] * luma.shape[-2]
  total = jnp.sum(luma, axis=(-2, -1))
  mean = ((2 * total + n) // (2 * n)).astype(jnp.float32)  # int(mean + 0.5), exactly.
  return _blend(mean[..., None, None, None], x, factor)


def _rgb_to_hsv(x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Pillow's 8-bit HSV (Convert.c rgb2hsv_row) of integer-valued float32 RGB."""
  r, g, b = x[..., 0], x[..., 1], x[..., 2]
  maxc = jnp.maximum(r, jnp.maximum(g, b))
  minc = jnp.minimum(r, jnp.minimum(g, b))
  grey = maxc == minc
  cr = jnp.where(grey, 1.0, maxc - minc)
  s = cr / jnp.where(grey, 1.0, maxc)
  rc, gc, bc = (maxc - r) / cr, (maxc - g) / cr, (maxc - b) / cr
  h = jnp.where(r == maxc, bc - gc, jnp.where(g == maxc, 2.0 + rc - bc, 4.0 + gc - rc))
  h = jnp.mod(h / 6.0 + 1.0, 1.0)
  uh = jnp.where(grey, 0.0, jnp.clip(jnp.trunc(h * 255.0), 0, 255))
  us = jnp.where(grey, 0.0, jnp.clip(jnp.trunc(s * 255.0), 0, 255))
  return uh, us, maxc


def _hsv_to_rgb(h: jax.Array, s: jax.Array, v: jax.Array) -> jax.Array:
  """Pillow's hsv2rgb (Convert.c) of 8-bit H, S, V as float32."""
  i = jnp.floor(h * 6.0 / 255.0)
  f = h * 6.0 / 255.0 - i
  fs = s / 255.0
  rnd = lambda a: jnp.clip(jnp.floor(a + 0.5), 0, 255)  # C round() of a non-negative value.
  p, q, t = rnd(v * (1.0 - fs)), rnd(v * (1.0 - fs * f)), rnd(v * (1.0 - fs * (1.0 - f)))
  sector = jnp.mod(i, 6).astype(jnp.int32)
  choices = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
  rgb = [jnp.select([sector == k for k in range(6)], [c[ch] for c in choices]) for ch in range(3)]
  out = jnp.stack(rgb, axis=-1)
  return jnp.where((s == 0)[..., None], v[..., None], out)


def _hue(x: jax.Array, shift: jax.Array) -> jax.Array:
  h, s, v = _rgb_to_hsv(x)
  h = jnp.mod(h + shift[..., None, None], 256.0)
  return _hsv_to_rgb(h, s, v)


def apply(videos: jax.Array, params: jax.Array) -> jax.Array:
  """Colour-augments uint8 videos (B, T, H, W, 3) with per-frame parameters (B, T, COLUMNS); returns uint8.

  Per frame: if JITTER, the four ops in the frame's ORDER (0 brightness, 1 contrast, 2 saturation, 3 hue, the
  hue only if HUE_ON; a factor of 1 is an exact no-op for the others); then, if GRAY, 3-channel luma.
  """
  x = videos.astype(jnp.float32)
  p = params.astype(jnp.float32)
  jittered = x
  for step in range(4):
    op = p[..., ORDER + step][..., None, None, None]
    candidates = [
        _blend(jnp.zeros_like(jittered), jittered, p[..., BRIGHTNESS][..., None, None, None]),
        _contrast(jittered, p[..., CONTRAST][..., None, None, None]),
        _blend(_luma(jittered)[..., None], jittered, p[..., SATURATION][..., None, None, None]),
        jnp.where(p[..., HUE_ON][..., None, None, None] > 0, _hue(jittered, p[..., HUE_SHIFT]), jittered),
    ]
    jittered = jnp.select([op == k for k in range(4)], candidates)
  x = jnp.where(p[..., JITTER][..., None, None, None] > 0, jittered, x)
  gray = jnp.broadcast_to(_luma(x)[..., None], x.shape)
  x = jnp.where(p[..., GRAY][..., None, None, None] > 0, gray, x)
  return x.astype(jnp.uint8)

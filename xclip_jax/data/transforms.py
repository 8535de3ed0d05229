"""Host-side clip transforms: uint8 in, uint8 out (normalisation happens on device, see `device_ops`).

Official X-CLIP training recipe (reference xclip.md §3), all frames of a clip share one geometry:
  short-side resize -> MultiScaleCrop(scales 1/.875/.75/.66, w/h scale-index gap <= 1, one of 5 fixed
  offsets) -> resize to input_size x input_size -> horizontal flip (p 0.5) -> ColorJitter(0.4, 0.4, 0.2,
  0.1) applied with p 0.8 to the clip but with factors (and op order) re-sampled for *every frame*, as
  torchvision's PIL path -> grayscale (p 0.2, whole clip, 3 channels).
Test: short-side resize to 256/224*input_size + centre crop, or (3 crops) short side input_size + left /
right / middle squares along the long side (official `ThreeCrop` order), crop-major views.

Crop + resize is done in one bilinear PIL resize of the crop box (same box as the official two-step
version; pixel values differ by interpolation only). Randomness comes from a numpy Generator.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageEnhance

FIXED_OFFSETS = ("upper left", "upper right", "lower left", "lower right", "center")


def official_short_side(input_size: int) -> int:
  """The official test short side before a centre crop of `input_size`: int(256 / 224 * input_size)."""
  return int(256 / 224 * input_size)


def resize_short(frames: np.ndarray, short: int) -> np.ndarray:
  """Resizes (T, H, W, 3) so that min(H, W) == short (bilinear, aspect kept); no-op if already there."""
  h, w = frames.shape[1:3]
  if min(h, w) == short:
    return frames
  scale = short / min(h, w)
  nh, nw = int(h * scale + 0.5), int(w * scale + 0.5)
  return np.stack([np.asarray(Image.fromarray(f).resize((nw, nh), Image.BILINEAR)) for f in frames])


def multiscale_crop_box(height: int, width: int, input_size: int, scales: Sequence[float], max_wh_scale_gap: int,
                        rng: np.random.Generator) -> tuple[int, int, int, int]:
  """(x, y, crop_w, crop_h) of official `MultiScaleCrop(random_crop=False, num_fixed_crops=5)`."""
  base = min(height, width)
  sizes = [int(base * s) for s in scales]
  candidates = [(w, h) for i, h in enumerate(sizes) for j, w in enumerate(sizes) if abs(i - j) <= max_wh_scale_gap]
  crop_w, crop_h = candidates[int(rng.integers(len(candidates)))]
  # Sizes within 3 pixels of the network input snap to it (official behaviour).
  crop_w = input_size if abs(crop_w - input_size) < 3 else crop_w
  crop_h = input_size if abs(crop_h - input_size) < 3 else crop_h
  w_step, h_step = (width - crop_w) // 4, (height - crop_h) // 4
  offsets = [(0, 0), (4 * w_step, 0), (0, 4 * h_step), (4 * w_step, 4 * h_step), (2 * w_step, 2 * h_step)]
  x, y = offsets[int(rng.integers(len(offsets)))]
  return x, y, crop_w, crop_h


def crop_resize(frames: np.ndarray, box: tuple[int, int, int, int], size: int) -> np.ndarray:
  """Crops the same box from every frame and resizes it to size x size (bilinear, aspect ignored)."""
  x, y, cw, ch = box
  if (cw, ch) == (size, size):
    return np.ascontiguousarray(frames[:, y:y + ch, x:x + cw])
  return np.stack([np.asarray(Image.fromarray(f).resize((size, size), Image.BILINEAR, box=(x, y, x + cw, y + ch)))
                   for f in frames])


def jitter_draws(rng: np.random.Generator, brightness: float, contrast: float, saturation: float,
                 hue: float) -> tuple[dict[int, float | None], np.ndarray]:
  """The random numbers of one torchvision `ColorJitter` call: factors by op (None: op off) and the op order."""
  factors = {
      0: rng.uniform(max(0.0, 1 - brightness), 1 + brightness) if brightness else None,
      1: rng.uniform(max(0.0, 1 - contrast), 1 + contrast) if contrast else None,
      2: rng.uniform(max(0.0, 1 - saturation), 1 + saturation) if saturation else None,
      3: rng.uniform(-hue, hue) if hue else None,
  }
  return factors, rng.permutation(4)


def jitter_frame(img: Image.Image, rng: np.random.Generator, brightness: float, contrast: float,
                 saturation: float, hue: float) -> Image.Image:
  """torchvision `ColorJitter` on one PIL image: random op order, factors drawn for this call."""
  factors, order = jitter_draws(rng, brightness, contrast, saturation, hue)
  for op in order:
    f = factors[int(op)]
    if f is None:
      continue
    if op == 0:
      img = ImageEnhance.Brightness(img).enhance(f)
    elif op == 1:
      img = ImageEnhance.Contrast(img).enhance(f)
    elif op == 2:
      img = ImageEnhance.Color(img).enhance(f)
    else:
      h, s, v = img.convert("HSV").split()
      shifted = (np.asarray(h, dtype=np.uint8).astype(np.int16) + int(f * 255)) % 256  # uint8 wrap-around.
      img = Image.merge("HSV", (Image.fromarray(shifted.astype(np.uint8), "L"), s, v)).convert("RGB")
  return img


def color_jitter(frames: np.ndarray, rng: np.random.Generator, *, brightness: float = 0.4, contrast: float = 0.4,
                 saturation: float = 0.2, hue: float = 0.1) -> np.ndarray:
  """Jitters every frame with its own factors (the official per-frame torchvision call)."""
  return np.stack([np.asarray(jitter_frame(Image.fromarray(f), rng, brightness, contrast, saturation, hue))
                   for f in frames])


def grayscale(frames: np.ndarray) -> np.ndarray:
  """3-channel grayscale with PIL's ITU-R 601-2 luma (L = R*299/1000 + G*587/1000 + B*114/1000)."""
  f = frames.astype(np.uint32)
  luma = ((f[..., 0] * 19595 + f[..., 1] * 38470 + f[..., 2] * 7471 + 0x8000) >> 16).astype(np.uint8)
  return np.repeat(luma[..., None], 3, axis=-1)


def train_clip(frames: np.ndarray, rng: np.random.Generator, *, input_size: int, short: int,
               scales: Sequence[float] = (1.0, 0.875, 0.75, 0.66), max_wh_scale_gap: int = 1, flip: float = 0.5,
               color_jitter_p: float = 0.8, brightness: float = 0.4, contrast: float = 0.4, saturation: float = 0.2,
               hue: float = 0.1, gray_scale: float = 0.2) -> np.ndarray:
  """Official training augmentation of one clip (T, H, W, 3) uint8 -> (T, input_size, input_size, 3) uint8."""
  frames = train_geometry(frames, rng, input_size=input_size, short=short, scales=scales,
                          max_wh_scale_gap=max_wh_scale_gap, flip=flip)
  if rng.random() < color_jitter_p:
    frames = color_jitter(frames, rng, brightness=brightness, contrast=contrast, saturation=saturation, hue=hue)
  if rng.random() < gray_scale:
    frames = grayscale(frames)
  return np.ascontiguousarray(frames)


def train_geometry(frames: np.ndarray, rng: np.random.Generator, *, input_size: int, short: int,
                   scales: Sequence[float] = (1.0, 0.875, 0.75, 0.66), max_wh_scale_gap: int = 1,
                   flip: float = 0.5) -> np.ndarray:
  """The geometric part of `train_clip` (resize, MultiScaleCrop, flip), with the same random draws."""
  frames = resize_short(frames, short)
  box = multiscale_crop_box(frames.shape[1], frames.shape[2], input_size, scales, max_wh_scale_gap, rng)
  frames = crop_resize(frames, box, input_size)
  # One coin per transform, drawn in the official order (flip, jitter, grayscale).
  if rng.random() < flip:
    frames = frames[:, :, ::-1]
  return np.ascontiguousarray(frames)


def color_params(rng: np.random.Generator, num_frames: int, *, color_jitter_p: float = 0.8,
                 brightness: float = 0.4, contrast: float = 0.4, saturation: float = 0.2, hue: float = 0.1,
                 gray_scale: float = 0.2) -> np.ndarray:
  """The colour part of `train_clip` as parameters for `device_color.apply`: (T, COLUMNS) float32.

  Draws exactly the random numbers `train_clip` draws after `train_geometry`, in the same order, so a clip
  gets the same jitter whether it is applied here or on the device.
  """
  c = ColorColumns
  out = np.zeros((num_frames, c.COUNT), np.float32)
  out[:, c.BRIGHTNESS:c.SATURATION + 1] = 1.0  # Factor 1: an exact no-op.
  out[:, c.ORDER:c.ORDER + 4] = np.arange(4)
  if rng.random() < color_jitter_p:
    out[:, c.JITTER] = 1.0
    for t in range(num_frames):
      factors, order = jitter_draws(rng, brightness, contrast, saturation, hue)
      for op, column in ((0, c.BRIGHTNESS), (1, c.CONTRAST), (2, c.SATURATION)):
        if factors[op] is not None:
          out[t, column] = factors[op]
      if factors[3] is not None:
        out[t, c.HUE_ON], out[t, c.HUE_SHIFT] = 1.0, int(factors[3] * 255)  # As `jitter_frame` shifts.
      out[t, c.ORDER:c.ORDER + 4] = order
  if rng.random() < gray_scale:
    out[:, c.GRAY] = 1.0
  return out


class ColorColumns:
  """Columns of `color_params`' rows (what `device_color.apply` reads): flags, factors, hue shift, op order."""

  JITTER, BRIGHTNESS, CONTRAST, SATURATION, HUE_SHIFT, HUE_ON, ORDER, GRAY = 0, 1, 2, 3, 4, 5, 6, 10
  COUNT = 11


def three_crop_boxes(height: int, width: int, size: int) -> list[tuple[int, int, int, int]]:
  """Official `ThreeCrop` boxes (x, y, w, h): left/top, right/bottom, middle along the long side."""
  if height == size:
    step = (width - size) // 2
    return [(0, 0, size, size), (2 * step, 0, size, size), (step, 0, size, size)]
  if width == size:
    step = (height - size) // 2
    return [(0, 0, size, size), (0, 2 * step, size, size), (0, step, size, size)]
  raise ValueError(f"ThreeCrop needs one side equal to {size}, got {height}x{width}")


def test_views(frames: np.ndarray, *, clips: int, crops: int, input_size: int, short: int) -> np.ndarray:
  """Evaluation views of one video.

  Args:
    frames: (clips * T, H, W, 3) uint8, clip-major (clip 0's T frames first).
    clips: temporal clips.
    crops: 1 (centre crop after resizing the short side to `short`) or 3 (short side = input_size).
    input_size: output square size.
    short: short side for the single-crop case (official 256 for 224).

  Returns:
    (crops * clips, T, input_size, input_size, 3) uint8, crop-major then clip (official layout).
  """
  t = frames.shape[0] // clips
  if crops == 1:
    frames = resize_short(frames, short)
    h, w = frames.shape[1:3]
    # Official CenterCrop: left = (w - size) // 2 ... as mmaction (int division of the margins).
    boxes = [((w - input_size) // 2, (h - input_size) // 2, input_size, input_size)]
  elif crops == 3:
    frames = resize_short(frames, input_size)
    boxes = three_crop_boxes(frames.shape[1], frames.shape[2], input_size)
  else:
    raise ValueError(f"crops must be 1 or 3, got {crops}")
  views = [crop_resize(frames, box, input_size).reshape(clips, t, input_size, input_size, 3) for box in boxes]
  return np.concatenate(views, axis=0)

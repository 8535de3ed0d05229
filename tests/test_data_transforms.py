"""Augmentation invariants: one crop for all frames, per-frame colour jitter, official geometry, test views."""

import numpy as np
import pytest
from PIL import Image

from xclip_jax.data import transforms


def _textured_clip(t=8, h=120, w=160, seed=0):
  """Identical random-texture frames: any difference between output frames comes from per-frame ops."""
  frame = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
  return np.repeat(frame[None], t, axis=0)


def test_multiscale_crop_boxes_follow_the_official_candidates():
  rng = np.random.default_rng(0)
  base = 256
  sizes = [int(base * s) for s in (1, 0.875, 0.75, 0.66)]
  allowed = {(w, h) for i, h in enumerate(sizes) for j, w in enumerate(sizes) if abs(i - j) <= 1}
  allowed = {(224 if abs(w - 224) < 3 else w, 224 if abs(h - 224) < 3 else h) for w, h in allowed}
  seen_sizes, seen_offsets = set(), set()
  for _ in range(400):
    x, y, cw, ch = transforms.multiscale_crop_box(256, 340, 224, (1, 0.875, 0.75, 0.66), 1, rng)
    assert (cw, ch) in allowed
    ws, hs = (340 - cw) // 4, (256 - ch) // 4
    assert (x, y) in {(0, 0), (4 * ws, 0), (0, 4 * hs), (4 * ws, 4 * hs), (2 * ws, 2 * hs)}
    seen_sizes.add((cw, ch))
    if ws and hs:
      seen_offsets.add((x // ws, y // hs))
  assert seen_sizes == allowed and len(seen_offsets) == 5


def test_train_clip_uses_one_crop_for_all_frames():
  clip = _textured_clip()
  out = transforms.train_clip(clip, np.random.default_rng(3), input_size=64, short=96, color_jitter_p=0.0,
                              gray_scale=0.0)
  assert out.shape == (8, 64, 64, 3) and out.dtype == np.uint8
  for f in out[1:]:  # Same geometry (crop, resize, flip) for every frame.
    np.testing.assert_array_equal(f, out[0])


def test_color_jitter_is_resampled_per_frame():
  clip = _textured_clip()
  out = transforms.train_clip(clip, np.random.default_rng(4), input_size=64, short=96, color_jitter_p=1.0,
                              gray_scale=0.0, flip=0.0)
  means = out.reshape(8, -1, 3).mean(1)
  assert len({tuple(np.round(m, 3)) for m in means}) == 8  # Every frame got its own factors.
  # Geometry is still shared: the jitter is a per-pixel colour map, so pixels equal in frame 0 stay equal.
  ref = transforms.train_clip(clip, np.random.default_rng(4), input_size=64, short=96, color_jitter_p=0.0,
                              gray_scale=0.0, flip=0.0)
  same = (ref[0] == ref[0][0, 0]).all(-1)
  for f in out:
    assert (f[same] == f[same][0]).all()


def test_jitter_matches_torchvision_pil_ops_for_brightness():
  img = Image.fromarray(_textured_clip(1)[0])
  rng = np.random.default_rng(0)
  out = transforms.jitter_frame(img, rng, 0.4, 0.0, 0.0, 0.0)
  factor = np.random.default_rng(0).uniform(0.6, 1.4)
  expected = np.clip(np.asarray(img).astype(np.float64) * factor, 0, 255)
  assert np.abs(np.asarray(out).astype(np.float64) - expected).max() <= 1.0


def test_grayscale_matches_pil_and_probabilities():
  frames = _textured_clip(2, 16, 16)
  pil = np.asarray(Image.fromarray(frames[0]).convert("L"))
  gray = transforms.grayscale(frames)
  np.testing.assert_array_equal(gray[0, ..., 0], pil)
  assert (gray[..., 0] == gray[..., 1]).all() and (gray[..., 1] == gray[..., 2]).all()
  rng = np.random.default_rng(0)
  grays = 0
  clip = _textured_clip(2, 40, 40)
  for _ in range(300):
    out = transforms.train_clip(clip, rng, input_size=32, short=40, scales=(1.0,), color_jitter_p=0.0)
    grays += bool((out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all())
  assert 0.1 < grays / 300 < 0.3  # p = 0.2


def test_flip_probability_and_direction():
  clip = np.zeros((2, 32, 32, 3), np.uint8)
  clip[:, :, :8] = 255  # Bright left band.
  rng = np.random.default_rng(0)
  right = 0
  for _ in range(300):
    out = transforms.train_clip(clip, rng, input_size=32, short=32, scales=(1.0,), color_jitter_p=0.0, gray_scale=0.0)
    right += out[0, :, -4:].mean() > out[0, :, :4].mean()
    assert np.array_equal(out[0], out[1])
  assert 0.4 < right / 300 < 0.6


def test_test_views_layout_is_crop_major():
  t, clips = 4, 2
  frames = np.zeros((clips * t, 60, 100, 3), np.uint8)
  for k in range(clips * t):
    frames[k, :, :, 0] = k  # Frame identity.
  frames[:, :, :20, 1] = 10  # Markers seen only by the left (x < 20) and the right (x >= 80) crops.
  frames[:, :, 80:, 1] = 20
  views = transforms.test_views(frames, clips=clips, crops=3, input_size=60, short=60)
  assert views.shape == (6, t, 60, 60, 3)
  for v in range(6):
    crop, clip = divmod(v, clips)
    np.testing.assert_array_equal(views[v, :, 0, 0, 0], np.arange(clip * t, (clip + 1) * t))
    # Official ThreeCrop order: left, right, middle.
    assert views[v, 0, 0, 0, 1] == {0: 10, 1: 0, 2: 0}[crop] and views[v, 0, 0, -1, 1] == {0: 0, 1: 20, 2: 0}[crop]
  single = transforms.test_views(frames, clips=clips, crops=1, input_size=32, short=40)
  assert single.shape == (2, t, 32, 32, 3)


def test_three_crop_requires_matching_side():
  with pytest.raises(ValueError):
    transforms.three_crop_boxes(50, 70, 40)

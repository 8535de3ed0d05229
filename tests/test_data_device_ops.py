"""Device-side normalisation and mixup/cutmix with label smoothing (official semantics, under jit)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xclip_jax.data import device_ops


def test_normalize_imagenet_statistics():
  video = jnp.asarray(np.array([[[[123.675, 116.28, 103.53]]]]).round().astype(np.uint8))
  x = jax.jit(device_ops.normalize)(video)
  assert x.dtype == jnp.float32
  expected = (np.array([124, 116, 104]) - np.array(device_ops.IMAGENET_MEAN)) / np.array(device_ops.IMAGENET_STD)
  np.testing.assert_allclose(np.asarray(x).reshape(3), expected, atol=1e-5)
  white = device_ops.normalize(jnp.full((1, 1, 3), 255, jnp.uint8))
  np.testing.assert_allclose(white.reshape(3), (255 - np.array(device_ops.IMAGENET_MEAN)) / device_ops.IMAGENET_STD,
                             atol=1e-5)


def test_one_hot_smoothed_official_values():
  t = device_ops.one_hot_smoothed(jnp.array([2, 0]), 4, 0.1)
  np.testing.assert_allclose(t[0], [0.025, 0.025, 0.925, 0.025], rtol=1e-6)
  np.testing.assert_allclose(t.sum(-1), [1.0, 1.0], rtol=1e-6)


def _batch(b=6, t=3, h=16, w=20):
  # Video k is constant k + 1 and has class k, so pixels and targets both tell which videos were mixed.
  videos = jnp.broadcast_to(jnp.arange(1, b + 1, dtype=jnp.float32)[:, None, None, None, None], (b, t, h, w, 3))
  return videos, jnp.arange(b)


def _partner_and_lambda(soft_row, k, num_classes, smoothing=0.1):
  off = smoothing / num_classes
  on = 1 - smoothing + off
  others = [c for c in range(num_classes) if c != k]
  p = max(others, key=lambda c: soft_row[c])
  if soft_row[p] <= off + 1e-6:  # Mixed with itself.
    return k, None
  return p, (soft_row[k] - off) / (on - off)


def _check(mixed, soft, videos, mode):
  b = videos.shape[0]
  np.testing.assert_allclose(soft.sum(-1), 1.0, rtol=1e-5)
  lams, partners = set(), []
  box = None
  for k in range(b):
    p, lam = _partner_and_lambda(soft[k], k, b)
    partners.append(p)
    if lam is None:
      np.testing.assert_allclose(mixed[k], k + 1)
      continue
    lams.add(round(float(lam), 4))
    if mode == "mixup":  # One lambda for the whole batch, every pixel blended.
      np.testing.assert_allclose(mixed[k], lam * (k + 1) + (1 - lam) * (p + 1), rtol=1e-5)
    else:  # CutMix: the partner's pixels inside one box shared by every frame of every video.
      inside = mixed[k] == p + 1
      assert ((mixed[k] == k + 1) | inside).all()
      assert (inside == inside[0:1]).all()
      box = inside if box is None else box
      assert (inside == box).all()
      np.testing.assert_allclose(lam, 1 - inside[0, :, :, 0].mean(), atol=1e-5)  # Lambda from the box area.
  assert len(lams) <= 1
  assert sorted(partners) == list(range(b))  # The partners are a permutation of the batch.


@pytest.mark.parametrize(("mode", "switch_prob"), [("mixup", 0.0), ("cutmix", 1.0)])
def test_mix_semantics_under_jit(mode, switch_prob):
  videos, labels = _batch()
  fn = jax.jit(lambda key: device_ops.mixup_cutmix(key, videos, labels, 6, switch_prob=switch_prob))
  for seed in range(5):
    mixed, soft = fn(jax.random.key(seed))
    _check(np.asarray(mixed), np.asarray(soft), videos, mode)


def test_switch_prob_half_uses_both():
  videos, labels = _batch()
  fn = jax.jit(lambda key: device_ops.mixup_cutmix(key, videos, labels, 6))
  modes = set()
  for seed in range(30):
    mixed = np.asarray(fn(jax.random.key(seed))[0])
    modes.add("mixup" if not np.allclose(mixed, np.round(mixed)) else "cutmix")
  assert modes == {"mixup", "cutmix"}


def test_mixup_cutmix_is_a_function_of_the_key():
  videos, labels = _batch()
  fn = jax.jit(lambda key: device_ops.mixup_cutmix(key, videos, labels, 4))
  a, b = fn(jax.random.key(3)), fn(jax.random.key(3))
  np.testing.assert_array_equal(a[0], b[0])
  np.testing.assert_array_equal(a[1], b[1])



"""Frame indices of segment (TSN) and dense sampling, train and test, including videos shorter than T."""

import numpy as np
import pytest

from xclip_jax.data import sampling


@pytest.mark.parametrize("n", [8, 9, 17, 100, 301])
def test_segment_train_one_frame_per_segment(n):
  t = 8
  avg = n // t
  rng = np.random.default_rng(0)
  for _ in range(20):
    idx = sampling.segment_train(n, t, rng)
    assert idx.shape == (t,) and idx.dtype == np.int64
    # Official: index_i in [i*avg, (i+1)*avg) with avg = n // T.
    assert np.all(idx >= np.arange(t) * avg) and np.all(idx < (np.arange(t) + 1) * avg)


def test_segment_train_is_random_and_seeded():
  a = sampling.segment_train(300, 8, np.random.default_rng(1))
  b = sampling.segment_train(300, 8, np.random.default_rng(1))
  c = sampling.segment_train(300, 8, np.random.default_rng(2))
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)


def test_segment_test_centres():
  # n=100, T=8: avg 12.5, centres int(12.5 i + 6.25).
  np.testing.assert_array_equal(sampling.segment_test(100, 8), [6, 18, 31, 43, 56, 68, 81, 93])
  np.testing.assert_array_equal(sampling.segment_test(8, 8), np.arange(8))


def test_short_videos_as_official():
  # n < T: train spreads the frames with rounded i*n/T; test uses int(i*n/T + n/(2T)); all within range.
  np.testing.assert_array_equal(sampling.segment_train(3, 8, np.random.default_rng(0)),
                                np.around(np.arange(8) * 3 / 8).astype(int) % 3)
  np.testing.assert_array_equal(sampling.segment_test(3, 8), (np.arange(8) * 3 / 8 + 3 / 16).astype(int))
  assert set(sampling.segment_train(1, 8, np.random.default_rng(0))) == {0}
  with pytest.raises(ValueError):
    sampling.segment_test(0, 8)


def test_dense_sampling():
  rng = np.random.default_rng(0)
  for _ in range(10):
    idx = sampling.dense(100, 8, 2, rng)
    assert np.all(np.diff(idx) == 2) and idx[0] <= 100 - 15
  np.testing.assert_array_equal(sampling.dense(100, 8, 2, None), 42 + 2 * np.arange(8))  # Centred: (100-15)//2.
  np.testing.assert_array_equal(sampling.dense(5, 4, 2, None), [0, 2, 4, 1])  # Loops when too short.


def test_multiview():
  rng = np.random.default_rng(0)
  one = sampling.multiview_indices(100, 8, 1, mode="segment", multiview="official", rng=rng)
  np.testing.assert_array_equal(one, sampling.segment_test(100, 8)[None])
  four = sampling.multiview_indices(100, 8, 4, mode="segment", multiview="official", rng=rng)
  assert four.shape == (4, 8) and len({tuple(r) for r in four}) > 1  # Independent random clips.
  uni = sampling.multiview_indices(100, 8, 4, mode="segment", multiview="uniform", rng=rng)
  assert uni.shape == (4, 8) and np.all(np.diff(uni[:, 0]) > 0)  # Shifted within the segment.
  dense = sampling.multiview_indices(100, 8, 3, mode="dense", multiview="uniform", rng=rng, interval=2)
  assert dense.shape == (3, 8) and np.all(np.diff(dense, axis=1) == 2)

"""Which frames of a video make a clip (official X-CLIP / mmaction2 `SampleFrames` semantics).

All functions return int64 indices in [0, num_frames) of length T (or views x T) and take a numpy
Generator for the random parts, so a sample is a function of (video, seed, index) only.

Segment (TSN, "sparse") sampling with clip_len=1, frame_interval=1, num_clips=T, as the official code:
* train: avg = n // T; frame_i = i*avg + randint(avg). Short videos: if n > T, T sorted random indices;
  if n == T ... (avg == 0 but n <= T): rounded i*n/T; indices past the end wrap around ("loop").
* test: avg = n / T (float); frame_i = int(i*avg + avg/2).
* multi-clip test (official `multiview`): `clips` independent train-style samplings, concatenated.
Dense sampling: T frames `interval` apart from a random (train) or centred (test) start, looping.
"""

from __future__ import annotations

import numpy as np

SAMPLINGS = ("segment", "dense")  # frames within a clip (`clip_indices` modes)
MULTIVIEW_SAMPLINGS = ("official", "uniform")  # placement of clips > 1 (`multiview_indices`)
DEFAULT_MULTIVIEW_SAMPLING = "official"  # as X-CLIP's test pipeline (docs/data.md, "Evaluation views")


def segment_train(num_frames: int, t: int, rng: np.random.Generator) -> np.ndarray:
  """Random frame in each of T equal segments (official `_get_train_clips`, clip_len 1)."""
  _check(num_frames, t)
  avg = num_frames // t
  if avg > 0:
    offsets = np.arange(t) * avg + rng.integers(0, avg, size=t)
  elif num_frames > t:  # Unreachable with clip_len 1 (avg > 0 then); kept for parity with the official code.
    offsets = np.sort(rng.integers(0, num_frames, size=t))
  else:  # num_frames <= t: spread the available frames, repeating some.
    offsets = np.around(np.arange(t) * (num_frames / t))
  return np.mod(offsets.astype(np.int64), num_frames)


def segment_test(num_frames: int, t: int) -> np.ndarray:
  """Centre frame of each of T equal segments (official `_get_test_clips`)."""
  _check(num_frames, t)
  avg = num_frames / float(t)
  offsets = (np.arange(t) * avg + avg / 2.0).astype(np.int64)
  return np.mod(offsets, num_frames)


def dense(num_frames: int, t: int, interval: int, rng: np.random.Generator | None) -> np.ndarray:
  """T frames `interval` apart; random start if `rng` is given (training), else centred; loops if short."""
  _check(num_frames, t)
  span = (t - 1) * interval + 1
  room = max(num_frames - span, 0)
  start = int(rng.integers(0, room + 1)) if rng is not None else room // 2
  return np.mod(start + np.arange(t, dtype=np.int64) * interval, num_frames)


def clip_indices(num_frames: int, t: int, *, mode: str, train: bool, rng: np.random.Generator | None,
                 interval: int = 2) -> np.ndarray:
  """One clip: `mode` is "segment" or "dense"; `train` picks random vs centred placement."""
  if mode == "segment":
    return segment_train(num_frames, t, rng) if train else segment_test(num_frames, t)
  if mode == "dense":
    return dense(num_frames, t, interval, rng if train else None)
  raise ValueError(f"unknown sampling mode {mode!r}")


def multiview_indices(num_frames: int, t: int, clips: int, *, mode: str, multiview: str,
                      rng: np.random.Generator, interval: int = 2) -> np.ndarray:
  """(clips, T) indices for evaluation.

  clips == 1: the centred test clip. clips > 1 with multiview "official": `clips` independent random
  (train-style) samplings as X-CLIP's `SampleFrames(multiview=N)` (rng should be seeded per video);
  "uniform": deterministic clips, clip k shifted by (k + 0.5) / clips of a segment (dense: of the free room).
  """
  if clips == 1:
    return clip_indices(num_frames, t, mode=mode, train=False, rng=None, interval=interval)[None]
  if multiview == "official":
    return np.stack([clip_indices(num_frames, t, mode=mode, train=True, rng=rng, interval=interval)
                     for _ in range(clips)])
  if multiview != "uniform":
    raise ValueError(f"unknown multiview sampling {multiview!r}")
  _check(num_frames, t)
  out = []
  for k in range(clips):
    frac = (k + 0.5) / clips
    if mode == "segment":
      avg = num_frames / float(t)
      out.append(np.mod((np.arange(t) * avg + avg * frac).astype(np.int64), num_frames))
    else:
      span = (t - 1) * interval + 1
      start = int(max(num_frames - span, 0) * frac)
      out.append(np.mod(start + np.arange(t, dtype=np.int64) * interval, num_frames))
  return np.stack(out)


def _check(num_frames: int, t: int) -> None:
  if num_frames <= 0:
    raise ValueError(f"video has {num_frames} frames")
  if t <= 0:
    raise ValueError(f"clip length must be positive, got {t}")

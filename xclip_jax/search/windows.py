"""Windows over a video of any length: where each starts and ends, and which frames the model sees in it.

A window of `window_s` seconds starts every `stride_s` seconds; the last one ends at the end of the video
(so the tail is covered), and a video shorter than a window is one window over all of it. The model's T
frames of a window are the official test sampling (`sampling.segment_test`: the centre frame of each of T
equal segments) of the window's frames, as a clip of that length would be sampled. With the default stride
(half a window) and an even T, consecutive windows share half their frames, which are then decoded once.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from xclip_jax.data import sampling

DEFAULT_WINDOW_S = 8.0  # About a Kinetics clip (10 s), what the released X-CLIP models were trained on.


@dataclasses.dataclass(frozen=True)
class Window:
  """Seconds [start_s, end_s) of a video and the frame indices (T,) the model sees in it."""

  start_s: float
  end_s: float
  frames: np.ndarray


def window_lengths(window_s: float | None, stride_s: float | None) -> tuple[float, float]:
  """(window, stride) in seconds with the defaults filled in; a bad value is a one-line ValueError."""
  window_s = DEFAULT_WINDOW_S if window_s is None else float(window_s)
  stride_s = window_s / 2 if stride_s is None else float(stride_s)
  if not window_s > 0 or not stride_s > 0:
    raise ValueError(f"--window and --stride must be positive seconds, got {window_s} and {stride_s}")
  return window_s, stride_s


def plan_windows(num_frames: int, fps: float, frames: int, window_s: float, stride_s: float) -> list[Window]:
  """The windows of a video of `num_frames` frames at `fps`, each sampled with `frames` frames."""
  if num_frames <= 0 or fps <= 0:
    raise ValueError(f"a video needs frames and a frame rate, got {num_frames} frames at {fps} fps")
  span = max(1, int(round(window_s * fps)))  # frames in a window
  step = max(1, int(round(stride_s * fps)))
  if span >= num_frames:
    starts = [0]
    span = num_frames
  else:
    starts = list(range(0, num_frames - span + 1, step))
    if starts[-1] + span < num_frames:  # the tail: one more window that ends with the video
      starts.append(num_frames - span)
  offsets = sampling.segment_test(span, frames)
  return [Window(start / fps, (start + span) / fps, start + offsets) for start in starts]

"""The one place where the search room turns decoded frames into the model's input views.

Timelines, index building and re-ranking all come here, so that when the project's single view builder
(issue 22) lands, switching to it is a change of this file alone. Today the views are those of
`xclip_jax.predict` (evaluation/video_files.py `video_views`, one clip, one crop): frames resized so their
short side is 256/224 of the input size (done by the decoder, `decode_short_side`), then the centre crop of
`transforms.test_views`.
"""

from __future__ import annotations

import numpy as np

from xclip_jax.data import transforms


def decode_short_side(image_size: int) -> int:
  """Short side the decoder resizes frames to before the centre crop (the official 256 for 224)."""
  return int(256 / 224 * image_size)


def window_views(frames: np.ndarray, image_size: int) -> np.ndarray:
  """(T, H, W, 3) uint8 frames of one window (short side `decode_short_side`) -> (T, S, S, 3) uint8 view."""
  return transforms.test_views(frames, clips=1, crops=1, input_size=image_size,
                               short=decode_short_side(image_size))[0]

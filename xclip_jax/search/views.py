"""The one place where the search room turns decoded frames into the model's input views.

Timelines, index building and re-ranking come here, and this goes to the project's one view builder
(`xclip_jax.data.views.ViewSpec`, the views of `main`'s evaluation and of `python -m xclip_jax.predict`): a window
is one clip of one centre crop, its frames decoded with the short side the builder wants
(`decode_short_side`), then resized and cropped by `ViewSpec.views`.
"""

from __future__ import annotations

import numpy as np

from xclip_jax.data.views import ViewSpec


def decode_short_side(image_size: int) -> int:
  """Short side the decoder resizes frames to before the centre crop (the official 256 for 224)."""
  return ViewSpec(frames=1, size=image_size).decode_short_side


def window_views(frames: np.ndarray, image_size: int) -> np.ndarray:
  """(T, H, W, 3) uint8 frames of one window -> (T, S, S, 3) uint8 view (one clip, one centre crop)."""
  return ViewSpec(frames=len(frames), size=image_size).views(frames)[0]

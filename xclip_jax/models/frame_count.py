"""A model trained at T frames, run at another frame count: the MIT's temporal position table resized.

X-CLIP has one table tied to the frame count, the MIT's `positional_embedding` (1, T, E); the vision tower
(message tokens) and the prompts take any number of frames. Resizing that table is how VideoPrism runs its
temporal encoder at other lengths (`jax.image.resize`, half-pixel centres, antialiased when shrinking) and
how Scenic's ViViT does it (`scipy.ndimage.zoom` order 1: linear with the end points kept). Which one
serves X-CLIP best was measured on the demo model (docs/search.md, "Any frame count"); `DEFAULT_METHOD` is
the winner there.

    config, params = at_frames(config, params, frames=16)        # flat params, see models/params.py
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from xclip_jax.models.config import ModelConfig

METHODS = ("linear", "halfpixel", "antialias", "nearest")
DEFAULT_METHOD = "linear"
TABLE = ("mit", "positional_embedding")


def resize_table(table: np.ndarray, frames: int, method: str = DEFAULT_METHOD) -> np.ndarray:
  """(1, T, E) -> (1, frames, E).

  "linear": linear interpolation with the first and last positions kept (Scenic); "halfpixel": linear on
  half-pixel centres (`jax.image.resize` "linear", no antialias); "antialias": the same, antialiased when
  shrinking (VideoPrism); "nearest": the nearest position on half-pixel centres (halves round up).
  """
  table = np.asarray(table, np.float32)
  if table.ndim != 3 or table.shape[0] != 1:
    raise ValueError(f"temporal position table must be (1, T, E), got {table.shape}")
  if frames < 1:
    raise ValueError(f"frames must be at least 1, got {frames}")
  if method not in METHODS:
    raise ValueError(f"unknown frame interpolation {method!r}; choose one of {METHODS}")
  t = table.shape[1]
  if frames == t:
    return table
  if method == "linear":
    where = np.linspace(0, t - 1, frames) if frames > 1 else np.array([(t - 1) / 2])
    low = np.floor(where).astype(int)
    high = np.minimum(low + 1, t - 1)
    w = (where - low)[None, :, None].astype(np.float32)
    return (1 - w) * table[:, low] + w * table[:, high]
  if method == "nearest":
    centres = (np.arange(frames) + 0.5) * t / frames - 0.5
    return table[:, np.clip(np.floor(centres + 0.5).astype(int), 0, t - 1)]
  import jax

  resized = jax.image.resize(table, (1, frames, table.shape[2]), "linear", antialias=method == "antialias")
  return np.asarray(resized, np.float32)


def at_frames(config: ModelConfig, params: Mapping[tuple, np.ndarray], frames: int,
              method: str = DEFAULT_METHOD) -> tuple[ModelConfig, dict[tuple, np.ndarray]]:
  """(config, flat params) of the same model taking `frames` frames per clip."""
  params = dict(params)
  if config.use_mit:
    if TABLE not in params:
      raise ValueError(f"the parameters have no {'/'.join(TABLE)} to resize to {frames} frames")
    params[TABLE] = resize_table(params[TABLE], frames, method)
  return config.replace(num_frames=frames), params

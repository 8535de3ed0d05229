"""Helpers for the data tests: tiny real H.264 videos written with PyAV whose frames encode their index."""

from __future__ import annotations

import os

import numpy as np

from xclip_jax.data import labels, synthetic


def index_frame(i: int, height: int, width: int) -> np.ndarray:
  """A flat frame whose colour encodes `i` robustly to H.264 (steps of 16 per code)."""
  frame = np.empty((height, width, 3), np.uint8)
  frame[..., 0] = (i % 16) * 16 + 8
  frame[..., 1] = (i // 16 % 16) * 16 + 8
  frame[..., 2] = (i // 256 % 16) * 16 + 8
  return frame


def marked_frame(height: int = 32, width: int = 64) -> np.ndarray:
  """Blocks in three corners (white top-left, blue top-right, red bottom-left): every turn and mirror differs."""
  frame = np.zeros((height, width, 3), np.uint8)
  frame[:16, :16] = 255
  frame[:16, -16:] = (0, 0, 255)
  frame[-16:, :16] = (255, 0, 0)
  return frame


def decoded_index(frame: np.ndarray) -> int:
  """Inverse of `index_frame` for a decoded (possibly resized) frame."""
  r = float(np.median(frame[..., 0]))
  g = float(np.median(frame[..., 1]))
  b = float(np.median(frame[..., 2]))
  return int(round((r - 8) / 16)) + 16 * int(round((g - 8) / 16)) + 256 * int(round((b - 8) / 16))


def write_index_video(path: str, num_frames: int, height: int = 48, width: int = 64, fps: int = 10,
                      gop: int | None = None) -> str:
  """Writes an mp4 whose frame i encodes i (see `index_frame`)."""
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  frames = np.stack([index_frame(i, height, width) for i in range(num_frames)])
  synthetic.write_mp4(path, frames, fps=fps, gop=gop)
  return path


def write_video(path: str, frames: np.ndarray, *, fps: int = 10, faststart: bool = False, bframes: bool = True,
                rotation: float | None = None, hflip: bool = False, tags: dict[str, str] | None = None) -> str:
  """Writes uint8 RGB frames as H.264 in the container named by the extension (.mp4, .mkv, .mov).

  faststart: the MP4 index (moov) first, as web downloads have it (so a cut-off file still opens).
  rotation, hflip: a display matrix (PyAV `set_display_rotation`: degrees counter-clockwise, then mirror).
  tags: stream metadata (e.g. the legacy {"rotate": "90"}; only Matroska keeps arbitrary tags).
  """
  import av

  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  h, w = frames.shape[1:3]
  with av.open(path, mode="w", options={"movflags": "faststart"} if faststart else {}) as container:
    stream = container.add_stream("libx264", rate=fps)
    stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
    stream.options = {**synthetic.x264_options(), **({} if bframes else {"bf": "0"})}
    if rotation is not None:
      stream.set_display_rotation(rotation, hflip=hflip)
    stream.metadata.update(tags or {})
    for f in frames:
      for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)
  return path


def write_corrupt(path: str, size: int = 4096, seed: int = 0) -> str:
  """Random bytes with an .mp4 name."""
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  with open(path, "wb") as f:
    f.write(np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes())
  return path


def write_truncated(src: str, dst: str, keep: float = 0.5) -> str:
  """The first `keep` fraction of a video file's bytes."""
  with open(src, "rb") as f:
    data = f.read()
  with open(dst, "wb") as f:
    f.write(data[: int(len(data) * keep)])
  return dst


def make_file_dataset(root: str, num_classes: int = 3, per_class: int = 4, num_frames: int = 12,
                      height: int = 48, width: int = 64) -> tuple[str, str, list[labels.VideoRecord]]:
  """Videos + label list + class CSV under root; video k of class c has k + c + num_frames frames (varied)."""
  names = [f"class {c}" for c in range(num_classes)]
  csv_path = os.path.join(root, "classes.csv")
  os.makedirs(root, exist_ok=True)
  labels.write_class_names(names, csv_path)
  lines = []
  for c in range(num_classes):
    for k in range(per_class):
      rel = f"videos/c{c}/v{k}.mp4"
      write_index_video(os.path.join(root, rel), num_frames + k + c, height, width)
      lines.append((rel, c))
  list_path = os.path.join(root, "list.txt")
  labels.write_label_list(lines, list_path)
  return list_path, csv_path, labels.read_label_list(list_path, root, num_classes)

"""The one view builder: which frames of a video, resized and cropped into the model's evaluation views.

Every command that evaluates or classifies a video builds its views here, so one video gets the same views
from `main --config.mode=evaluate` (`pipeline`), `python -m xclip_jax.predict` and `classify_videos`,
labelled-set evaluation and the notebook (`evaluation.video_files`):

    spec = ViewSpec(frames=8, size=224, clips=4, crops=3)     # the official 4 x 3 test views
    spec = ViewSpec.from_data_config(data_cfg, clips=4, crops=3)   # main's: data.sampling, resize_short, ...
    views = read_views("video.mp4", spec)                      # (crops x clips, T, size, size, 3) uint8
    spec.frame_indices(num_frames, name)                       # (clips, T): which frames
    spec.views(frames)                                         # decoded frames (clips x T, H, W, 3) -> views

Which frames (`xclip_jax.data.sampling`): T segment-sampled frames per clip (or dense), one centred clip for
clips = 1. More clips are placed as `multiview_sampling` says: "official" (the default, as X-CLIP's test
pipeline: independent random segment samplings, drawn from a generator seeded by the video's file name, so
a video gets the same views in every command, in any order, on any number of processes) or "uniform"
(deterministic: clip k shifted by (k + 0.5) / clips of a segment). Resize and crops (`transforms.test_views`):
short side `int(256 / 224 * size)` and a centre crop, or with 3 crops short side `size` and three squares
along the long side; crop-major layout (view v = crop * clips + clip).

Frames from elsewhere (a streaming decoder, frames at given times) become views with `spec.views(frames)`,
or with `read_views(video, spec, indices=...)` for given frame indices of a file.
"""

from __future__ import annotations

import dataclasses
import os
import zlib
from collections.abc import Callable

import numpy as np

from xclip_jax.data import sampling, sources, transforms
from xclip_jax.data.video_source import EncodedVideo

MULTIVIEW_SAMPLINGS = sampling.MULTIVIEW_SAMPLINGS
DEFAULT_MULTIVIEW_SAMPLING = sampling.DEFAULT_MULTIVIEW_SAMPLING


def video_seed(name: str) -> int:
  """The seed of a video's random ("official") clips: its file name (last path component), not its position."""
  return zlib.crc32(os.path.basename(os.fspath(name).rstrip("/")).encode("utf-8"))


@dataclasses.dataclass(frozen=True)
class ViewSpec:
  """How a video becomes the model's evaluation views.

  Attributes:
    frames: T frames per clip (the model's).
    size: the square input size (the model's image size).
    clips: temporal clips (>= 1).
    crops: spatial crops, 1 (centre) or 3.
    resize_short: short side before the centre crop; 0 = official int(256 / 224 * size).
    sampling: frames within a clip, "segment" (TSN, official) or "dense".
    multiview_sampling: placement of clips > 1, "official" (seeded random) or "uniform".
    interval: frame step of dense sampling.
  """

  frames: int
  size: int
  clips: int = 1
  crops: int = 1
  resize_short: int = 0
  sampling: str = "segment"
  multiview_sampling: str = DEFAULT_MULTIVIEW_SAMPLING
  interval: int = 2

  def __post_init__(self):
    if self.crops not in (1, 3) or self.clips < 1:
      raise ValueError(f"views: clips must be >= 1 and crops 1 or 3, got clips={self.clips}, crops={self.crops}")
    if self.frames < 1 or self.size < 1:
      raise ValueError(f"views: frames and size must be positive, got frames={self.frames}, size={self.size}")
    if self.sampling not in sampling.SAMPLINGS:
      raise ValueError(f"views: sampling must be one of {sampling.SAMPLINGS}, got {self.sampling!r}")
    if self.multiview_sampling not in MULTIVIEW_SAMPLINGS:
      raise ValueError(f"views: multiview_sampling must be one of {MULTIVIEW_SAMPLINGS}, got "
                       f"{self.multiview_sampling!r}")

  @classmethod
  def from_data_config(cls, cfg, *, clips: int = 1, crops: int = 1) -> ViewSpec:
    """`clips` x `crops` views as a data config block says (`data.num_frames`, `input_size`, `resize_short`,
    `sampling`, `multiview_sampling`, `dense_frame_interval`)."""
    return cls(frames=int(cfg.num_frames), size=int(cfg.input_size), clips=int(clips), crops=int(crops),
               resize_short=int(cfg.resize_short),
               sampling=cfg.sampling, multiview_sampling=cfg.multiview_sampling,
               interval=int(cfg.dense_frame_interval))

  @property
  def count(self) -> int:
    """Views per video: crops x clips."""
    return self.crops * self.clips

  @property
  def short_side(self) -> int:
    """Short side before the single centre crop."""
    return self.resize_short or transforms.official_short_side(self.size)

  @property
  def decode_short_side(self) -> int:
    """The short side frames are decoded at: what the first transform of `views` wants (no second resize)."""
    return self.size if self.crops == 3 else self.short_side

  def frame_indices(self, num_frames: int, name: str) -> np.ndarray:
    """(clips, T) frame indices of a video of `num_frames` frames called `name` (see `video_seed`)."""
    rng = np.random.default_rng(video_seed(name)) if self.multiview_sampling == "official" else None
    return sampling.multiview_indices(num_frames, self.frames, self.clips, mode=self.sampling,
                                      multiview=self.multiview_sampling, rng=rng, interval=self.interval)

  def views(self, frames: np.ndarray) -> np.ndarray:
    """(clips x T, H, W, 3) uint8 frames, clip-major, any size -> (crops x clips, T, size, size, 3) uint8."""
    if len(frames) != self.clips * self.frames:
      raise ValueError(f"views: {len(frames)} frames given, {self.clips} clips x {self.frames} wanted")
    return transforms.test_views(frames, clips=self.clips, crops=self.crops, input_size=self.size,
                                 short=self.short_side)

  def empty(self) -> np.ndarray:
    """All-zero views of one video (padding, or a video that could not be read)."""
    return np.zeros((self.count, self.frames, self.size, self.size, 3), np.uint8)


def read_views(video: EncodedVideo | str | os.PathLike, spec: ViewSpec, *, indices: np.ndarray | None = None,
               backend: str = "pyav", threads: int = 1, min_frames: int = 1,
               on_warning: Callable[[str], None] | None = None) -> np.ndarray:
  """Decodes the frames `spec` samples from a video (a file, a URL, or a data source's item) into its views.

  `indices` (clips x T frame indices) replaces the sampling, e.g. for frames at given times. Raises
  `decode.VideoDecodeError` naming the video if it cannot be read.
  """
  item = video if isinstance(video, EncodedVideo) else sources.VideoFile.at(os.fspath(video))

  def pick(num_frames: int) -> np.ndarray:
    return np.asarray(indices, np.int64) if indices is not None else spec.frame_indices(num_frames, item.name)

  frames, _, _ = item.load_frames(pick, backend=backend, threads=threads, short_side=spec.decode_short_side,
                                  min_frames=min_frames, on_warning=on_warning)
  return spec.views(frames)

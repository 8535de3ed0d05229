"""Frames of a long video as a stream: only the frames asked for, in order, never the whole video in memory.

    info = probe("talk.mp4")                                   # frame count, rate, size
    for index, rgb in stream_frames("talk.mp4", wanted):        # sorted frame indices
        ...                                                     # rgb: (H, W, 3) uint8 as displayed

For timelines and search indexes over videos of any length: `decode.read_frames` returns all picked frames
at once (right for a clip), this yields them one by one. Both share decode.py's PyAV setup and its forward
decoder (`decode.iter_wanted`): it decodes straight through and converts to RGB only the wanted frames, and
seeks to the keyframe before a target only when the gap to it is longer than ~2 s (moments reference,
section 4: seeking per target pays only when targets are further apart than the keyframe interval). A
gs:// video is read through a seekable file object (ranged reads), not downloaded whole.

A file cut off before its end yields the frames that decode and then tells `on_warning` where it stopped;
anything else unreadable raises `decode.VideoDecodeError` naming the video.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Callable, Iterator

import numpy as np

from xclip_jax import storage
from xclip_jax.data import decode


@dataclasses.dataclass(frozen=True)
class VideoInfo:
  """What a stream promises: `num_frames` frames at `fps` (frame i is shown at i / fps seconds)."""

  num_frames: int
  fps: float
  height: int
  width: int

  @property
  def duration_s(self) -> float:
    return self.num_frames / self.fps


@contextlib.contextmanager
def _opened(source: str | os.PathLike, name: str, threads: int):
  """(container, stream) of a local file or a bucket object; closed on exit."""
  import av

  source = os.fspath(source)
  handle = None
  try:
    if storage.is_remote(source):
      try:
        handle = storage.path(source).open("rb")
      except FileNotFoundError:
        raise decode.VideoDecodeError(name, "file not found") from None
      except Exception as e:  # The client's own errors (HTTP, auth): this video fails alone, named.
        raise decode.VideoDecodeError(name, f"cannot read: {type(e).__name__}: {e}") from e
    elif not os.path.exists(source):
      raise decode.VideoDecodeError(name, "file not found")
    try:
      container = av.open(handle if handle is not None else source, mode="r")
    except (av.error.FFmpegError, OSError, ValueError) as e:
      raise decode.VideoDecodeError(name, f"cannot open: {e}") from e
    try:
      yield container, decode._video_stream(container, name, threads)
    finally:
      container.close()
  finally:
    if handle is not None:
      handle.close()


def probe(source: str | os.PathLike, *, name: str | None = None) -> VideoInfo:
  """Frame count, frame rate and size of a video, from its header (packets counted if the header has none)."""
  import av

  name = name or os.fspath(source)
  with _opened(source, name, 1) as (container, stream):
    try:
      rate = decode._frame_rate(stream)
      num_frames = int(stream.frames or 0) or decode._count_packets(container, stream)
    except (av.error.FFmpegError, OSError, ValueError, EOFError) as e:
      raise decode.VideoDecodeError(name, f"corrupt or unreadable: {type(e).__name__}: {e}") from e
    if not rate or num_frames <= 0:
      raise decode.VideoDecodeError(name, "no frames" if num_frames <= 0 else "no frame rate in the stream")
    return VideoInfo(num_frames, float(rate), int(stream.height), int(stream.width))


def stream_frames(source: str | os.PathLike, wanted: np.ndarray, *, short_side: int | None = None,
                  name: str | None = None, threads: int = 1,
                  on_warning: Callable[[str], None] | None = None) -> Iterator[tuple[int, np.ndarray]]:
  """Yields (index, RGB frame) for each wanted frame index, in increasing order, as they decode.

  Args:
    source: a video file path or gs:// URL.
    wanted: frame indices (presentation order, as `probe` counts them); sorted and de-duplicated here.
    short_side: resize each kept frame so its short side has this length (as `decode.read_frames`).
    name: how to name the video in errors and warnings (default: the path).
    threads: decoder threads.
    on_warning: told, in one line naming the video, when the file ends before the last wanted frame.
  """
  import av

  name = name or os.fspath(source)
  wanted = np.unique(np.asarray(wanted, np.int64))
  with _opened(source, name, threads) as (container, stream):
    frames = decode.iter_wanted(container, stream, wanted, short_side, name, allow_seek=True)
    try:
      yield from frames
    except decode._EndedEarly as e:
      (on_warning or decode._log_warning)(f"{name}: cut off: frames from {e.target} on do not decode")
    except (av.error.FFmpegError, OSError, ValueError, EOFError) as e:
      raise decode.VideoDecodeError(name, f"corrupt or unreadable: {type(e).__name__}: {e}") from e

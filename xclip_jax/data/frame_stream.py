"""Frames of a long video as a stream: only the frames asked for, in order, never the whole video in memory.

    info = probe("talk.mp4")                                   # frame count, rate, size
    for index, rgb in stream_frames("talk.mp4", wanted):        # sorted frame indices
        ...                                                     # rgb: (H, W, 3) uint8 as displayed

For timelines and search indexes over videos of any length: `decode.read_frames` returns all picked frames
at once (right for a clip), this yields them one by one, with decode.py's PyAV setup. Targets about a window
apart (the usual case: gaps under ~2 s) are decoded straight through, converting to RGB only the wanted
frames, and the decoder skips the non-reference frames nobody wants (`_iter_skipping`: about half of an
H.264 stream is never decoded; the frames kept are the same bytes as a full decode's). Targets further apart
go through the clip decoder (`decode.iter_wanted`), which seeks to the keyframe before a target when the gap
to it is longer than ~2 s (moments reference, section 4: seeking pays only when targets are further apart
than the keyframe interval). A gs:// video is read through a seekable file object (ranged reads), not
downloaded whole.

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
    rate = decode._frame_rate(stream)
    gaps = np.diff(wanted)
    dense = rate is not None and stream.time_base is not None and (not gaps.size or np.median(gaps) <= 2 * rate)
    if dense and threads == 1:
      frames = _iter_skipping(container, stream, wanted, short_side, name, rate)
    else:  # far-apart targets: the clip decoder, which seeks over long gaps
      frames = decode.iter_wanted(container, stream, wanted, short_side, name, allow_seek=True)
    try:
      yield from frames
    except decode._EndedEarly as e:
      (on_warning or decode._log_warning)(f"{name}: cut off: frames from {e.target} on do not decode")
    except (av.error.FFmpegError, OSError, ValueError, EOFError) as e:
      raise decode.VideoDecodeError(name, f"corrupt or unreadable: {type(e).__name__}: {e}") from e


def _iter_skipping(container, stream, wanted: np.ndarray, short_side, name, rate) -> Iterator[tuple[int, np.ndarray]]:
  """Decodes straight through, but lets the decoder skip the non-reference frames that are not wanted.

  A packet's frame index comes from its timestamp (constant frame rate); the decoder is told to skip
  non-reference frames (`skip_frame` NONREF) for packets of unwanted frames, and to decode everything for
  packets of wanted ones. Reference frames are always decoded, so every wanted frame decodes exactly as in a
  full decode; about half the frames of a typical H.264 stream are never decoded. A stream without timestamps
  falls back to `decode.iter_wanted`.
  """
  if wanted.size == 0:
    return
  fallback = decode._stream_orientation(stream)
  tb, start = stream.time_base, stream.start_time or 0
  index_of = lambda pts: int(round(float((pts - start) * tb * rate)))
  wanted_set = set(wanted.tolist())
  target = 0  # position in `wanted` of the next frame to yield
  context = stream.codec_context
  frames = _frames_skipping(container, stream, context, wanted_set, index_of)
  for pts, frame in frames:
    if pts is None:
      raise decode.VideoDecodeError(name, "a frame without a timestamp")
    index = index_of(pts)
    if index < int(wanted[target]):
      continue
    if index > int(wanted[target]):
      raise decode.VideoDecodeError(name, f"frame {int(wanted[target])} missing from the decoded sequence")
    yield index, decode._frame_to_rgb(frame, fallback, short_side)
    target += 1
    if target == wanted.size:
      return
  raise decode._EndedEarly(int(wanted[target]))


def _frames_skipping(container, stream, context, wanted_set, index_of):
  """(pts, frame) in presentation order; non-reference frames skipped for packets of unwanted frames."""
  import av

  mode = None
  packets = container.demux(stream)
  while True:
    try:
      packet = next(packets)
      if packet.pts is not None:
        want = "DEFAULT" if index_of(packet.pts) in wanted_set else "NONREF"
        if want != mode:
          context.skip_frame = mode = want
      decoded = packet.decode()
    except StopIteration:
      return
    except (av.error.FFmpegError, EOFError):  # a partial packet at the cut of a cut-off file: flush and stop
      with contextlib.suppress(av.error.FFmpegError, EOFError):
        context.skip_frame = "DEFAULT"
        for frame in stream.decode(None):
          yield frame.pts, frame
      return
    for frame in decoded:
      yield frame.pts, frame

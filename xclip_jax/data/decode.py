"""Decoding only the frames a clip needs, with PyAV (default) or decord (optional, if installed).

`read_frames(source, pick, backend=...)` opens a video (path or encoded bytes), asks `pick(num_frames)`
for the frame indices, decodes those frames and returns them as uint8 RGB (n, H, W, 3) as a player shows
them (display rotation applied, see `orientation`), optionally resized so that the short side is
`short_side` (the official first transform, "Resize short side to 256"; each distinct frame is resized
once, before duplicates are expanded).

Frame index = position in presentation order, as decord's `VideoReader[i]` (the official decoder).
PyAV decodes forward from the start, seeking to the keyframe before a needed frame when that frame is far
ahead (constant-frame-rate streams only; otherwise it decodes sequentially), and converts to RGB only the
frames it keeps.

A file cut off after its header (an interrupted download: the container promises more frames than it
holds) is sampled from the frames that do decode: `pick` is asked again with that count and `on_warning`
is told (default: a logged warning). Every other failure (missing, unreadable, corrupt, nothing
decodable, too short) raises `VideoDecodeError` naming the video, so the pipeline can log, count and
replace it.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from collections.abc import Callable, Iterator
from fractions import Fraction

import numpy as np

from xclip_jax import storage
from xclip_jax.data import orientation

BACKENDS = ("pyav", "decord")

log = logging.getLogger(__name__)


class VideoDecodeError(RuntimeError):
  """A video could not be decoded; `path` says which, `reason` why."""

  def __init__(self, path: str, reason: str):
    super().__init__(f"{path}: {reason}")
    self.path = path
    self.reason = reason


class _EndedEarly(Exception):
  """Decoding stopped (end of data or a decode error) before a wanted frame."""

  def __init__(self, target: int):
    super().__init__(target)
    self.target = target


def decord_available() -> bool:
  """Whether the optional decord backend can be imported."""
  try:
    import decord  # noqa: F401
  except ImportError:
    return False
  return True


def _log_warning(message: str) -> None:
  log.warning("%s", message)


def _resized_size(height: int, width: int, short_side: int | None) -> tuple[int, int]:
  """(h, w) with the short side scaled to `short_side`, keeping aspect (mmcv `rescale_size` rounding)."""
  if not short_side or min(height, width) == short_side:
    return height, width
  scale = short_side / min(height, width)
  return int(height * scale + 0.5), int(width * scale + 0.5)


def _resize_frame(frame: np.ndarray, short_side: int | None) -> np.ndarray:
  """Bilinear short-side resize of one RGB frame with PIL (the official mmcv Resize, aspect kept)."""
  h, w = _resized_size(frame.shape[0], frame.shape[1], short_side)
  if (h, w) == frame.shape[:2]:
    return frame
  from PIL import Image

  return np.asarray(Image.fromarray(frame).resize((w, h), Image.BILINEAR))


def _pick_checked(pick: Callable[[int], np.ndarray], num_frames: int, name: str) -> np.ndarray:
  indices = np.asarray(pick(num_frames), dtype=np.int64).reshape(-1)
  if indices.size and (indices.min() < 0 or indices.max() >= num_frames):
    raise VideoDecodeError(name, f"sampler asked for frames outside [0, {num_frames})")
  return indices


def read_frames(source: str | bytes, pick: Callable[[int], np.ndarray], *, backend: str = "pyav",
                threads: int = 1, short_side: int | None = None, name: str | None = None,
                min_frames: int = 1, on_warning: Callable[[str], None] | None = None
                ) -> tuple[np.ndarray, np.ndarray, int]:
  """Decodes the frames chosen by `pick`.

  Args:
    source: a file path, or the encoded video bytes (ArrayRecord shards).
    pick: called with the video's frame count, returns the wanted indices (any shape, repeats allowed).
      Called a second time, with the decodable count, for a file cut off after its header.
    backend: "pyav" or "decord".
    threads: decoder threads (1 when many worker processes decode in parallel).
    short_side: if set, frames are resized (bilinear) so that their short side has this length.
    name: how to name the video in errors (defaults to the path).
    min_frames: videos with fewer (decodable) frames raise `VideoDecodeError` (too short).
    on_warning: told, in one line naming the video, when a cut-off file was sampled from its decodable
      part (default: logged as a warning).

  Returns:
    frames uint8 (n, H, W, 3) in the order of the flattened indices, the indices, the frame count (of the
    decodable part for a cut-off file).
  """
  name = name or (source if isinstance(source, str) else "<bytes>")
  on_warning = on_warning or _log_warning
  if isinstance(source, str) and storage.is_remote(source):
    source = _read_object(source, name)
  elif isinstance(source, str) and not os.path.exists(source):
    raise VideoDecodeError(name, "file not found")
  if backend == "pyav":
    return _read_pyav(source, pick, threads=threads, short_side=short_side, name=name, min_frames=min_frames,
                      on_warning=on_warning)
  if backend == "decord":
    return _read_decord(source, pick, threads=threads, short_side=short_side, name=name, min_frames=min_frames,
                        on_warning=on_warning)
  raise ValueError(f"unknown decode backend {backend!r}; choose one of {BACKENDS}")


def _read_object(url: str, name: str) -> bytes:
  """A video in a bucket, read whole (decoders seek; videos are small next to a round trip per seek)."""
  try:
    return storage.path(url).read_bytes()
  except FileNotFoundError:
    raise VideoDecodeError(name, "file not found") from None
  except Exception as e:  # The client's own errors (HTTP, auth): this video fails alone, named.
    raise VideoDecodeError(name, f"cannot read: {type(e).__name__}: {e}") from e


# ---------------------------------------------------------------------------------------------------------
# PyAV


def _open(source, name):
  import av  # Imported here so that workers that never decode with PyAV do not pay for it.

  try:
    return av.open(io.BytesIO(source) if isinstance(source, bytes) else source, mode="r")
  except (av.error.FFmpegError, OSError, ValueError) as e:
    raise VideoDecodeError(name, f"cannot open: {e}") from e


def _video_stream(container, name, threads):
  if not container.streams.video:
    raise VideoDecodeError(name, "no video stream")
  stream = container.streams.video[0]
  stream.thread_type = "AUTO" if threads > 1 else "SLICE"
  stream.codec_context.thread_count = max(int(threads), 1)
  return stream


def _read_pyav(source, pick, *, threads, short_side, name, min_frames, on_warning):
  import av

  need = max(min_frames, 1)
  container = _open(source, name)
  try:
    stream = _video_stream(container, name, threads)
    num_frames = int(stream.frames or 0)
    if num_frames <= 0:  # Containers without a frame count (some webm/mkv/avi): count packets, then reopen.
      num_frames = _count_packets(container, stream)
      container.close()
      container = _open(source, name)
      stream = _video_stream(container, name, threads)
    if num_frames < need:
      raise VideoDecodeError(name, f"too short: {num_frames} frames (need at least {need})")
    indices = _pick_checked(pick, num_frames, name)
    try:
      got = _decode_wanted(container, stream, np.unique(indices), short_side, name, allow_seek=True)
    except _EndedEarly:
      # Cut off after the header: count what decodes (one thread, sequentially, so both passes agree),
      # then sample from that part.
      container.close()
      container = _open(source, name)
      decodable = sum(1 for _ in _decoded_frames(container, _video_stream(container, name, 1)))
      if decodable < need:
        raise VideoDecodeError(name, f"truncated: container says {num_frames} frames, {decodable} decode "
                                     f"(need at least {need})") from None
      on_warning(f"{name}: cut off: container says {num_frames} frames, only the first {decodable} decode; "
                 f"sampling from those")
      container.close()
      container = _open(source, name)
      num_frames, indices = decodable, _pick_checked(pick, decodable, name)
      try:
        got = _decode_wanted(container, _video_stream(container, name, 1), np.unique(indices), short_side, name,
                             allow_seek=False)
      except _EndedEarly as e:
        raise VideoDecodeError(name, f"truncated: frame {e.target} of {decodable} decodable ones did not "
                                     f"decode again") from None
    frames = np.stack([got[int(i)] for i in indices]) if indices.size else np.zeros((0, 1, 1, 3), np.uint8)
    return frames, indices, num_frames
  except VideoDecodeError:
    raise
  except (av.error.FFmpegError, OSError, ValueError, EOFError) as e:
    raise VideoDecodeError(name, f"corrupt or unreadable: {type(e).__name__}: {e}") from e
  finally:
    container.close()


def _count_packets(container, stream) -> int:
  """Packets with data up to the end of the file, or up to where it stops being readable."""
  import av

  count = 0
  with contextlib.suppress(av.error.FFmpegError, EOFError):
    for packet in container.demux(stream):
      count += bool(packet.size)
  return count


def _frame_rate(stream) -> Fraction | None:
  rate = stream.average_rate or stream.guessed_rate
  return Fraction(rate) if rate else None


def _decoded_frames(container, stream):
  """Frames from the container's current position, ending quietly where the data ends or stops decoding.

  The same packets and calls as PyAV's `container.decode(stream)` for a sound file; for a cut-off one the
  frames still buffered in the decoder (reordering delay) are flushed out instead of being lost.
  """
  import av

  packets = container.demux(stream)
  while True:
    try:
      packet = next(packets)
      frames = packet.decode()
    except StopIteration:
      return
    except (av.error.FFmpegError, EOFError):  # A partial packet at the cut, or data missing past it.
      with contextlib.suppress(av.error.FFmpegError, EOFError):
        yield from stream.decode(None)
      return
    yield from frames


def _stream_orientation(stream) -> tuple[int, int, int, int]:
  """Orientation from the legacy `rotate` tag (any case: Matroska tags read back as ROTATE), used for frames
  that carry no display matrix."""
  tags = {key.lower(): value for key, value in stream.metadata.items()}
  return orientation.from_rotate_tag(tags.get("rotate"))


def _frame_to_rgb(frame, fallback: tuple[int, int, int, int], short_side) -> np.ndarray:
  """RGB as displayed (display matrix of the frame, else the stream's rotate tag), then resized."""
  import av

  rgb = frame.to_ndarray(format="rgb24")
  matrix = frame.side_data.get(av.sidedata.sidedata.Type.DISPLAYMATRIX)
  transform = orientation.from_display_matrix(bytes(matrix)) if matrix is not None else fallback
  return _resize_frame(orientation.apply(rgb, transform), short_side)


def _decode_wanted(container, stream, wanted: np.ndarray, short_side, name, *,
                   allow_seek: bool) -> dict[int, np.ndarray]:
  """{index: RGB frame} of the wanted frames (see `iter_wanted`); raises `_EndedEarly` if they run out."""
  return dict(iter_wanted(container, stream, wanted, short_side, name, allow_seek=allow_seek))


def iter_wanted(container, stream, wanted: np.ndarray, short_side, name, *,
                allow_seek: bool) -> Iterator[tuple[int, np.ndarray]]:
  """Yields (index, RGB frame) of each of the sorted unique `wanted` indices, in order, as it decodes.

  Decodes forward, converting only wanted frames; seeks ahead over long gaps on CFR streams. Holds no frame
  after yielding it, so a caller that keeps only what it needs decodes a long video in bounded memory.
  Raises `_EndedEarly` if the frames run out before the last wanted one.
  """
  if wanted.size == 0:
    return
  fallback = _stream_orientation(stream)
  rate, tb = _frame_rate(stream), stream.time_base
  start_pts = stream.start_time or 0
  can_seek = allow_seek and rate is not None and tb is not None
  # Jumping ahead pays only when the gap is much longer than what a seek decodes from the keyframe; keyframe
  # spacing is unknown up front, so only gaps longer than ~2 s (or 60 frames) trigger a seek.
  seek_gap = max(60, int(2 * rate)) if can_seek else None
  target_pos = 0  # Position in `wanted` of the next frame to keep.

  def frames_from(index_of):
    """Yields (index, frame) decoding from the current container position; index from `index_of`."""
    for frame in _decoded_frames(container, stream):
      yield index_of(frame), frame

  # Sequential counting is exact for any stream; pts-derived indices are used only after a seek.
  counter = iter(range(1 << 62))
  seq_index = lambda frame: next(counter)

  def pts_index(frame):
    if frame.pts is None:
      raise VideoDecodeError(name, "frame without timestamp after seek")
    return int(round(float((frame.pts - start_pts) * tb * rate)))

  index_of = seq_index
  gen = frames_from(index_of)
  last = -1
  just_sought = False
  while target_pos < wanted.size:
    target = int(wanted[target_pos])
    if seek_gap is not None and target - last > seek_gap:
      # Seek to the keyframe at or before the target and switch to pts-derived indices.
      container.seek(int(start_pts + target / rate / tb), stream=stream, backward=True, any_frame=False)
      index_of = pts_index
      gen = frames_from(index_of)
      just_sought = True
    try:
      idx, frame = next(gen)
    except StopIteration:
      raise _EndedEarly(target) from None
    if just_sought:
      just_sought = False
      if idx <= last:  # The keyframe is not ahead of where we were: keyframes are sparse, stop seeking.
        seek_gap = None
    last = idx
    if idx > target:
      if index_of is pts_index:  # Overshot after a seek (timestamps do not map to indices): restart plainly.
        container.seek(0, stream=stream)
        counter = iter(range(1 << 62))
        index_of = seq_index
        seek_gap = None
        gen = frames_from(index_of)
        last = -1
        continue
      raise VideoDecodeError(name, f"frame {target} missing from the decoded sequence")
    if target_pos < wanted.size and int(wanted[target_pos]) == idx:
      yield idx, _frame_to_rgb(frame, fallback, short_side)
      while target_pos < wanted.size and int(wanted[target_pos]) == idx:
        target_pos += 1


# ---------------------------------------------------------------------------------------------------------
# decord (optional)


def _pyav_orientation(source, name) -> tuple[int, int, int, int]:
  """Display orientation read with PyAV from the first frame (decord does not expose it)."""
  import av

  container = _open(source, name)
  try:
    stream = _video_stream(container, name, 1)
    for frame in _decoded_frames(container, stream):
      matrix = frame.side_data.get(av.sidedata.sidedata.Type.DISPLAYMATRIX)
      return orientation.from_display_matrix(bytes(matrix)) if matrix is not None else _stream_orientation(stream)
    return _stream_orientation(stream)
  finally:
    container.close()


def _read_decord(source, pick, *, threads, short_side, name, min_frames, on_warning):
  try:
    import decord
  except ImportError as e:
    raise ImportError("decode_backend='decord' needs `pip install decord`") from e
  pyav = dict(threads=threads, short_side=short_side, name=name, min_frames=min_frames, on_warning=on_warning)
  # decord turns some rotated files itself (MP4 quarter turns, through its FFmpeg's `rotate` tag) and not
  # others (flips, Matroska): a file a player would turn is read with PyAV, which turns every case.
  if _pyav_orientation(source, name) != orientation.IDENTITY:
    return _read_pyav(source, pick, **pyav)
  kwargs = {"num_threads": max(int(threads), 1)}
  try:
    reader = decord.VideoReader(io.BytesIO(source) if isinstance(source, bytes) else source, **kwargs)
    num_frames = len(reader)
    if num_frames < max(min_frames, 1):
      raise VideoDecodeError(name, f"too short: {num_frames} frames (need at least {max(min_frames, 1)})")
    indices = _pick_checked(pick, num_frames, name)
    wanted = np.unique(indices)
    batch = reader.get_batch(wanted.tolist()).asnumpy()
  except VideoDecodeError:
    raise
  except (decord.DECORDError, RuntimeError, OSError, ValueError, IndexError) as e:
    # decord cannot sample a cut-off file from its decodable part; PyAV can (and names the failure if not).
    decord_error = f"{type(e).__name__}: {str(e).strip().splitlines()[-1][:200]}"
    notes: list[str] = []
    try:
      result = _read_pyav(source, pick, **{**pyav, "on_warning": notes.append})
    except VideoDecodeError as pyav_error:
      raise VideoDecodeError(name, f"corrupt or unreadable (decord: {decord_error}; PyAV: {pyav_error.reason})") from e
    details = "".join(f"; {note.removeprefix(f'{name}: ')}" for note in notes)
    on_warning(f"{name}: decord failed ({decord_error}), read with PyAV instead{details}")
    return result
  resized = {int(i): _resize_frame(batch[k], short_side) for k, i in enumerate(wanted)}
  frames = np.stack([resized[int(i)] for i in indices])
  return frames, indices, num_frames

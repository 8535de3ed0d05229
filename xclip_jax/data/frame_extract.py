"""One video -> its JPEG frames, as the frame-shard builder stores them.

The video is decoded once, front to back, with PyAV; every kept frame is turned as a player shows it (display
matrix or rotate tag, `decode`/`orientation`), scaled down so that its short side is at most `short_side`
(bilinear, aspect kept; smaller videos are kept as they are) and JPEG-encoded (`jpeg.encode`).

Frame rate: with `fps` > 0 and a source faster than that, the frames are resampled to `fps` by their
timestamps: output frame k is the frame on screen at time k / fps (sample and hold; a quarter of a source frame
of tolerance absorbs rounded timestamps), so variable-frame-rate videos come out evenly spaced in time. A
source at or below `fps` (or `fps` = 0) keeps every frame; the index then records its average rate.

A file cut off after its header keeps the frames that decode (noted, as the video pipeline does); one that
yields no frame, or cannot be opened, raises `decode.VideoDecodeError` naming it.
"""

from __future__ import annotations

import dataclasses
import os
from fractions import Fraction

import numpy as np

from xclip_jax.data import decode, jpeg


@dataclasses.dataclass(frozen=True)
class FrameSettings:
  """How frames are stored; recorded in the index and checked against the config when training."""

  short_side: int = 256  # Frames larger than this are scaled down to it (short side); 0 keeps the decoded size.
  fps: float = 10.0  # At most this many frames per second; 0 keeps every frame.
  quality: int = 90  # JPEG quality.
  chroma: str = "420"  # JPEG chroma subsampling: "420" (as the video had it) or "444" (tiny frames).

  def validate(self) -> None:
    if self.short_side < 0:
      raise ValueError(f"--short-side must be >= 0 (0 keeps the size), got {self.short_side}")
    if self.fps < 0:
      raise ValueError(f"--fps must be >= 0 (0 keeps every frame), got {self.fps}")
    if not 1 <= self.quality <= 100:
      raise ValueError(f"--quality must be in [1, 100], got {self.quality}")
    if self.chroma not in jpeg.CHROMA:
      raise ValueError(f"--chroma must be one of {jpeg.CHROMA}, got {self.chroma!r}")


@dataclasses.dataclass
class ExtractedVideo:
  jpegs: list[bytes]
  fps: float  # Frames per second of the stored frames.
  height: int
  width: int
  decoded: int  # Frames the source decoded to.
  note: str = ""  # "cut off: ..." for a file cut off after its header.


def _scaled(rgb: np.ndarray, short_side: int) -> np.ndarray:
  if short_side and min(rgb.shape[:2]) > short_side:
    return decode._resize_frame(rgb, short_side)
  return rgb


def extract(path: str, settings: FrameSettings, name: str | None = None) -> ExtractedVideo:
  """Decodes `path` and returns its stored frames (see the module docstring)."""
  import av

  name = name or path
  if not os.path.exists(path):
    raise decode.VideoDecodeError(name, "file not found")
  container = decode._open(path, name)
  try:
    stream = decode._video_stream(container, name, 1)
    promised = int(stream.frames or 0)
    rate = decode._frame_rate(stream)
    fallback = decode._stream_orientation(stream)
    target = Fraction(settings.fps).limit_denominator(1001) if settings.fps else None
    resample = target is not None and (rate is None or rate > target)
    cache: dict[int, bytes] = {}  # Encoded frames by decode position (held frames repeat).
    out: list[bytes] = []
    shape = [0, 0]

    def keep(position: int, frame) -> None:
      if position not in cache:
        rgb = _scaled(decode._frame_to_rgb(frame, fallback, None), settings.short_side)
        shape[:] = rgb.shape[:2]
        cache.clear()  # Only the last one can repeat.
        cache[position] = jpeg.encode(rgb, settings.quality, settings.chroma)
      out.append(cache[position])

    tolerance = Fraction(1, 4) / rate if rate else Fraction(0)
    first_time, previous, times = None, None, []
    slot = 0
    for position, frame in enumerate(decode._decoded_frames(container, stream)):
      if frame.pts is not None and frame.time_base is not None:
        t = Fraction(frame.pts) * Fraction(frame.time_base)
      else:
        t = Fraction(position) / rate if rate else Fraction(position)
      first_time = t if first_time is None else first_time
      t -= first_time
      times.append(t)
      if not resample:
        keep(position, frame)
        continue
      if previous is not None:  # The previous frame is on screen until t: it fills every slot before that.
        while slot / target + tolerance < t:
          keep(*previous)
          slot += 1
      previous = (position, frame)
    decoded = len(times)
    if decoded == 0:
      raise decode.VideoDecodeError(name, "no frame decodes")
    if resample:
      spacing = (times[-1] / (decoded - 1)) if decoded > 1 else (1 / rate if rate else 1 / target)
      end = times[-1] + (1 / rate if rate else spacing)
      while slot / target + tolerance < end:  # The last frame holds until the end of the video.
        keep(*previous)
        slot += 1
      if not out:
        keep(*previous)
      fps = float(target)
    else:
      span = float(times[-1]) if decoded > 1 else 0.0
      fps = (decoded - 1) / span if span > 0 else float(rate or 0)
  except decode.VideoDecodeError:
    raise
  except (av.error.FFmpegError, OSError, ValueError, EOFError) as e:
    raise decode.VideoDecodeError(name, f"corrupt or unreadable: {type(e).__name__}: {e}") from e
  finally:
    container.close()
  note = f"cut off: container says {promised} frames, only the first {decoded} decode" if promised > decoded else ""
  return ExtractedVideo(out, round(fps, 6), int(shape[0]), int(shape[1]), decoded, note)

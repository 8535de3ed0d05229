"""JPEG frames: encoding them once (the frame-shard builder) and decoding only what a clip needs.

Decoding is the hot path of `data.source="frames"`: a training clip decodes T JPEGs, so the decoder is the
fastest one measured here (docs/frame_shards.md): simplejpeg (libjpeg-turbo bundled in its wheel), with
Pillow (also libjpeg-turbo in its wheels) as the fallback when simplejpeg is not installed.

Where a stored frame is at least twice as large as needed, it is decoded at 1/2, 1/4 or 1/8 scale in the DCT
domain (libjpeg's scaled IDCT: fewer coefficients, less work), then resized to the exact size. Non power of two
factors (e.g. 7/8) are not used: libjpeg-turbo decodes them more slowly than full size plus a resize.
"""

from __future__ import annotations

import io

import numpy as np

BACKENDS = ("simplejpeg", "pillow")


class JpegError(ValueError):
  """A JPEG frame did not decode (corrupt or not a JPEG)."""


def available_backends() -> list[str]:
  """Decoders importable here, fastest first."""
  out = []
  try:
    import simplejpeg  # noqa: F401

    out.append("simplejpeg")
  except ImportError:
    pass
  out.append("pillow")
  return out


def default_backend() -> str:
  return available_backends()[0]


CHROMA = ("420", "444")


def encode(rgb: np.ndarray, quality: int = 90, chroma: str = "420") -> bytes:
  """uint8 (H, W, 3) RGB -> baseline JPEG.

  chroma "420" halves the colour resolution, as video codecs store it anyway (smaller files); "444" keeps it,
  for tiny frames where JPEG's second subsampling of an already subsampled video shows (the 32 px demo).
  """
  if chroma not in CHROMA:
    raise ValueError(f"chroma must be one of {CHROMA}, got {chroma!r}")
  rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
  try:
    import simplejpeg
  except ImportError:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "JPEG", quality=int(quality), subsampling=f"{chroma[0]}:{chroma[1]}:{chroma[2]}")
    return buffer.getvalue()
  return simplejpeg.encode_jpeg(rgb, quality=int(quality), colorspace="RGB", colorsubsampling=chroma)


def dct_factor(height: int, width: int, min_short: int | None) -> int:
  """Largest of 8, 4, 2, 1 that keeps the short side >= `min_short` (1 if no size is asked for)."""
  if not min_short:
    return 1
  short = min(height, width)
  for factor in (8, 4, 2):
    if -(-short // factor) >= min_short:  # libjpeg rounds scaled sizes up.
      return factor
  return 1


def decode(data: bytes, *, min_short: int | None = None, backend: str | None = None) -> np.ndarray:
  """uint8 (H, W, 3) RGB of a JPEG, decoded at the smallest power-of-two scale with short side >= `min_short`.

  Raises `JpegError` for data that is not a decodable JPEG.
  """
  backend = backend or default_backend()
  try:
    if backend == "simplejpeg":
      import simplejpeg

      height, width, _, _ = simplejpeg.decode_jpeg_header(data)
      factor = dct_factor(height, width, min_short)
      if factor == 1:
        return simplejpeg.decode_jpeg(data, colorspace="RGB")
      return simplejpeg.decode_jpeg(data, colorspace="RGB", min_factor=factor, min_height=-(-height // factor),
                                    min_width=-(-width // factor))
    if backend == "pillow":
      from PIL import Image

      img = Image.open(io.BytesIO(data))
      if img.format != "JPEG":
        raise JpegError(f"not a JPEG ({img.format})")
      factor = dct_factor(img.height, img.width, min_short)
      if factor > 1:
        img.draft("RGB", (-(-img.width // factor), -(-img.height // factor)))
      return np.asarray(img.convert("RGB"))
  except JpegError:
    raise
  except (ValueError, OSError, SyntaxError, TypeError) as e:  # simplejpeg: ValueError; Pillow: OSError and others.
    raise JpegError(f"{type(e).__name__}: {e}") from e
  raise ValueError(f"unknown JPEG backend {backend!r}; choose one of {BACKENDS}")

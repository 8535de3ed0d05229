"""Display orientation of a video: turning stored frames the way players show them.

Phones store portrait video as landscape frames plus a display matrix (MP4/MOV `tkhd` matrix, Matroska
projection; FFmpeg hands it to every decoded frame as DISPLAYMATRIX side data) or, in files written by
older tools, a `rotate` stream tag. Players apply it; a model fed the stored frames sees the world sideways.

FFmpeg's display matrix maps a stored pixel (p, q) (x right, y down) to the displayed one:
p' = a p + c q, q' = b p + d q, with (a, b, c, d) = matrix[0], matrix[1], matrix[3], matrix[4] in 16.16
fixed point. Phones only ever use quarter turns, optionally mirrored; other angles are rounded to the
nearest quarter turn (FFmpeg's command line would rotate by the exact angle, filling the corners).
"""

from __future__ import annotations

import numpy as np

# (a, b, c, d) of the identity: nothing to do.
IDENTITY = (1, 0, 0, 1)


def from_display_matrix(matrix: np.ndarray | bytes) -> tuple[int, int, int, int]:
  """(a, b, c, d), each -1, 0 or 1, of a 3x3 display matrix (9 int32, FFmpeg layout) rounded to quarter turns."""
  m = np.frombuffer(matrix, np.int32) if isinstance(matrix, bytes | bytearray) else np.asarray(matrix, np.int64)
  a, b, c, d = (float(m[i]) / 65536.0 for i in (0, 1, 3, 4))
  if abs(a) + abs(d) >= abs(b) + abs(c):  # Closer to no quarter turn than to one.
    return (1 if a >= 0 else -1, 0, 0, 1 if d >= 0 else -1)
  return (0, 1 if b >= 0 else -1, 1 if c >= 0 else -1, 0)


def from_rotate_tag(tag: str | None) -> tuple[int, int, int, int]:
  """(a, b, c, d) of the legacy `rotate` tag: degrees clockwise, as FFmpeg used to write it."""
  if not tag:
    return IDENTITY
  try:
    degrees = float(tag)
  except ValueError:
    return IDENTITY
  quarter = int(round(degrees / 90.0)) % 4
  # A clockwise turn by k quarters: p' = cos p - sin q, q' = sin p + cos q (y down).
  cos, sin = ((1, 0), (0, 1), (-1, 0), (0, -1))[quarter]
  return (cos, sin, -sin, cos)


def apply(frame: np.ndarray, transform: tuple[int, int, int, int]) -> np.ndarray:
  """Frame (H, W, C) as displayed under `transform` (a, b, c, d) from the functions above."""
  a, b, c, d = transform
  if transform == IDENTITY:
    return frame
  if b == 0 and c == 0:  # p' = a p, q' = d q: mirrors only.
    out = frame[:, ::-1] if a < 0 else frame
    out = out[::-1] if d < 0 else out
  else:  # p' = c q, q' = b p: rows become columns.
    out = frame.transpose(1, 0, 2)
    out = out[::-1] if b < 0 else out
    out = out[:, ::-1] if c < 0 else out
  return np.ascontiguousarray(out)


"""Decoding real H.264 mp4 files written by PyAV: exact frames, seeking, resizing, bytes, bad files."""

import numpy as np
import pytest

from tests import data_fixtures as F
from xclip_jax.data import decode

BACKENDS = ["pyav"] + (["decord"] if decode.decord_available() else [])


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
  d = tmp_path_factory.mktemp("decode")
  return {
      "short": F.write_index_video(str(d / "short.mp4"), 20),
      "long_gop30": F.write_index_video(str(d / "long_gop30.mp4"), 300, 96, 128, fps=30, gop=30),
      "long_default_gop": F.write_index_video(str(d / "long.mp4"), 300, 96, 128, fps=30),
      "long_gop250": F.write_index_video(str(d / "long_gop250.mp4"), 300, 96, 128, fps=30, gop=250),
  }


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ["short", "long_gop30", "long_default_gop", "long_gop250"])
def test_decodes_exactly_the_requested_frames(videos, backend, name):
  path = videos[name]
  want = lambda n: np.array([n - 1, 0, 3, 3, n // 2, n // 2 + 1, n - 1])
  frames, idx, n = decode.read_frames(path, want, backend=backend)
  assert n == (20 if name == "short" else 300)
  assert frames.dtype == np.uint8 and frames.shape[0] == 7 and frames.shape[-1] == 3
  assert [F.decoded_index(f) for f in frames] == idx.tolist() == want(n).tolist()


@pytest.mark.parametrize("name", ["long_gop30", "long_gop250"])
def test_sparse_reads_seek_and_match_sequential(videos, name):
  # Far-apart frames exercise the seek path (keyframes every 30 frames) and its fallback when the keyframe
  # before a target is behind the decoder already (keyframes every 250 frames).
  import av

  with av.open(videos[name]) as c:
    keyframes = sum(1 for p in c.demux(c.streams.video[0]) if p.is_keyframe)
  assert keyframes == {"long_gop30": 10, "long_gop250": 2}[name]
  pick = lambda n: np.array([2, 90, 150, 151, 240, 299])
  frames, idx, _ = decode.read_frames(videos[name], pick)
  assert [F.decoded_index(f) for f in frames] == [2, 90, 150, 151, 240, 299]


@pytest.mark.parametrize("backend", BACKENDS)
def test_short_side_resize_and_bytes_input(videos, backend):
  with open(videos["long_gop30"], "rb") as f:
    data = f.read()
  frames, _, n = decode.read_frames(data, lambda n: np.array([5, 250]), backend=backend, short_side=48)
  assert frames.shape == (2, 48, 64, 3) and n == 300
  assert [F.decoded_index(f) for f in frames] == [5, 250]


def test_bad_inputs_raise_decode_errors_with_the_path(tmp_path, videos):
  with pytest.raises(decode.VideoDecodeError, match="missing.mp4: file not found"):
    decode.read_frames(str(tmp_path / "missing.mp4"), lambda n: np.arange(4))
  corrupt = F.write_corrupt(str(tmp_path / "corrupt.mp4"))
  with pytest.raises(decode.VideoDecodeError, match="corrupt.mp4"):
    decode.read_frames(corrupt, lambda n: np.arange(4))
  truncated = F.write_truncated(videos["long_default_gop"], str(tmp_path / "truncated.mp4"), keep=0.4)
  with pytest.raises(decode.VideoDecodeError, match="truncated.mp4"):
    decode.read_frames(truncated, lambda n: np.array([n - 1]))
  with pytest.raises(decode.VideoDecodeError, match="too short"):
    decode.read_frames(videos["short"], lambda n: np.arange(4), min_frames=32)
  empty = tmp_path / "empty.mp4"
  empty.write_bytes(b"")
  with pytest.raises(decode.VideoDecodeError, match="empty.mp4"):
    decode.read_frames(str(empty), lambda n: np.arange(4))

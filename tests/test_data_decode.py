"""Decoding real H.264 mp4 files written by PyAV: exact frames, seeking, resizing, bytes, bad files."""

import numpy as np
import pytest

from tests import data_fixtures as F
from xclip_jax.data import decode, sampling

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
  # The MP4 index (moov) is written last: a cut file has none and cannot be read at all.
  truncated = F.write_truncated(videos["long_default_gop"], str(tmp_path / "truncated.mp4"), keep=0.4)
  with pytest.raises(decode.VideoDecodeError, match="truncated.mp4"):
    decode.read_frames(truncated, lambda n: np.array([n - 1]))
  with pytest.raises(decode.VideoDecodeError, match="too short"):
    decode.read_frames(videos["short"], lambda n: np.arange(4), min_frames=32)
  empty = tmp_path / "empty.mp4"
  empty.write_bytes(b"")
  with pytest.raises(decode.VideoDecodeError, match="empty.mp4"):
    decode.read_frames(str(empty), lambda n: np.arange(4))


# ---------------------------------------------------------------------------------------------------------
# Phone videos (display rotation) and cut-off downloads.


def _assert_close(got, want):
  assert got.shape == want.shape
  assert np.abs(got.astype(np.int32) - want).mean() < 8  # H.264 ringing only; a wrong turn differs by ~100.


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("ext", ["mp4", "mkv"])
@pytest.mark.parametrize("degrees,hflip", [(90, False), (-90, False), (180, False), (90, True)])
def test_display_matrix_rotation_is_applied(tmp_path, backend, ext, degrees, hflip):
  base = F.marked_frame()
  path = F.write_video(str(tmp_path / f"phone.{ext}"), np.stack([base] * 3), rotation=degrees, hflip=hflip)
  # PyAV's convention: `degrees` counter-clockwise (np.rot90's direction), then the mirror.
  want = np.rot90(base, degrees // 90)
  want = want[:, ::-1] if hflip else want
  frames, _, _ = decode.read_frames(path, lambda n: np.array([0, 2]), backend=backend)
  for frame in frames:
    _assert_close(frame, want)
  resized, _, _ = decode.read_frames(path, lambda n: np.array([1]), backend=backend, short_side=16)
  assert resized.shape[1:3] == ((32, 16) if degrees in (90, -90) else (16, 32))  # Turned, then resized.


@pytest.mark.parametrize("backend", BACKENDS)
def test_legacy_rotate_tag_is_applied(tmp_path, backend):
  base = F.marked_frame()
  path = F.write_video(str(tmp_path / "tagged.mkv"), np.stack([base] * 2), tags={"rotate": "90"})
  frames, _, _ = decode.read_frames(path, lambda n: np.array([0]), backend=backend)
  _assert_close(frames[0], np.rot90(base, -1))  # The tag counts degrees clockwise.


@pytest.mark.parametrize("ext", ["mp4", "mkv"])
def test_unrotated_files_decode_exactly_as_plain_pyav(videos, tmp_path, ext):
  # The decoder's own path (seeks, partial conversion, orientation) against PyAV decoding every frame.
  import av

  rng = np.random.default_rng(0)
  textured = F.write_video(str(tmp_path / f"textured.{ext}"), rng.integers(0, 256, (40, 48, 64, 3), np.uint8))
  for path in (textured, videos["long_gop30"]):
    with av.open(path) as container:
      every = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    pick = lambda n: np.array([0, 3, 3, n // 2, n - 1, 1])
    frames, idx, n = decode.read_frames(path, pick)
    assert n == len(every)
    np.testing.assert_array_equal(frames, np.stack([every[i] for i in idx]))


def _index_frames(n):
  return np.stack([F.index_frame(i, 48, 64) for i in range(n)])


@pytest.mark.parametrize("backend", BACKENDS)
def test_cut_off_mp4_is_sampled_from_the_frames_that_decode(tmp_path, backend):
  # An interrupted download: the index (moov, up front) promises 60 frames, the data stops part-way.
  full = F.write_video(str(tmp_path / "full.mp4"), _index_frames(60), faststart=True, bframes=False)
  cut = F.write_truncated(full, str(tmp_path / "cut.mp4"), keep=0.8)
  warnings = []
  frames, idx, n = decode.read_frames(cut, lambda n: sampling.segment_test(n, 8), backend=backend,
                                      on_warning=warnings.append)
  assert 8 <= n < 60
  assert idx.tolist() == sampling.segment_test(n, 8).tolist()  # Spread over the decodable part ...
  assert [F.decoded_index(f) for f in frames] == idx.tolist()  # ... and really those frames.
  assert len(warnings) == 1 and "cut.mp4" in warnings[0] and "container says 60 frames" in warnings[0]
  assert f"first {n} decode" in warnings[0]


def test_cut_off_with_b_frames_and_matroska(tmp_path):
  # B-frames: frames still in the decoder's reordering buffer at the cut are flushed out, in order.
  full = F.write_video(str(tmp_path / "full.mp4"), _index_frames(60), faststart=True)
  cut = F.write_truncated(full, str(tmp_path / "cut.mp4"), keep=0.8)
  frames, idx, n = decode.read_frames(cut, lambda n: np.arange(n), on_warning=lambda message: None)
  decoded = [F.decoded_index(f) for f in frames]
  assert 8 <= n < 60 and decoded == sorted(set(decoded)) and decoded[: n - 3] == list(range(n - 3))
  # Matroska keeps no frame count: the frames present are the video.
  mkv = F.write_video(str(tmp_path / "full.mkv"), _index_frames(60))
  cut = F.write_truncated(mkv, str(tmp_path / "cut.mkv"), keep=0.6)
  frames, idx, n = decode.read_frames(cut, lambda n: sampling.segment_test(n, 8))
  assert 8 <= n < 60 and [F.decoded_index(f) for f in frames] == idx.tolist()
  nothing = F.write_truncated(mkv, str(tmp_path / "nothing.mkv"), keep=0.25)
  with pytest.raises(decode.VideoDecodeError, match="nothing.mkv: too short: 0 frames"):
    decode.read_frames(nothing, lambda n: np.arange(n))

"""The parts of the search room without a trained model: windows, the temporal table at other frame counts,
the frame stream's bounded memory, batch-independent embeddings, the index store, moments and exact search."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from tests import data_fixtures
from xclip_jax.data import decode, frame_stream, synthetic
from xclip_jax.inference import InferenceModel
from xclip_jax.models import frame_count
from xclip_jax.models.config import variant_config
from xclip_jax.models.xclip import create_model
from xclip_jax.search import embedder, query, store
from xclip_jax.search.windows import plan_windows, window_lengths


@pytest.fixture(scope="module")
def model():
  return InferenceModel(create_model(variant_config("tiny", frames=4, patch_size=16)))


@pytest.fixture(scope="module")
def long_video(tmp_path_factory) -> str:
  """4 minutes at 8 fps, 32 px: 1920 frames of synthetic clips."""
  path = str(tmp_path_factory.mktemp("stream") / "long.mp4")
  rng = np.random.default_rng(0)
  clip = synthetic.render(0, 0, rng, 32, 16, "plain")
  synthetic.write_mp4(path, np.concatenate([np.roll(clip, k, axis=2) for k in range(120)]), fps=8)
  return path


def test_windows_cover_the_video_and_share_frames():
  windows = plan_windows(100, 10.0, 4, window_s=2.0, stride_s=1.0)
  assert [(w.start_s, w.end_s) for w in windows[:2]] == [(0.0, 2.0), (1.0, 3.0)]
  assert windows[-1].end_s == 10.0  # the tail window ends with the video
  assert set(windows[0].frames[2:]) == set(windows[1].frames[:2])  # half a window apart: half the frames shared
  [short] = plan_windows(7, 10.0, 4, window_s=2.0, stride_s=1.0)
  assert (short.start_s, short.end_s) == (0.0, 0.7) and short.frames.max() < 7
  assert window_lengths(None, None) == (8.0, 4.0)
  with pytest.raises(ValueError, match="--window and --stride"):
    window_lengths(0, 1)


def test_temporal_table_resizing_matches_the_references():
  table = np.arange(8, dtype=np.float32)[None, :, None]
  # VideoPrism (jax.image.resize, antialiased), without antialias, and Scenic (ndimage.zoom order 1):
  # moments reference, section 3.
  np.testing.assert_allclose(frame_count.resize_table(table, 4, "antialias")[0, :, 0], [0.714, 2.5, 4.5, 6.286],
                             atol=1e-3)
  np.testing.assert_allclose(frame_count.resize_table(table, 4, "halfpixel")[0, :, 0], [0.5, 2.5, 4.5, 6.5])
  np.testing.assert_allclose(frame_count.resize_table(table, 4, "linear")[0, :, 0], [0, 7 / 3, 14 / 3, 7], rtol=1e-6)
  for method in frame_count.METHODS:
    assert frame_count.resize_table(table, 16, method).shape == (1, 16, 1)
    assert np.array_equal(frame_count.resize_table(table, 8, method), table)


def test_a_model_at_other_frame_counts(model):
  videos = np.random.default_rng(0).normal(size=(2, 8, 32, 32, 3)).astype(np.float32)
  assert model.at_frames(4) is model
  at_8 = model.at_frames(8)
  assert at_8.config.num_frames == 8 and at_8.encode_video(videos).embedding.shape == (2, 32)
  with pytest.raises(ValueError, match="shape"):
    model.encode_video(videos)


def test_the_stream_holds_only_the_frames_still_needed(long_video):
  info = frame_stream.probe(long_video)
  assert (info.num_frames, info.fps) == (1920, 8.0)
  windows = plan_windows(info.num_frames, info.fps, 8, window_s=2.0, stride_s=1.0)
  tracemalloc.start()
  count = sum(1 for _ in embedder._window_views(long_video, windows, 32, []))
  _, peak = tracemalloc.get_traced_memory()
  tracemalloc.stop()
  every_frame = 1920 * 36 * 36 * 3  # the whole video at the decoding size: 7.5 MB
  assert count == len(windows) == 239
  assert peak < every_frame / 10, peak


def test_skipping_unwanted_frames_gives_the_frames_of_a_full_decode(long_video, tmp_path):
  """The stream lets the decoder skip non-reference frames nobody wants; what it yields is what the clip
  decoder (decode.read_frames) gives for the same indices, B-frames included."""
  path = data_fixtures.write_video(str(tmp_path / "b.mp4"), np.stack([data_fixtures.index_frame(i, 48, 64)
                                                                      for i in range(300)]), bframes=True)
  for video, count in ((path, 300), (long_video, 1920)):
    wanted = np.unique(np.random.default_rng(count).integers(0, count, size=count // 12))
    streamed = dict(frame_stream.stream_frames(video, wanted, short_side=36))
    reference, indices, _ = decode.read_frames(video, lambda n, w=wanted: w, short_side=36)
    assert list(streamed) == wanted.tolist()
    assert all(np.array_equal(streamed[int(i)], reference[k]) for k, i in enumerate(indices))


def test_a_cut_off_file_yields_the_frames_that_decode(tmp_path):
  whole = data_fixtures.write_video(str(tmp_path / "whole.mp4"), np.stack([data_fixtures.index_frame(i, 48, 64)
                                                                          for i in range(200)]), faststart=True)
  cut = data_fixtures.write_truncated(whole, str(tmp_path / "cut.mp4"), keep=0.5)
  notes = []
  got = [i for i, _ in frame_stream.stream_frames(cut, np.arange(0, 200, 10), on_warning=notes.append)]
  assert 0 < len(got) < 20 and got == sorted(got) and "cut off" in notes[0]
  with pytest.raises(decode.VideoDecodeError, match="file not found"):
    frame_stream.probe(str(tmp_path / "missing.mp4"))


def test_embeddings_do_not_depend_on_their_place_in_a_batch(model, long_video, tmp_path):
  short = str(tmp_path / "short.mp4")
  synthetic.write_mp4(short, synthetic.render(1, 2, np.random.default_rng(1), 32, 40, "plain"), fps=8)
  broken = data_fixtures.write_corrupt(str(tmp_path / "broken.mp4"))
  head = lambda features: features.embedding
  alone = list(embedder.iter_video_windows(model, [short], window_s=2, stride_s=1, head=head, batch_size=3))
  mixed = list(embedder.iter_video_windows(model, [short, broken, short], window_s=2, stride_s=1, head=head,
                                           batch_size=3))
  assert [r.error is None for r in mixed] == [True, False, True] and len(alone[0].windows) == 4
  assert np.array_equal(alone[0].values, mixed[0].values) and np.array_equal(alone[0].values, mixed[2].values)


def _part(videos, rows=3, dim=4, seed=0):
  rng = np.random.default_rng(seed)
  part = store.Part(videos=[{"video": v, "windows": rows, "duration_s": rows, "warning": None} for v in videos],
                    failed=[])
  for v in videos:
    part.video += [v] * rows
    part.start_s += list(range(rows))
    part.end_s += [s + 2.0 for s in range(rows)]
    part.vectors.append(rng.normal(size=(rows, dim)).astype(np.float16))
  return part


def test_store_parts_reports_and_resumption(model, tmp_path):
  index = str(tmp_path / "idx")
  manifest = store.manifest_for(model, "m", window_s=2.0, stride_s=1.0, frame_method=None)
  manifest["embed_dim"] = 4
  store.open_or_create(index, manifest)
  store.write_part(index, 0, _part(["a", "b"]), "fp")
  second = _part(["c"], seed=1)
  second.failed.append({"video": "d", "error": "cannot open"})
  store.write_part(index, 1, second, "fp")
  (tmp_path / "idx" / "parts" / "p00001-unfinished.npy").write_bytes(b"half")
  assert store.remove_unfinished(index, 1) == ["p00001-unfinished.npy"]
  loaded = store.load(index)
  assert len(loaded) == 9 and loaded.vectors.dtype == np.float16
  report = store.describe(index)
  assert (report["videos"], report["windows"], report["parts"]) == (3, 9, 2)
  assert report["failed"] == [{"video": "d", "error": "cannot open"}]
  with pytest.raises(ValueError, match="window_s=2.0"):
    store.open_or_create(index, {**manifest, "window_s": 4.0})


def test_moments_grow_around_peaks_and_exact_search_agrees_with_numpy():
  scores = np.array([0.0, 0.1, 0.9, 1.0, 0.8, 0.1, 0.0, 0.7, 0.0, 0.0])  # two matches in one video
  vectors = np.stack([scores, np.sqrt(1 - scores**2)], axis=1).astype(np.float16)
  index = store.Index({}, np.array(["v"] * 10, dtype=object), np.arange(10.0), np.arange(10.0) + 2, vectors, [], [])
  moments = query.video_moments(index, "v", np.array([1.0, 0.0], np.float32), floor=0.5)
  assert [(m.start_s, m.end_s, m.best_start_s) for m in moments] == [(2.0, 6.0, 3.0), (7.0, 9.0, 7.0)]
  rng = np.random.default_rng(0)
  many = rng.normal(size=(5000, 32)).astype(np.float16)
  q = rng.normal(size=(3, 32)).astype(np.float32)
  _, rows = query.Searcher(many).search(q, 10)
  expected = np.argsort(-(q @ many.astype(np.float32).T), axis=1)[:, :10]
  assert all(set(a) == set(b) for a, b in zip(rows, expected, strict=True))


def test_the_scale_benchmark_prints_its_figures(capsys):
  from scripts import benchmark_search

  # The search parts at a small size (the indexing part, a minute here, is left to the script's own runs).
  assert benchmark_search.main(["--parts", "exact,approximate", "--windows", "5000", "--approximate-windows",
                                "10000", "--faiss-threads", "1"]) == 0
  out = capsys.readouterr().out
  assert "top-10 equal to numpy's: True" in out and "read back" in out
  assert out.count("recall@10") == 3 and "re-scored" in out

"""Search at scale: exact search over 1M windows, an approximate index over 10M, and indexing speed.

    python scripts/benchmark_search.py --parts exact,approximate,indexing [--windows 1000000]
        [--approximate-windows 10000000] [--checkpoint runs/demo/supervised] [--video-seconds 120]
        [--variant B/32] [--faiss-threads N]

exact: N unit vectors of 512 dims (float16, clustered like embeddings: 1000 centres plus noise) searched with
  `search.query.Searcher` (faiss's exact float16 flat index), one query at a time and 16 at once: ms per query.
approximate: M such vectors, generated in chunks, written as float16 to a memory-mapped .npy (as an index
  stores them) and added to a faiss IVF-PQ index (codes in memory), while the exact top-10 of 100 queries is
  kept in the same pass; recall@10 against it at several nprobe: of the codes alone, and with the top 100
  re-scored exactly from the vectors on disk; ms per query.
indexing: a synthetic 640x360 30 fps H.264 video (textured moving shapes, x264's default keyframe interval)
  indexed with 8 s windows every 4 s by `search.embedder` (stream decode of the frames the windows sample,
  batched model) and by a naive loop (decode every frame with PyAV to RGB, resize it, one model call per
  window), alternately, twice each; video-hours per CPU-hour (process CPU time, all threads), split into
  decode and model time. The model: --checkpoint (default the demo model if runs/demo exists, else a random
  model of the demo's size).
Every figure depends on the machine and its load; the script prints them with the machine's CPU count.
"""

from __future__ import annotations

import collections
import os
import sys
import tempfile
import time

import numpy as np

from xclip_jax import cli

DIM = 512
CENTRES = 1000


def _vectors(count: int, seed: int, centres: np.ndarray) -> np.ndarray:
  rng = np.random.default_rng(seed)
  x = centres[rng.integers(0, len(centres), count)] + rng.standard_normal((count, DIM), np.float32) * 0.04
  return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _centres() -> np.ndarray:
  c = np.random.default_rng(1234).standard_normal((CENTRES, DIM), np.float32)
  return c / np.linalg.norm(c, axis=1, keepdims=True)


def _queries(centres: np.ndarray, count: int) -> np.ndarray:
  return _vectors(count, 99, centres)


def exact(windows: int) -> None:
  from xclip_jax.search.query import Searcher

  centres = _centres()
  started = time.perf_counter()
  vectors = np.concatenate([_vectors(min(1 << 18, windows - s), s, centres).astype(np.float16)
                            for s in range(0, windows, 1 << 18)])
  print(f"exact: {windows} windows x {DIM} float16 ({vectors.nbytes / 2**30:.2f} GiB) generated in "
        f"{time.perf_counter() - started:.1f} s", flush=True)
  with tempfile.TemporaryDirectory() as folder:  # stored as an index (one part, 1000 windows a video), loaded back
    from xclip_jax.search import store

    part = store.Part(videos=[{"video": f"v{v:07d}.mp4", "windows": 1000, "duration_s": 4000.0, "warning": None}
                              for v in range(-(-windows // 1000))], failed=[])
    part.video = [f"v{i // 1000:07d}.mp4" for i in range(windows)]
    part.start_s = [4.0 * (i % 1000) for i in range(windows)]
    part.end_s = [s + 8.0 for s in part.start_s]
    part.vectors = [vectors]
    store.open_or_create(folder, {"format": store.FORMAT, "model": {"checkpoint": "-", "fingerprint": "-"},
                                  "frames": 8, "frame_interpolation": None, "window_s": 8.0, "stride_s": 4.0,
                                  "embed_dim": DIM})
    store.write_part(folder, 0, part, "-")
    del part
    started = time.perf_counter()
    loaded = store.load(folder)
    read = time.perf_counter() - started
    searcher = Searcher(loaded.vectors)
    print(f"exact: the index read back in {read:.1f} s, the search index built in "
          f"{time.perf_counter() - started - read:.1f} s (what `query` does before its first query)", flush=True)
    vectors = loaded.vectors
  queries = _queries(centres, 48)
  searcher.search(queries[:1], 10)  # warm-up
  singles, cpu = [], []
  for q in queries[:32]:
    t, c = time.perf_counter(), time.process_time()
    searcher.search(q[None], 10)
    singles.append(1000 * (time.perf_counter() - t))
    cpu.append(1000 * (time.process_time() - c))
  t = time.perf_counter()
  searcher.search(queries[32:48], 10)
  batch = 1000 * (time.perf_counter() - t) / 16
  check = np.argsort(-(vectors[:, :].astype(np.float32) @ queries[0]))[:10]
  same = set(searcher.search(queries[:1], 10)[1][0]) == set(check)
  print(f"exact: one query {np.median(singles):.1f} ms median (min {min(singles):.1f}, max {max(singles):.1f}) over "
        f"32 queries, {np.median(cpu):.1f} CPU-ms (all threads); 16 queries together {batch:.1f} ms per query; "
        f"top-10 equal to numpy's: {same}", flush=True)


def approximate(windows: int) -> None:
  """IVF-PQ codes in memory, the float16 vectors on disk (an index's .npy, memory-mapped): the top 100 of the
  codes re-scored exactly from the vectors."""
  import faiss

  centres = _centres()
  queries = _queries(centres, 100)
  chunk = 1 << 18
  lists = 4096 if windows >= 4_000_000 else 1024 if windows >= 200_000 else 64
  quantizer = faiss.IndexFlatIP(DIM)
  index = faiss.IndexIVFPQ(quantizer, DIM, lists, 64, 8, faiss.METRIC_INNER_PRODUCT)
  started = time.perf_counter()
  index.train(_vectors(min(windows, max(40 * lists, 10_000)), 777, centres))
  trained = time.perf_counter() - started
  best_scores = np.full((len(queries), 10), -np.inf, np.float32)
  best_ids = np.full((len(queries), 10), -1, np.int64)
  with tempfile.TemporaryDirectory() as folder:
    stored = np.lib.format.open_memmap(os.path.join(folder, "vectors.npy"), mode="w+", dtype=np.float16,
                                       shape=(windows, DIM))
    for start in range(0, windows, chunk):
      x = _vectors(min(chunk, windows - start), start + 1, centres).astype(np.float16)
      stored[start:start + len(x)] = x
      x = x.astype(np.float32)  # what the index holds
      index.add(x)
      scores = queries @ x.T
      top = np.argpartition(-scores, 9, axis=1)[:, :10]
      merged_scores = np.concatenate([best_scores, np.take_along_axis(scores, top, 1)], axis=1)
      merged_ids = np.concatenate([best_ids, top + start], axis=1)
      keep = np.argsort(-merged_scores, axis=1, kind="stable")[:, :10]
      best_scores, best_ids = np.take_along_axis(merged_scores, keep, 1), np.take_along_axis(merged_ids, keep, 1)
      if start // chunk % 8 == 0:
        print(f"  approximate: {start + len(x)}/{windows} added ({time.perf_counter() - started:.0f} s)",
              file=sys.stderr, flush=True)
    stored.flush()
    print(f"approximate: IVF{lists},PQ64 over {windows} windows: trained in {trained:.0f} s, built in "
          f"{time.perf_counter() - started:.0f} s; {index.sa_code_size() * windows / 2**30:.2f} GiB of codes in "
          f"memory, {stored.nbytes / 2**30:.2f} GiB of float16 vectors on disk", flush=True)
    for nprobe in (8, 32, 128):
      index.nprobe = nprobe
      t = time.perf_counter()
      _, ids = index.search(queries, 100)
      searched = time.perf_counter() - t
      reranked = []
      for q, candidates in zip(queries, ids, strict=True):
        candidates = np.sort(candidates[candidates >= 0])
        exact_scores = stored[candidates].astype(np.float32) @ q
        reranked.append(candidates[np.argsort(-exact_scores, kind="stable")[:10]])
      total = time.perf_counter() - t
      raw = np.mean([len(set(a[:10]) & set(b)) / 10 for a, b in zip(ids, best_ids, strict=True)])
      exact_after = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(reranked, best_ids, strict=True)])
      print(f"approximate: nprobe {nprobe:3d}: recall@10 {raw:.3f} from the codes alone "
            f"({1000 * searched / len(queries):.1f} ms per query), {exact_after:.3f} with the top 100 re-scored from "
            f"the vectors on disk ({1000 * total / len(queries):.1f} ms per query; 100 queries)", flush=True)


# ---------------------------------------------------------------------------------------------------------
# Indexing speed.


def _long_video(path: str, seconds: int) -> None:
  import av

  from xclip_jax.data import synthetic

  rng = np.random.default_rng(0)
  with av.open(path, mode="w") as container:
    stream = container.add_stream("libx264", rate=30)
    stream.width, stream.height, stream.pix_fmt = 640, 360, "yuv420p"
    stream.options = {k: v for k, v in synthetic.x264_options().items()}
    for _ in range(seconds // 4):  # 4 s clips of moving shapes, 120 frames each, on a 640x360 canvas
      clip = synthetic.render(int(rng.integers(4)), int(rng.integers(6)), rng, 360, 120, "textured")
      canvas = np.zeros((120, 360, 640, 3), np.uint8)
      canvas[:, :, 140:500] = clip
      for frame in canvas:
        for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
          container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)


def _cpu() -> float:
  return time.process_time()


def _ours(model, path: str, window_s: float, stride_s: float, with_model: bool) -> tuple[float, int]:
  """(CPU seconds, windows) of search.embedder over the video; without the model: its decode side only."""
  from xclip_jax.data import frame_stream
  from xclip_jax.search import embedder, windows

  t = _cpu()
  if with_model:
    [result] = list(embedder.iter_video_windows(model, [path], window_s=window_s, stride_s=stride_s,
                                                head=lambda f: f.embedding, batch_size=16))
    return _cpu() - t, len(result.windows), None
  info = frame_stream.probe(path)
  planned = windows.plan_windows(info.num_frames, info.fps, model.config.num_frames, window_s, stride_s)
  views = [view for _, view in embedder._window_views(path, planned, model.config.image_size, [])]
  return _cpu() - t, len(views), views


def _model_only(model, views: list) -> float:
  """CPU seconds of the model alone on decoded windows, in the embedder's batches of 16."""
  import xclip_jax

  t = _cpu()
  for start in range(0, len(views), 16):
    batch = views[start:start + 16]
    batch = np.stack(batch + [np.zeros_like(batch[0])] * (16 - len(batch)))
    model.encode_video(xclip_jax.normalize_frames(batch)).embedding.block_until_ready()
  return _cpu() - t


def _naive(model, path: str, window_s: float, stride_s: float) -> tuple[float, float, int]:
  """(decode CPU s, model CPU s, windows): every frame decoded to RGB and resized, one model call per window."""
  import av

  import xclip_jax
  from xclip_jax.data import decode, frame_stream
  from xclip_jax.search import views, windows

  info = frame_stream.probe(path)
  planned = windows.plan_windows(info.num_frames, info.fps, model.config.num_frames, window_s, stride_s)
  short, size = views.decode_short_side(model.config.image_size), model.config.image_size
  decode_s = model_s = 0.0
  kept: collections.OrderedDict = collections.OrderedDict()
  k = 0
  t = _cpu()
  with av.open(path) as container:
    for index, frame in enumerate(container.decode(video=0)):
      kept[index] = decode._resize_frame(frame.to_ndarray(format="rgb24"), short)
      while k < len(planned) and planned[k].frames.max() <= index:
        view = views.window_views(np.stack([kept[int(i)] for i in planned[k].frames]), size)
        decode_s += _cpu() - t
        t = _cpu()
        model.encode_video(xclip_jax.normalize_frames(view[None])).embedding.block_until_ready()
        model_s += _cpu() - t
        t = _cpu()
        k += 1
        for old in [i for i in kept if i < (planned[k].frames.min() if k < len(planned) else index + 1)]:
          del kept[old]
  decode_s += _cpu() - t
  return decode_s, model_s, k


def indexing(checkpoint: str | None, seconds: int, variant: str | None = None) -> None:
  import xclip_jax
  from xclip_jax.inference import InferenceModel
  from xclip_jax.models.config import variant_config
  from xclip_jax.models.xclip import create_model

  if checkpoint is None and variant is None and os.path.isdir("runs/demo/supervised"):
    checkpoint = "runs/demo/supervised"
  if variant:
    model = InferenceModel(create_model(variant_config(variant, frames=8)))
    checkpoint = f"random {variant}"
  elif checkpoint:
    model = xclip_jax.load_model(checkpoint)
  else:
    model = InferenceModel(create_model(variant_config(
        "tiny", frames=8, image_size=32, patch_size=8, vision_width=96, vision_layers=3, vision_heads=3,
        vision_mlp_dim=192, text_width=64, text_layers=2, text_heads=2, text_mlp_dim=128, embed_dim=64,
        mit_heads=2, mit_mlp_dim=128, prompt_heads=2)))
  window_s, stride_s = 8.0, 4.0
  with tempfile.TemporaryDirectory() as folder:
    path = os.path.join(folder, "long.mp4")
    started = time.perf_counter()
    _long_video(path, seconds)
    print(f"indexing: {seconds} s video, 640x360 30 fps H.264, written in {time.perf_counter() - started:.0f} s; "
          f"model {checkpoint or 'random, demo size'} ({model.config.num_frames} frames at "
          f"{model.config.image_size} px); "
          f"windows {window_s:g} s every {stride_s:g} s", flush=True)
    _ours(model, path, window_s, stride_s, True)  # compiles the batched program (and warms the caches)
    size = model.config.image_size  # and the naive loop's batch of one
    model.encode_video(xclip_jax.normalize_frames(np.zeros((1, model.config.num_frames, size, size, 3), np.uint8)))
    rates = collections.defaultdict(list)
    for attempt in range(2):
      full, count, _ = _ours(model, path, window_s, stride_s, True)
      decode_only, _, views = _ours(model, path, window_s, stride_s, False)
      model_only = _model_only(model, views)
      naive_decode, naive_model, naive_count = _naive(model, path, window_s, stride_s)
      assert naive_count == count, (naive_count, count)
      rates["ours"].append(seconds / full)
      rates["ours decode"].append(seconds / decode_only)
      rates["ours model"].append(seconds / model_only)
      rates["naive"].append(seconds / (naive_decode + naive_model))
      rates["naive decode"].append(seconds / naive_decode)
      rates["naive model"].append(seconds / naive_model)
      print(f"  run {attempt + 1}: ours {full:.2f} CPU-s ({decode_only:.2f} decode, {model_only:.2f} model alone), "
            f"naive "
            f"{naive_decode + naive_model:.2f} CPU-s ({naive_decode:.2f} decode, {naive_model:.2f} model), "
            f"{count} windows", file=sys.stderr, flush=True)
  for name, values in rates.items():
    print(f"indexing: {name:>13s}: {min(values):8.1f} - {max(values):8.1f} video-hours per CPU-hour", flush=True)
  speedups = [o / n for o, n in zip(rates["ours"], rates["naive"], strict=True)]
  print(f"indexing: ours / naive: {min(speedups):.1f} - {max(speedups):.1f}x", flush=True)


def main(argv: list[str] | None = None) -> int:
  parser = cli.parser("python scripts/benchmark_search.py", __doc__)
  parser.add_argument("--parts", default="exact,approximate,indexing", help="comma-separated parts to run")
  parser.add_argument("--windows", type=int, default=1_000_000, help="windows for exact search (default 1M)")
  parser.add_argument("--approximate-windows", type=int, default=10_000_000, help="windows for IVF-PQ (default 10M)")
  parser.add_argument("--checkpoint", help="model for indexing (default: runs/demo/supervised if present)")
  parser.add_argument("--variant", help="indexing with a random model of this variant (B/32, B/16) instead")
  parser.add_argument("--video-seconds", type=int, default=120, help="length of the indexing video (default 120)")
  parser.add_argument("--faiss-threads", type=int, help="faiss's OpenMP threads (default: one per CPU)")
  args = parser.parse_args(argv)
  if args.faiss_threads:
    import faiss

    faiss.omp_set_num_threads(args.faiss_threads)
  print(f"machine: {os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f} at the start; faiss threads "
        f"{args.faiss_threads or 'default'}", flush=True)
  parts = args.parts.split(",")
  unknown = set(parts) - {"exact", "approximate", "indexing"}
  if unknown:
    parser.error(f"unknown parts {sorted(unknown)}")
  if "exact" in parts:
    exact(args.windows)
  if "approximate" in parts:
    approximate(args.approximate_windows)
  if "indexing" in parts:
    indexing(args.checkpoint, args.video_seconds, args.variant)
  return 0


if __name__ == "__main__":
  cli.run(main, prog="benchmark_search.py")

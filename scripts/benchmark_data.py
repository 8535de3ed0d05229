"""Input-pipeline speed: decode + sample + augment 8 frames at 224 from 10-second 340p mp4 files.

    python scripts/benchmark_data.py [--workdir /tmp/xclip_bench] [--workers 1,2] [--clips 64]

Generates the test videos once (H.264, 454x340, 30 fps, 300 frames, x264 default keyframe interval 250,
as ffmpeg writes when users trim Kinetics clips), then prints clips/s:
  * per worker (one process, no grain): PyAV path, decord path, and the official X-CLIP decord path
    emulated (decord VideoReader(BytesIO(file), num_threads=1), frames read one by one at full resolution,
    short-side resize + the same augmentation) = the per-core baseline;
  * in total through the grain pipeline (`make_train_iterator`, worker processes, batches of 8) for each
    worker count, PyAV and decord side by side.
Numbers depend on the machine: report them with its CPU count.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time

import numpy as np

from xclip_jax.data import config, decode, labels, sampling, synthetic, transforms

T, SIZE, SHORT = 8, 224, 256


def make_videos(workdir: str, n: int, frames: int, width: int, height: int) -> list[str]:
  """Moving-texture videos (content changes every frame, so the encoder does real work)."""
  os.makedirs(workdir, exist_ok=True)
  paths = []
  for k in range(n):
    path = os.path.join(workdir, f"bench_{k:02d}_{width}x{height}_{frames}.mp4")
    if not os.path.exists(path):
      rng = np.random.default_rng(k)
      tex = rng.integers(0, 256, (height // 4 + 1, (width + frames * 2) // 4 + 1, 3), dtype=np.uint8)
      tex = np.repeat(np.repeat(tex, 4, 0), 4, 1)
      clip = np.stack([tex[:height, 2 * i:2 * i + width] for i in range(frames)])
      clip[:, height // 3:height // 3 + 40, :, 0] = (np.arange(frames) * 7 % 256)[:, None, None]
      tmp = path + ".tmp.mp4"
      synthetic.write_mp4(tmp, clip, fps=30, crf=23)
      os.replace(tmp, path)
    paths.append(path)
  return paths


def _augment(frames, rng):
  return transforms.train_clip(frames, rng, input_size=SIZE, short=SHORT)


def clip_ours(path: str, backend: str, rng: np.random.Generator) -> np.ndarray:
  frames, _, _ = decode.read_frames(path, lambda n: sampling.segment_train(n, T, rng), backend=backend,
                                    short_side=SHORT)
  return _augment(frames, rng)


def clip_official(path: str, rng: np.random.Generator) -> np.ndarray:
  """X-CLIP's path: decord on the file bytes, one frame at a time (`container[i]`), full resolution."""
  import decord

  with open(path, "rb") as f:
    reader = decord.VideoReader(io.BytesIO(f.read()), num_threads=1)
  idx = sampling.segment_train(len(reader), T, rng)
  cache = {int(i): reader[int(i)].asnumpy() for i in np.unique(idx)}
  frames = np.stack([cache[int(i)] for i in idx])
  return _augment(frames, rng)


def per_worker(fn, paths, clips: int) -> tuple[float, float]:
  """(clips per CPU-second of this process, clips per wall-second): the first is robust to other load."""
  rng = np.random.default_rng(0)
  fn(paths[0], rng)  # Warm-up (imports, codec init).
  cpu, wall = time.process_time(), time.perf_counter()
  for i in range(clips):
    out = fn(paths[i % len(paths)], rng)
    assert out.shape == (T, SIZE, SIZE, 3) and out.dtype == np.uint8
  return clips / (time.process_time() - cpu), clips / (time.perf_counter() - wall)


def pipeline_total(paths, workdir: str, backend: str, workers: int, clips: int, batch: int = 8) -> float:
  from xclip_jax.data import pipeline

  list_path = os.path.join(workdir, "bench_list.txt")
  labels.write_label_list([(p, 0) for p in paths], list_path)
  csv_path = os.path.join(workdir, "bench_classes.csv")
  labels.write_class_names(["bench"], csv_path)
  cfg = config.data_config(source="files", train_list=list_path, class_names=csv_path, num_frames=T, input_size=SIZE,
                           batch_size=batch, num_workers=workers, prefetch=2, decode_backend=backend)
  it = pipeline.make_train_iterator(cfg, process_index=0, process_count=1)
  # Warm-up: worker start-up, then drain the prefetch buffers so that timing sees the steady state.
  for _ in range(max(workers, 1) * 3 + 1):
    next(it)
  n_batches = max(clips // batch, 1)
  start = time.perf_counter()
  for _ in range(n_batches):
    b = next(it)
  assert b["video"].shape == (batch, T, SIZE, SIZE, 3)
  return n_batches * batch / (time.perf_counter() - start)


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--workdir", default="/tmp/xclip_bench")
  p.add_argument("--videos", type=int, default=8)
  p.add_argument("--clips", type=int, default=64, help="clips timed per measurement")
  p.add_argument("--workers", default="1,2", help="grain worker counts for the total rate")
  p.add_argument("--quick", action="store_true", help="tiny videos and counts (smoke test)")
  a = p.parse_args(argv)
  frames, width, height = (300, 454, 340) if not a.quick else (30, 320, 240)
  clips = a.clips if not a.quick else 4
  paths = make_videos(a.workdir, a.videos if not a.quick else 2, frames, width, height)
  have_decord = decode.decord_available()
  load = os.getloadavg()[0]
  print(f"{len(paths)} videos {width}x{height}, {frames} frames at 30 fps; {T} frames -> {SIZE}x{SIZE} train "
        f"augmentation; {os.cpu_count()} CPUs, load average {load:.1f}")
  print("per worker (one process): clips per CPU-second | clips per wall-second")
  rows = [("pyav", lambda q, r: clip_ours(q, "pyav", r))]
  if have_decord:
    rows += [("decord", lambda q, r: clip_ours(q, "decord", r)), ("official decord path (baseline)", clip_official)]
  for name, fn in rows:
    cpu_rate, wall_rate = per_worker(fn, paths, clips)
    print(f"  {name:32s} {cpu_rate:7.2f} | {wall_rate:7.2f}", flush=True)
  if not have_decord:
    print("  decord: not installed (pip install decord); the official-path baseline needs it too")
  print("total through grain (clips per wall-second, batches of 8):")
  for w in [int(x) for x in a.workers.split(",")]:
    row = f"  {w} worker(s): pyav {pipeline_total(paths, a.workdir, 'pyav', w, clips):7.1f}"
    row += (f"   decord {pipeline_total(paths, a.workdir, 'decord', w, clips):7.1f}" if have_decord
            else "   decord: not installed")
    print(row, flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())

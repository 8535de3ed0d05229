"""Prediction throughput: does decoding ahead on host threads keep the device busy?

    python scripts/benchmark_predict.py [--variant tiny|B/32|B/16] [--videos 24] [--batch-size 8] [--workers 1,2]

Generates 10-second 340p H.264 files once (as scripts/benchmark_data.py), builds a randomly initialised
model of the variant (8 frames; the tiny one at 32 px), then prints videos/s for
  * decode only: the host side of `video_files.classify_videos` (decode, sample, resize, crop) on N threads;
  * device only: the model on ready batches (normalise + video tower + logits), input already decoded;
  * the pipeline: `classify_videos` itself (the first, compiling batch excluded).
If decoding overlaps the device, the pipeline runs at about min(decode, device); run one after the other it
would be 1 / (1/decode + 1/device) (printed as "serial"). Numbers depend on the machine and its load.
"""

from __future__ import annotations

import concurrent.futures
import importlib.util
import os
import sys
import time

import numpy as np

from xclip_jax import cli

HERE = os.path.dirname(os.path.abspath(__file__))


def _make_videos(workdir: str, n: int) -> list[str]:
  spec = importlib.util.spec_from_file_location("benchmark_data", os.path.join(HERE, "benchmark_data.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.make_videos(workdir, n, frames=300, width=454, height=340)


def main(argv: list[str] | None = None) -> int:
  parser = cli.parser(description=__doc__)
  parser.add_argument("--variant", default="tiny")
  parser.add_argument("--videos", type=int, default=24)
  parser.add_argument("--batch-size", type=int, default=8)
  parser.add_argument("--workers", default="1,2", help="comma-separated decoding thread counts")
  parser.add_argument("--clips", type=int, default=1)
  parser.add_argument("--crops", type=int, default=1)
  parser.add_argument("--dtype", default="float32")
  parser.add_argument("--workdir", default="/tmp/xclip_bench")
  args = parser.parse_args(argv)

  import jax

  from xclip_jax.evaluation import video_files
  from xclip_jax.inference import InferenceModel, normalize_frames
  from xclip_jax.models.config import variant_config
  from xclip_jax.models.xclip import create_model
  from xclip_jax.tokenizer import tokenize

  overrides = {"image_size": 32} if args.variant == "tiny" else {}
  config = variant_config(args.variant, frames=8, dtype=args.dtype, **overrides)
  model = InferenceModel(create_model(config, seed=0))
  videos = _make_videos(args.workdir, args.videos)
  classes = [f"class {k}" for k in range(16)]
  frames, size, views = config.num_frames, config.image_size, args.clips * args.crops
  print(f"{jax.devices()[0].device_kind}; {os.cpu_count()} CPUs; {args.variant} at {size} px, {frames} frames, "
        f"{views} view(s)/video, batch {args.batch_size}, {len(videos)} videos of 454x340, 300 frames")

  # Compile (first batch) once; every later measurement reuses the program.
  video_files.classify_videos(model, videos[: args.batch_size], classes, clips=args.clips, crops=args.crops,
                              batch_size=args.batch_size, progress=False)
  text = model.encode_text(tokenize(classes))
  batch = np.random.default_rng(0).integers(0, 256, (args.batch_size * views, frames, size, size, 3), np.uint8)
  start, rounds = time.perf_counter(), max(2, len(videos) // args.batch_size)
  for _ in range(rounds):
    np.asarray(jax.nn.softmax(model.logits(model.encode_video(normalize_frames(batch)), text), axis=-1))
  device = rounds * args.batch_size / (time.perf_counter() - start)

  print(f"{'workers':>8} {'decode only':>12} {'device only':>12} {'pipeline':>10} {'serial':>8}  (videos/s)")
  for workers in [int(w) for w in args.workers.split(",")]:
    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
      list(pool.map(lambda p: video_files.video_views(p, frames=frames, size=size, clips=args.clips,
                                                      crops=args.crops), videos))
    decode = len(videos) / (time.perf_counter() - start)
    start = time.perf_counter()
    video_files.classify_videos(model, videos, classes, clips=args.clips, crops=args.crops,
                                batch_size=args.batch_size, workers=workers, progress=False)
    pipeline = len(videos) / (time.perf_counter() - start)
    serial = 1 / (1 / decode + 1 / device)
    print(f"{workers:>8} {decode:>12.2f} {device:>12.2f} {pipeline:>10.2f} {serial:>8.2f}")
  return 0


if __name__ == "__main__":
  sys.exit(main())

"""Top-1 of a trained model run at other frame counts, for each way of resizing the MIT's temporal table.

    python scripts/frame_count_table.py --checkpoint runs/demo/supervised --data runs/demo/data/supervised

Reads `classes.csv` and `val.txt` (official formats) under --data, classifies every listed video with
`video_files.classify_videos` (predict's views: one clip, one centre crop) at T/2, T and 2T frames (T: the
model's), the model's temporal position table resized by each method of xclip_jax/models/frame_count.py,
and prints a Markdown table of top-1 (%) with the number of videos.
"""

from __future__ import annotations

import os
import sys
import time

from xclip_jax import cli


def main(argv: list[str] | None = None) -> int:
  parser = cli.parser("python scripts/frame_count_table.py", __doc__)
  parser.add_argument("--checkpoint", required=True, help="anything xclip_jax.load_model loads")
  parser.add_argument("--data", required=True, help="folder with classes.csv and val.txt (paths relative to "
                                                    "its parent)")
  parser.add_argument("--frames", help="comma-separated frame counts (default: T/2, T, 2T)")
  parser.add_argument("--batch-size", type=int, default=16, help="videos per batch (default 16)")
  args = parser.parse_args(argv)

  import numpy as np

  import xclip_jax
  from xclip_jax.data import labels
  from xclip_jax.evaluation import video_files
  from xclip_jax.models import frame_count

  names = labels.read_class_names(os.path.join(args.data, "classes.csv"))
  records = labels.read_label_list(os.path.join(args.data, "val.txt"), root=os.path.dirname(args.data.rstrip("/")),
                                   num_classes=len(names))
  truth = np.array([r.label for r in records])
  model = xclip_jax.load_model(args.checkpoint)
  trained = model.config.num_frames
  counts = [int(f) for f in args.frames.split(",")] if args.frames else [max(1, trained // 2), trained, 2 * trained]
  table = {}
  for method in frame_count.METHODS:
    for frames in counts:
      if frames == trained and trained in {f for (m, f) in table}:
        table[(method, frames)] = table[(frame_count.METHODS[0], frames)]  # the trained table: no resizing
        continue
      started = time.perf_counter()
      results = video_files.classify_videos(model.at_frames(frames, method), [r.path for r in records], names,
                                            batch_size=args.batch_size, progress=False)
      failed = [r.path for r in results if not r.ok]
      if failed:
        print(f"frame_count_table: {len(failed)} videos failed, e.g. {failed[0]}", file=sys.stderr)
        return 1
      predicted = np.array([int(np.argmax(r.probabilities)) for r in results])
      table[(method, frames)] = 100.0 * float(np.mean(predicted == truth))
      print(f"  {method:>9s} at {frames:2d} frames: {table[(method, frames)]:.2f}% "
            f"({time.perf_counter() - started:.1f} s)", file=sys.stderr)
  print(f"\ntop-1 (%) of {len(records)} videos, model trained at {trained} frames ({args.checkpoint})\n")
  print("| method | " + " | ".join(f"{f} frames" for f in counts) + " |")
  print("|---|" + "---|" * len(counts))
  for method in frame_count.METHODS:
    print(f"| {method} | " + " | ".join(f"{table[(method, f)]:.2f}" for f in counts) + " |")
  return 0


if __name__ == "__main__":
  cli.run(main, prog="frame_count_table.py")

"""Looks at one batch: a contact sheet (one row per clip: its frames and class name) and batch statistics.

    python -m xclip_jax.data.preview --config configs/demo.py --split train --out preview.png
    python -m xclip_jax.data.preview --config my_config.py --split val --out val.png --config.eval.final_crops=3

`--config` is any ml_collections config file whose `config.data` is a data block (`--config.data.X=...`
overrides fields). For the synthetic source, a missing dataset folder is generated first (and the command
that does it is printed). For the val split the first view of each video is shown.
"""

from __future__ import annotations

import os
import time

import numpy as np
from PIL import Image, ImageDraw

from xclip_jax import cli
from xclip_jax.data import pipeline, synthetic
from xclip_jax.data.config import data_config


def contact_sheet(videos: np.ndarray, captions: list[str], *, scale: int = 1, caption_width: int = 220) -> Image.Image:
  """One row per clip: caption on the left, then its T frames. videos: (n, T, H, W, 3) uint8."""
  n, t, h, w, _ = videos.shape
  h2, w2 = h * scale, w * scale
  sheet = Image.new("RGB", (caption_width + t * w2, n * h2), (255, 255, 255))
  draw = ImageDraw.Draw(sheet)
  for i in range(n):
    draw.text((4, i * h2 + 4), captions[i], fill=(0, 0, 0))
    for j in range(t):
      frame = Image.fromarray(videos[i, j])
      if scale != 1:
        frame = frame.resize((w2, h2), Image.NEAREST)
      sheet.paste(frame, (caption_width + j * w2, i * h2))
  return sheet


def ensure_synthetic(data_cfg) -> None:
  """Generates the synthetic dataset if the config points to a missing one."""
  if data_cfg.source != "synthetic" or os.path.exists(os.path.join(data_cfg.synthetic_dir, "manifest.json")):
    return
  print(f"synthetic data missing; running: python -m xclip_jax.data.synthetic --out {data_cfg.synthetic_dir}")
  synthetic.generate(data_cfg.synthetic_dir)


def preview(config, split: str, out: str, rows: int = 8, num_workers: int = 0) -> dict:
  """Writes the contact sheet of one batch and returns its statistics."""
  data_cfg = config.data.copy_and_resolve_references()
  data_cfg.num_workers = num_workers
  if data_cfg.source == "synthetic" and not data_cfg.synthetic_dir:  # the demo's "under its workdir"
    data_cfg.synthetic_dir = data_config().synthetic_dir  # runs/demo/data, where `make demo` puts it
  ensure_synthetic(data_cfg)
  start = time.time()
  if split == "train":
    it = pipeline.make_train_iterator(data_cfg, process_index=0, process_count=1)
    batch = next(it)
    videos = batch["video"]
    bad = it.bad_videos
  else:
    views = config.get("eval", {})  # a run config's final-evaluation views; a data-only config: one view
    it = pipeline.make_eval_iterator(data_cfg, clips=int(views.get("final_clips", 1)),
                                     crops=int(views.get("final_crops", 1)), process_index=0, process_count=1)
    batch = next(it)
    keep = batch["valid"]
    batch = {k: v[keep] for k, v in batch.items()}
    videos = batch["video"][:, 0]
    bad = len(it.decode_failures)
  seconds = time.time() - start
  names = it.source.class_names
  n = min(rows, len(videos))
  captions = [f"{names[int(label)]} ({int(label)})\n#{int(idx)}" for label, idx in zip(batch["label"][:n],
                                                                                       batch["index"][:n], strict=True)]
  scale = max(1, 96 // videos.shape[2])
  sheet = contact_sheet(videos[:n], captions, scale=scale)
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  sheet.save(out)
  stats = pipeline.describe_batch(batch)
  stats.update({"seconds_first_batch": round(seconds, 2), "bad_videos": bad, "num_classes": len(names),
                "videos_in_split": len(it.source), "source": data_cfg.source, "out": out})
  return stats


def _parser() -> cli.Parser:
  parser = cli.parser("python -m xclip_jax.data.preview", __doc__)
  cli.add_config(parser, help="config file with a `data` block (configs/<name>.py[:args]); override its fields "
                              "with --config.data.a=VALUE")
  parser.add_argument("--split", choices=("train", "val"), default="train", help="which split to show")
  parser.add_argument("--out", default="preview.png", help="where to write the contact sheet (PNG)")
  parser.add_argument("--rows", type=int, default=8, help="clips shown (at most one batch)")
  parser.add_argument("--num-workers", type=int, default=0,
                      help="override data.num_workers (0: decode in this process)")
  return parser


def main(argv: list[str] | None = None) -> int:
  parser = _parser()
  args = parser.parse_args(argv)
  cli.require(parser, args, "config")
  if "data" not in args.config:
    parser.error(f"--config={args.config_file} has no `data` block")
  stats = preview(args.config, args.split, args.out, args.rows, args.num_workers)
  for k, v in stats.items():
    print(f"{k}: {v}")
  return 0


if __name__ == "__main__":
  cli.run(main, prog="xclip_jax.data.preview")

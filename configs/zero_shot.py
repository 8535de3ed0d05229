r"""Zero-shot evaluation (paper §4.3) of a trained X-CLIP on classes it never saw.

  python -m xclip_jax.main --config configs/zero_shot.py:dataset=ucf101 --workdir runs/zs_ucf \
      --config.init_from.path=zero --config.data.root=/data/ucf101/videos \
      --config.zero_shot.split_dir=/data/ucf101/ucfTrainTestlist

HMDB-51 / UCF-101: the three official test splits, mean ± std of top-1. Kinetics-600: 3 rounds of 160 of the
220 classes new to Kinetics-400 (--config.zero_shot.k600_val_list=...). The official zero-shot model is
B/16 with 32 frames trained 10 epochs on K400 (configs/kinetics.py:variant=B/16,frames=32 with
--config.train.epochs=10); the released one is init_from=zero (or
microsoft/xclip-base-patch16-zero-shot, the same model through HF). Arguments: dataset (hmdb51, ucf101, k600),
source (files, tfds: ucf101 only).
"""

from __future__ import annotations

import ml_collections

from xclip_jax import run_config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  args = run_config.parse_arg(arg, dataset="ucf101", source="files", frames=32, shrink=False)
  c = run_config.base_config()
  c.protocol = "zero_shot"
  c.mode = "evaluate"
  c.model.variant = "B/16"
  c.model.frames = args.frames
  c.model.dtype = "float32"
  c.data.eval_batch_size = 8
  c.data.num_workers = 8
  c.eval.final_clips, c.eval.final_crops = 1, 1  # single view, as the paper
  c.zero_shot = ml_collections.ConfigDict()
  c.zero_shot.dataset = args.dataset  # hmdb51, ucf101 or k600
  c.zero_shot.source = args.source  # "files" (official split files + videos on disk) or "tfds" (ucf101)
  c.zero_shot.split_dir = ""  # Folder of the official split files (hmdb51, ucf101 with source=files).
  c.zero_shot.splits = (1, 2, 3)
  c.zero_shot.k600_val_list = ""  # K600 validation list, official format with K600 label ids.
  c.zero_shot.seed = 0  # Seed of the 160-class draws.
  c.zero_shot.rounds = 3
  c.zero_shot.k600_classes = 160
  if args.shrink:
    run_config.shrink(c)
  return c

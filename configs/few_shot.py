r"""Few-shot X-CLIP (paper §4.4): K videos per class of HMDB-51 / UCF-101, trained from CLIP, split 1.

  python -m xclip_jax.main --config configs/few_shot.py:dataset=hmdb51,shots=2 --workdir runs/hmdb_2shot \
      --config.init_from.path=openai:ViT-B/16 --config.data.root=/data/hmdb51/videos \
      --config.few_shot.split_dir=/data/hmdb51/testTrainMulti_7030_splits

Official configs hmdb51/16_32.yaml, ucf101/16_32.yaml: B/16, 32 frames, batch 64, 50 epochs, lr 2e-6,
single-view test on split 1. Arguments: dataset (hmdb51, ucf101), shots (2, 4, 8, 16), seed (K-shot draw),
shrink.
"""

from __future__ import annotations

import ml_collections

from xclip_jax import run_config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  args = run_config.parse_arg(arg, dataset="hmdb51", shots=2, seed=0, shrink=False)
  if args.dataset not in ("hmdb51", "ucf101"):
    raise ValueError(f"dataset must be hmdb51 or ucf101, got {args.dataset!r}")
  c = run_config.base_config()
  c.protocol = "few_shot"
  c.model.variant = "B/16"
  c.model.frames = 32
  c.few_shot = ml_collections.ConfigDict()
  c.few_shot.dataset = args.dataset
  c.few_shot.split = 1  # Paper: evaluated on the first test split.
  # Folder of the official split files (UCF: ucfTrainTestlist/, HMDB: testTrainMulti_7030_splits/). Empty:
  # give data.train_list / data.val_list (official label-list format) yourself.
  c.few_shot.split_dir = ""
  c.data.source = "files"
  c.data.class_names = {"hmdb51": "hmdb_51", "ucf101": "ucf_101"}[args.dataset]
  c.data.k_shot = args.shots  # K training videos per class, drawn with k_shot_seed.
  c.data.k_shot_seed = args.seed
  c.data.batch_size = 64  # Official 8 GPUs x 4 x accumulation 2.
  c.data.eval_batch_size = 8
  c.data.num_workers = 8
  c.train.epochs = 50
  c.train.warmup_epochs = 5
  c.train.lr = 2e-6
  c.eval.final_clips, c.eval.final_crops = 1, 1  # single view
  c.eval.every_steps = -1  # K-shot epochs are a few steps: evaluate at the end only.
  c.checkpoint.every_steps = 200
  if args.shrink:
    run_config.shrink(c)
    c.data.k_shot = min(c.data.k_shot, 2)
  return c

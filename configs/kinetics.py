r"""Fully supervised X-CLIP on Kinetics-400/600, mirroring the official configs/k400/*.yaml and k600/*.yaml.

  python -m xclip_jax.main --config configs/kinetics.py:variant=B/16,frames=8 --workdir runs/k400_b16_8 \
      --config.init_from.path=openai:ViT-B/16 \
      --config.data.root=/data/k400/videos --config.data.train_list=/data/k400/train.txt \
      --config.data.val_list=/data/k400/val.txt

Arguments: variant (B/32, B/16, L/14, L/14@336), frames (8, 16, 32), dataset (k400, k600), shrink (true: a
short smoke run for small machines). init_from names the CLIP to start from (openai:ViT-B/32, openai:ViT-B/16,
openai:ViT-L/14, openai:ViT-L/14@336px; fetched and converted with model.frames frames once), or a converted
directory (scripts/convert_checkpoint.py).
"""

from __future__ import annotations

import ml_collections

from xclip_jax import run_config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  args = run_config.parse_arg(arg, variant="B/16", frames=8, dataset="k400", shrink=False)
  if args.dataset not in ("k400", "k600"):
    raise ValueError(f"dataset must be k400 or k600, got {args.dataset!r}")
  c = run_config.base_config()
  c.protocol = "supervised"
  c.model.variant = args.variant
  c.model.frames = args.frames
  # Official USE_CHECKPOINT for the 336px model (activation memory); costs ~30% more compute.
  c.model.remat = args.variant == "L/14@336"

  c.data.source = "files"  # or "arrayrecord" (scripts/build_arrayrecord.py) with data.arrayrecord.{train,val}
  c.data.class_names = {"k400": "kinetics_400", "k600": "kinetics_600"}[args.dataset]  # shipped CSVs
  c.data.input_size = 336 if args.variant.endswith("@336") else 224
  c.data.batch_size = 256  # Global batch per optimizer step (official: 8 GPUs x per-GPU batch x accumulation).
  c.data.eval_batch_size = 16
  c.data.num_workers = 8
  # Micro-batches per step when 256 clips do not fit in device memory at once. The official configs run
  # 8 GPUs x per-GPU batch x accumulation = 256: B/32 and B/16-8 8x4, B/16-16/32 and L/14 4x8, L/14@336 1x32.
  c.train.grad_accum_steps = 1
  c.train.epochs = 30
  c.train.warmup_epochs = 5
  c.train.lr = 8e-6
  c.eval.final_clips, c.eval.final_crops = 4, 3  # paper: 4 x 3 views
  c.checkpoint.every_steps = 1000
  if args.shrink:
    run_config.shrink(c)
  return c

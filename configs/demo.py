r"""The embedded demo (`make demo`): a tiny X-CLIP trained from scratch on synthetic moving shapes, on CPU.

  python -m xclip_jax.main --config configs/demo.py --workdir runs/demo

Generates the dataset (python -m xclip_jax.data.synthetic, plain style, 32 px) if `data.synthetic_dir`
(default: WORKDIR/data) lacks it, then:
1. supervised: trains on 16 shape x motion classes (900 steps, about 4 minutes on 2 CPU cores) and
   evaluates 4 clips per validation video;
2. zero-shot: the same model on 4 held-out compositions ("circle moving left", ...) whose words were all
   seen in training but never together;
3. few-shot: fine-tunes on K=2 videos of each of 4 other held-out compositions, evaluates on their val set;
4. writes runs/demo/report.png: example validation videos with their top-3 classes, and the training curves.
There is no CLIP to start from here, so the text tower is trained too (train.train_text), with a from-scratch
learning rate and no augmentation. docs/demo.md has the measured results.
Arguments: shrink (true: a one-minute smoke run), seed (data, initialisation, data order and few-shot draw;
the data of another seed in data.synthetic_dir is refused; scripts/demo_seeds.py runs several).
The workdir may be a bucket (--workdir gs://bucket/runs/demo, docs/cloud.md): the data then goes there too.
"""

from __future__ import annotations

import ml_collections

from xclip_jax import run_config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  args = run_config.parse_arg(arg, shrink=False, seed=0)
  c = run_config.base_config()
  c.protocol = "demo"
  # Tiny model: 32 px frames, 8 px patches (16 per frame), 8 frames; float32 (CPU; bf16 is no faster there).
  c.model.variant = "tiny"
  c.model.frames = 8
  c.model.dtype = "float32"
  c.model.overrides = ml_collections.ConfigDict(dict(
      image_size=32, patch_size=8, vision_width=96, vision_layers=3, vision_heads=3, vision_mlp_dim=192,
      text_width=64, text_layers=2, text_heads=2, text_mlp_dim=128, embed_dim=64, mit_heads=2, mit_mlp_dim=128,
      prompt_heads=2,
      # Position embeddings (spatial in the ViT, temporal in the MIT) start at the scale of the tokens they are
      # added to, not at the official init for fine-tuning a pretrained CLIP (0.1 and 0.02 here): motion is
      # where the shape is over time, and from such small starts it is learned late, by luck or not at all
      # (docs/demo.md, "Why it used to depend on luck"). The MIT's embedding is the model's only signal of frame order.
      video_position_init_std=1.0))

  # The synthetic videos, read as frame shards (built once next to them, in <synthetic_dir>/frames): decoding
  # H.264 took 130-230 ms of the 230-330 ms steps on 2 CPU cores, 8 small JPEGs a clip take much less
  # (docs/frame_shards.md). Frames keep the videos' 32 px and all 16 frames. source="synthetic" reads the MP4s.
  c.data.source = "frames"
  c.data.frames.short_side = 0
  c.data.frames.fps = 0.0
  c.data.synthetic_dir = ""  # "": WORKDIR/data (demo.demo_data_dir), wherever the workdir is
  c.data.synthetic_task = "supervised"
  c.data.input_size = 32  # The synthetic videos are 32 x 32.
  c.data.resize_short = 32  # No up-scaling before the crop (256/224 is for real videos).
  # Augmentation off: a horizontal flip turns "moving left" into "moving right" (a label-changing transform
  # here), crops can cut a 32 px shape out of view, and colour changes only slow a from-scratch run down.
  c.data.augment.flip = 0.0
  c.data.augment.color_jitter = 0.0
  c.data.augment.gray_scale = 0.0
  c.data.augment.scales = (1.0,)
  c.data.batch_size = 32
  c.data.eval_batch_size = 32
  c.data.num_workers = 1  # One decoding process keeps up with training on 2 cores (~200 clips/s vs ~120).
  c.data.seed = args.seed

  c.train.total_steps = 900  # 18 epochs of 1600 videos.
  c.train.epochs = 10  # only sets the warm-up share when total_steps is given: 1/10 of the steps
  c.train.warmup_epochs = 1
  c.train.lr = 1e-3  # From scratch: far above the fine-tuning lr of the paper.
  # One lr for all: every module is new here. A higher lr on the message tokens, MIT and prompts (the
  # fine-tuning recipe's 10x; 5x = 5e-3 too) keeps the model from telling horizontal from vertical motion.
  c.train.new_module_lr_multiplier = 1.0
  c.train.weight_decay = 0.05
  c.train.train_text = True  # No pretrained text tower to freeze.
  c.train.mixup = 0.0  # Small data, short run: mixup/cutmix and label smoothing slow convergence here.
  c.train.label_smoothing = 0.0
  c.train.seed = args.seed

  c.eval.every_steps = 150
  c.eval.final_clips, c.eval.final_crops = 4, 1  # 3 crops of a 32 px frame at 32 px would be one crop 3 times.
  c.checkpoint.every_steps = 300
  c.log_every_steps = 50
  c.mesh = ml_collections.ConfigDict({"data": -1, "fsdp": 1, "tensor": 1})

  c.demo = ml_collections.ConfigDict()
  # python -m xclip_jax.data.synthetic flags (see `synthetic.generate`): plain style, 100 training videos
  # per class (1600 + 320 others, about 15 s to generate).
  c.demo.synthetic = ml_collections.ConfigDict(dict(
      seed=args.seed, size=32, frames=16, style="plain", train_per_class=100, val_per_class=10, zero_shot_per_class=10,
      few_shot_train_per_class=20))
  # Per-stage overrides of the blocks above.
  c.demo.supervised = ml_collections.ConfigDict({"data": {"synthetic_task": "supervised"}})
  c.demo.zero_shot = ml_collections.ConfigDict({"data": {"synthetic_task": "zero_shot"}})
  c.demo.few_shot = ml_collections.ConfigDict({
      "data": {"synthetic_task": "few_shot", "k_shot": 2, "k_shot_seed": args.seed, "batch_size": 8},
      "train": {"total_steps": 60, "lr": 2e-4, "warmup_epochs": 0},
      "eval": {"every_steps": -1},
      "log_every_steps": 10,
  })
  # Example videos per evaluation in runs/demo/report.png (with the training curves).
  c.demo.report_examples = ml_collections.ConfigDict(dict(supervised=6, zero_shot=3, few_shot=3))
  if args.shrink:
    c.train.total_steps = 20
    c.eval.every_steps = 10
    c.checkpoint.every_steps = 10
    c.log_every_steps = 5
    c.eval.final_clips, c.eval.final_crops = 1, 1
    c.demo.few_shot.train.total_steps = 4
    c.demo.few_shot.log_every_steps = 2
  return c

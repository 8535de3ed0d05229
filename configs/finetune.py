r"""Your own videos: fine-tune (or evaluate) a released X-CLIP on a folder of class sub-folders.

  python -m xclip_jax.main --config configs/finetune.py:variant=B/16,frames=8 --workdir runs/my_videos \
      --config.data.root=my_videos

reads my_videos/{train,val,test}/<class name>/<videos> (data.source="folders"; class names from the folder
names, as words: "ApplyEyeMakeup" -> "apply eye makeup"), fine-tunes the released Kinetics-400 model on
train/, evaluates on val/ once per epoch (if present) and finally on test/ (else val/) with 4 x 3 views, and
writes the report: workdir/report/{per_class_accuracy,confusion_matrix,worst_videos}.png, predictions.csv.
With --config.mode=evaluate nothing is trained: the released model is evaluated zero-shot on test/.
docs/your_videos.md has the layout, the errors and what each choice below is based on.

Arguments:
  variant: B/32, B/16 (default), L/14, L/14@336, or tiny (tests: a small random model, no download).
  frames: 8 or 16 (K400 models), 32 (init=zero); 0 (default) = the model's own (8, or 32 for init=zero).
  init: k400 (default: microsoft/xclip-{base,large}-patch{32,16,14}[-16-frames], fine-tuned on Kinetics-400),
    zero (the zero-shot model, B/16 with 32 frames), clip (OpenAI CLIP, X-CLIP modules new), none (random).
  shots: K > 0 = the few-shot protocol: K training videos per class drawn from train/ (data.k_shot), with the
    paper's few-shot recipe (50 epochs); 0 = all of train/.
  shrink: a short smoke run (20 steps, small batches, single-view evaluation).

Recipe for a few thousand videos on one host (one GPU, or the chips of one TPU host): a global batch of
256 frames per step (32 clips of 8 frames, 16 of 16, 8 of 32) with rematerialisation on, so B/16 fits a
16 GB device; the official fine-tuning lr for small data (2e-6, the paper's few-shot value; new modules 10x),
10 epochs with 1 of warm-up (cosine), the official augmentation, mixup/cutmix and label smoothing.
"""

from __future__ import annotations

import os

import ml_collections

from xclip_jax import run_config

K400_MODELS = {  # (variant, frames) -> the released Kinetics-400 model
    ("B/32", 8): "microsoft/xclip-base-patch32", ("B/32", 16): "microsoft/xclip-base-patch32-16-frames",
    ("B/16", 8): "microsoft/xclip-base-patch16", ("B/16", 16): "microsoft/xclip-base-patch16-16-frames",
    ("L/14", 8): "microsoft/xclip-large-patch14", ("L/14@336", 16): "microsoft/xclip-large-patch14-16-frames",
}
CLIP_MODELS = {"B/32": "openai:ViT-B/32", "B/16": "openai:ViT-B/16", "L/14": "openai:ViT-L/14",
               "L/14@336": "openai:ViT-L/14@336px"}
# The tiny model of the tests (random weights; 32 px frames, 2 x 2 patches).
TINY_MODEL = dict(image_size=32, patch_size=16, vision_width=64, vision_layers=2, vision_heads=2, vision_mlp_dim=128,
                  text_width=32, text_layers=1, text_heads=1, text_mlp_dim=64, embed_dim=32, mit_heads=1,
                  mit_mlp_dim=64, prompt_heads=1)


def _init_path(variant: str, frames: int, init: str) -> str:
  if init == "none":
    return ""
  if variant == "tiny":
    raise ValueError("variant=tiny has no released weights: use init=none (or --config.init_from.path=<a tiny model>)")
  if init == "k400":
    if (variant, frames) not in K400_MODELS:
      raise ValueError(f"no released Kinetics-400 model for variant={variant}, frames={frames}; released: "
                       f"{sorted(K400_MODELS)} (or init=clip for any frames)")
    return K400_MODELS[(variant, frames)]
  if init == "zero":
    if (variant, frames) != ("B/16", 32):
      raise ValueError(f"the zero-shot model is B/16 with 32 frames, not variant={variant}, frames={frames}")
    return "microsoft/xclip-base-patch16-zero-shot"
  if init == "clip":
    return CLIP_MODELS[variant]
  raise ValueError(f"init must be k400, zero, clip or none, got {init!r}")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  args = run_config.parse_arg(arg, variant="B/16", frames=0, init="k400", shots=0, shrink=False)
  if args.variant not in (*CLIP_MODELS, "tiny"):
    raise ValueError(f"variant must be one of {(*CLIP_MODELS, 'tiny')}, got {args.variant!r}")
  init = "none" if args.variant == "tiny" and args.init == "k400" else args.init
  frames = args.frames or (32 if init == "zero" else 16 if args.variant == "L/14@336" else 8)
  c = run_config.base_config()
  c.protocol = "few_shot" if args.shots > 0 else "supervised"
  c.model.variant = args.variant
  c.model.frames = frames
  c.model.remat = True  # B/16 with 256 frames a step fits 16 GB; --config.model.remat=false is faster where it fits
  c.init_from.path = _init_path(args.variant, frames, init)

  c.data.source = "folders"
  c.data.root = "my_videos"  # train/, val/, test/ with one sub-folder per class
  c.data.readable_names = True
  c.data.input_size = 336 if args.variant == "L/14@336" else 224
  c.data.batch_size = max(256 // frames, 1)  # lowered by itself to a smaller training set (folder_runs)
  c.data.eval_batch_size = 8
  c.data.num_workers = max(1, min(8, (os.cpu_count() or 2) - 2))  # decoding processes; leave the loop a core
  c.data.k_shot = args.shots

  c.train.lr = 2e-6
  c.train.epochs = 50 if args.shots > 0 else 10
  c.train.warmup_epochs = 5 if args.shots > 0 else 1
  c.eval.every_steps = -1 if args.shots > 0 else 0  # K-shot epochs are a step or two: evaluate at the end only
  c.eval.final_clips, c.eval.final_crops = 4, 3  # the official multi-view test, as the notebook
  c.checkpoint.every_steps = 500
  c.log_every_steps = 20

  if args.shrink:
    run_config.shrink(c)
  if args.variant == "tiny":  # tests: 32 px frames, float32 on CPU
    c.model.overrides = ml_collections.ConfigDict(TINY_MODEL)
    c.model.dtype = "float32"
    c.model.remat = False
    c.data.input_size = 32
  return c

"""The run configuration every configs/*.py file builds on, with the official X-CLIP recipe as defaults.

Config files call `base_config()` and override what their protocol needs. Arguments after the file name
(`configs/kinetics.py:variant=B/16,frames=8`) are parsed by `parse_arg`, as in big_vision.
"""

from __future__ import annotations

import ml_collections

from xclip_jax.data.config import data_config

# The values of config.protocol (each has its runner in `xclip_jax.protocols.PROTOCOLS`) and of config.mode:
# here, so that main refuses others before it imports the protocols (and TensorFlow with them).
PROTOCOLS = ("supervised", "few_shot", "zero_shot", "demo")
MODES = ("train", "evaluate")


class ConfigError(ValueError):
  """A config value this run cannot use, found once the run reads its inputs (a checkpoint, a data folder):
  `python -m xclip_jax.main` prints it as one line and exits with status 2, as for the checks before the run."""


def check_protocol(config: ml_collections.ConfigDict) -> None:
  """config.mode and config.protocol name something main runs; else ConfigError naming the field."""
  if config.mode not in MODES:
    raise ConfigError(f"config.mode must be 'train' or 'evaluate', got {config.mode!r}")
  if config.protocol not in PROTOCOLS:
    raise ConfigError(f"config.protocol must be one of {', '.join(PROTOCOLS)}, got {config.protocol!r}")


def parse_arg(arg: str | None, **defaults) -> ml_collections.ConfigDict:
  """'variant=B/16,frames=8,shrink=True' -> ConfigDict; values typed like the defaults; unknown keys fail."""
  values = ml_collections.ConfigDict(defaults)
  for item in filter(None, (arg or "").split(",")):
    key, sep, raw = item.partition("=")
    if not sep or key not in defaults:
      raise ValueError(f"config argument {item!r}: expected key=value with key in {sorted(defaults)}")
    kind = type(defaults[key])
    if kind is bool:
      if raw.lower() not in ("true", "false", "1", "0"):
        raise ValueError(f"config argument {key}={raw!r}: expected true or false")
      values[key] = raw.lower() in ("true", "1")
    else:
      try:
        values[key] = kind(raw)
      except ValueError:
        raise ValueError(f"config argument {key}={raw!r}: expected a {kind.__name__}") from None
  return values


def base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  # What main does with this config: "supervised" (train + periodic single-view eval + final multi-view
  # eval), "few_shot" (train on K shots per class, evaluate split 1), "zero_shot" (evaluate a trained model
  # on unseen class names), "demo" (the embedded synthetic end-to-end run).
  c.protocol = "supervised"
  # "train" (resume from the workdir's latest checkpoint if any) or "evaluate" (final evaluation only,
  # of the workdir's latest checkpoint, or of init_from when the workdir has none).
  c.mode = "train"
  # True: compile the run's programs on the real devices, print their memory / FLOPs / roofline report
  # (`xclip_jax.plan`'s) and exit without training: checks that a pod job fits before it spends anything.
  c.compile_only = False

  # --- Model ------------------------------------------------------------------------------------------
  c.model = ml_collections.ConfigDict()
  c.model.variant = "B/16"  # "B/32", "B/16", "L/14", "L/14@336" or "tiny" (tests, demo).
  c.model.frames = 8  # T frames per clip; data.num_frames is the same value (one home, linked below).
  c.model.dtype = "bfloat16"  # Compute dtype (parameters stay float32; LayerNorm/softmax/logits in float32).
  c.model.remat = False  # Recompute each block's activations in the backward pass (official USE_CHECKPOINT).
  c.model.drop_path_rate = 0.0  # Stochastic depth over the vision layers (official DROP_PATH_RATE: 0).
  c.model.attention_implementation = "auto"  # "auto" (cuDNN on GPU for bf16, heads_first on CPU), "xla", ...
  c.model.scan_layers = False  # Stacked block parameters run by lax.scan: faster compilation, same results.
  # Ablations (paper Tab. 6): all three False = CLIP with mean pooling over frames.
  c.model.use_cross_frame = True
  c.model.use_mit = True
  c.model.use_prompt = True
  # Any other ModelConfig field, e.g. {"image_size": 64} for the demo's tiny model.
  c.model.overrides = ml_collections.ConfigDict()

  # --- Initialisation ----------------------------------------------------------------------------------
  c.init_from = ml_collections.ConfigDict()
  # A model name ("openai:ViT-B/16": CLIP -> X-CLIP with model.frames frames; "k400_16_8"; an HF hub id;
  # see `python -m xclip_jax.zoo list`), fetched and converted into the cache once; a directory from
  # scripts/convert_checkpoint.py; or a training workdir (its latest checkpoint). Empty: random
  # initialisation. The architecture (sizes and head counts) comes from this checkpoint; model.variant must
  # agree with it.
  c.init_from.path = ""

  # --- Data ---------------------------------------------------------------------------------------------
  c.data = data_config()
  # The clips have the model's frames: setting either of model.frames and data.num_frames sets both.
  c.data.num_frames = c.model.get_ref("frames")

  # --- Optimisation (official recipe) ---------------------------------------------------------------------
  c.train = ml_collections.ConfigDict()
  c.train.epochs = 30  # Official EPOCHS (zero-shot model: 10; few-shot: 50).
  c.train.warmup_epochs = 5  # Linear warm-up from 0 (timm semantics).
  c.train.total_steps = -1  # If > 0, overrides epochs (warm-up then scales with it: warmup_epochs/epochs).
  c.train.lr = 8e-6  # Base learning rate of the CLIP weights (not rescaled with batch size, as official).
  c.train.min_lr_ratio = 0.01  # Cosine floor = lr * ratio, the same absolute value for every group.
  c.train.new_module_lr_multiplier = 10.0  # Message tokens, MIT, prompts: 10x lr.
  c.train.weight_decay = 0.001  # Not on 1-D tensors, biases, position embeddings.
  c.train.b1 = 0.9
  c.train.b2 = 0.98
  c.train.eps = 1e-8
  c.train.grad_clip_norm = 0.0  # 0: no clipping (official).
  c.train.grad_accum_steps = 1  # Micro-batches per step; data.batch_size is the batch per optimizer step.
  c.train.train_text = False  # Official FIX_TEXT=True: text tower and logit scale frozen, class texts cached.
  c.train.label_smoothing = 0.1
  c.train.mixup = 0.8  # Mixup alpha; 0 disables mixup and cutmix.
  c.train.cutmix = 1.0  # CutMix alpha.
  c.train.mixup_switch_prob = 0.5  # Probability of CutMix instead of Mixup per batch.
  c.train.seed = 1024  # Model initialisation and per-step randomness (data has data.seed).

  # --- Evaluation -------------------------------------------------------------------------------------
  c.eval = ml_collections.ConfigDict()
  c.eval.every_steps = 0  # Single-view evaluation during training; 0 = once per epoch, -1 = never.
  c.eval.final_clips = 4  # Final evaluation views: clips x crops (official 4 x 3, summed softmax).
  c.eval.final_crops = 3
  c.eval.max_batches = -1  # Limit evaluation batches (quick checks); -1 = the whole split.
  # Split of the final evaluation (and of mode=evaluate): "val", "test" (folders source), or "" = test/ where
  # the folders source has one, else val. Evaluation during training always uses val.
  c.eval.split = ""

  # --- Checkpoints and logging ----------------------------------------------------------------------------
  c.checkpoint = ml_collections.ConfigDict()
  c.checkpoint.every_steps = 1000  # Also saved at the end and on SIGTERM.
  c.checkpoint.keep = 3  # Most recent checkpoints kept.
  c.checkpoint.asynchronous = True
  c.log_every_steps = 50  # Official PRINT_FREQ.

  # --- Devices ------------------------------------------------------------------------------------------
  # Mesh axes: data (replicated parameters), fsdp (parameters and optimizer state sharded), tensor
  # (heads / MLP sharded). One may be -1 (all remaining devices). Batches split over data x fsdp.
  c.mesh = ml_collections.ConfigDict({"data": -1, "fsdp": 1, "tensor": 1})
  return c


def shrink(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Small-machine settings: tiny batches, few workers, short runs (checks a set-up end to end)."""
  c.data.batch_size = 8
  c.data.eval_batch_size = 4
  c.data.num_workers = 1
  c.train.total_steps = 20
  c.eval.every_steps = 10
  c.eval.max_batches = 4
  c.eval.final_clips = 1
  c.eval.final_crops = 1
  c.checkpoint.every_steps = 10
  c.log_every_steps = 5
  c.model.remat = True
  return c

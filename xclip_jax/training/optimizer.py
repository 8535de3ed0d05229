"""The official X-CLIP optimizer: AdamW with parameter groups and timm's warmup + cosine schedule.

Reference xclip.md §2.3: AdamW(0.9, 0.98, eps 1e-8), weight decay 0.001 except 1-D parameters, biases
and position embeddings; 10x learning rate on the modules X-CLIP adds (message tokens, MIT, prompts);
the text tower and logit scale frozen unless `train_text`; lr warms up linearly from 0, then follows a
cosine (t counted from step 0, as timm's `warmup_prefix=False`) down to base_lr / 100 for every group.
The schedule is built here only: its length from the run config (`schedule_steps`), its shape
(`timm_cosine_schedule`), one per parameter group (`make_optimizer`); the config holds the values
(train.lr, min_lr_ratio, new_module_lr_multiplier, epochs, warmup_epochs, total_steps).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from xclip_jax.models.params import stack_position

NEW_MODULE_KEYS = ("message_fc", "message_ln", "message_attn", "mit", "prompts_visual_ln", "prompts_visual_proj",
                   "prompts_generator")
TEXT_KEYS = ("text", "logit_scale")
NO_DECAY_KEYS = ("bias", "positional_embedding")


def _names(path: tuple[Any, ...]) -> list[str]:
  """Path entries of a pytree key path as strings (DictKey, GetAttrKey, ints)."""
  names = []
  for entry in path:
    for attribute in ("key", "name", "idx"):
      if hasattr(entry, attribute):
        names.append(str(getattr(entry, attribute)))
        break
    else:
      names.append(str(entry))
  return names


def is_text_parameter(path: tuple[Any, ...]) -> bool:
  return _names(path)[0] in TEXT_KEYS


def trainable_filter(train_text: bool) -> nnx.filterlib.Filter:
  """Parameters the optimizer updates: all, or all but the text tower and logit scale (official default)."""
  if train_text:
    return nnx.Param
  return nnx.All(nnx.Param, lambda path, _: not is_text_parameter(path))


def parameter_group(path: tuple[Any, ...]) -> str:
  """'new' for X-CLIP's added modules (10x lr), 'backbone' for the CLIP weights."""
  return "new" if any(name in NEW_MODULE_KEYS for name in _names(path)) else "backbone"


def decays(path: tuple[Any, ...], value: jax.Array) -> bool:
  """Official rule: no decay for 1-D tensors, biases and position embeddings (per layer: the leading layer
  axis of stacked parameters does not count)."""
  names = _names(path)
  ndim = jnp.ndim(value) - (stack_position(names) is not None)
  return ndim >= 2 and not any(key in names for key in NO_DECAY_KEYS)


def timm_cosine_schedule(base_lr: float, min_lr: float, warmup_steps: int, total_steps: int) -> optax.Schedule:
  """timm CosineLRScheduler(warmup_lr_init=0, warmup_prefix=False, cycle_limit=1), per step."""
  def schedule(step: jax.Array) -> jax.Array:
    t = jnp.asarray(step, jnp.float32)
    warm = base_lr * t / max(warmup_steps, 1)
    cosine = min_lr + 0.5 * (base_lr - min_lr) * (1.0 + jnp.cos(math.pi * jnp.minimum(t, total_steps) / total_steps))
    return jnp.where(t < warmup_steps, warm, cosine)
  return schedule


def schedule_steps(train_config: Any, steps_per_epoch: int) -> tuple[int, int]:
  """(total steps, warm-up steps) of a run: train.epochs x steps_per_epoch with train.warmup_epochs of warm-up,
  or train.total_steps when > 0 (warm-up then keeps its share, warmup_epochs / epochs)."""
  epochs, warmup_epochs = float(train_config.epochs), float(train_config.warmup_epochs)
  if int(train_config.total_steps) > 0:
    total = int(train_config.total_steps)
    return total, int(round(total * warmup_epochs / max(epochs, 1)))
  return int(round(epochs * steps_per_epoch)), int(round(warmup_epochs * steps_per_epoch))


def make_optimizer(train_config: Any, total_steps: int, warmup_steps: int
                   ) -> tuple[optax.GradientTransformation, dict[str, optax.Schedule]]:
  """AdamW per parameter group with its own schedule; returns (transform, schedules by group)."""
  lr = float(train_config.lr)
  min_lr = lr * float(train_config.min_lr_ratio)
  schedules = {
      "backbone": timm_cosine_schedule(lr, min_lr, warmup_steps, total_steps),
      "new": timm_cosine_schedule(lr * float(train_config.new_module_lr_multiplier), min_lr, warmup_steps,
                                  total_steps),
  }
  decay_mask = lambda params: jax.tree_util.tree_map_with_path(decays, params)

  def adamw(schedule: optax.Schedule) -> optax.GradientTransformation:
    return optax.adamw(schedule, b1=float(train_config.b1), b2=float(train_config.b2), eps=float(train_config.eps),
                       weight_decay=float(train_config.weight_decay), mask=decay_mask)

  labels = lambda params: jax.tree_util.tree_map_with_path(lambda path, _: parameter_group(path), params)
  transform = optax.multi_transform({name: adamw(s) for name, s in schedules.items()}, labels)
  if float(train_config.grad_clip_norm) > 0:  # not in the official recipe; off by default
    transform = optax.chain(optax.clip_by_global_norm(float(train_config.grad_clip_norm)), transform)
  return transform, schedules

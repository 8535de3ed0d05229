"""The jitted train step (a pure function of the nnx state); the evaluation steps live in
`xclip_jax.evaluation.eval_steps`.

Train step: uint8 frames are normalised and mixed (mixup/cutmix + label smoothing) on device, the
global batch is split into `grad_accum_steps` interleaved micro-batches whose gradients are summed with `lax.scan`,
and one AdamW update is applied. Class-text features come in precomputed when the text tower is frozen
(official FIX_TEXT), or are recomputed from tokens inside the step when it is trained.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from xclip_jax.data import batches, device_color, device_ops

Metrics = dict[str, jax.Array]


@dataclasses.dataclass(frozen=True)
class TrainStepConfig:
  num_classes: int
  grad_accum_steps: int = 1
  train_text: bool = False
  label_smoothing: float = 0.1
  mixup: float = 0.8  # mixup alpha (0 disables mixup and cutmix)
  cutmix: float = 1.0  # cutmix alpha
  mixup_switch_prob: float = 0.5
  batch_shards: int = 1  # devices the batch is split over: mixup partners are drawn within each device's rows


def soft_cross_entropy(logits: jax.Array, targets: jax.Array) -> jax.Array:
  """timm's SoftTargetCrossEntropy: mean over the batch of -sum(targets * log_softmax(logits))."""
  return jnp.mean(-jnp.sum(targets * jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1), axis=-1))


def _mixed_inputs(rng: jax.Array, videos_uint8: jax.Array, labels: jax.Array, config: TrainStepConfig,
                  dtype: jnp.dtype, color: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
  if color is not None:  # data.augment.color_on_device: the host drew the jitter, it is applied here.
    videos_uint8 = device_color.apply(videos_uint8, color)
  videos = device_ops.normalize(videos_uint8)
  if config.mixup > 0:
    videos, targets = device_ops.mixup_cutmix(
        rng, videos, labels, config.num_classes, mixup_alpha=config.mixup, cutmix_alpha=config.cutmix,
        switch_prob=config.mixup_switch_prob, label_smoothing=config.label_smoothing, groups=config.batch_shards)
  else:
    targets = device_ops.one_hot_smoothed(labels, config.num_classes, config.label_smoothing)
  return videos.astype(dtype), targets


def make_train_step(graphdef: nnx.GraphDef, trainable: Any, config: TrainStepConfig,
                    schedules: dict[str, Callable]) -> Callable:
  """Returns step(state, batch, text_inputs, rng) -> (state, metrics).

  `text_inputs` is (K, E) text features when the text tower is frozen, or (K, 77) tokens when trained.
  """

  def step(state: nnx.State, batch: dict[str, jax.Array], text_inputs: jax.Array, rng: jax.Array
           ) -> tuple[nnx.State, Metrics]:
    bundle = nnx.merge(graphdef, state)
    model, optimizer = bundle.model, bundle.optimizer
    model_graph, params, rest = nnx.split(model, trainable, ...)
    dtype = model.dtype
    accum = config.grad_accum_steps
    # Micro-batch m takes rows m, m + accum, m + 2 accum, ...: with the batch split over devices in
    # contiguous blocks, every device then holds its share of every micro-batch (contiguous micro-batches
    # would live on a few devices, and each step of the scan would gather them).

    def split_micro(rows: jax.Array) -> jax.Array:
      return jnp.swapaxes(rows.reshape(-1, accum, *rows.shape[1:]), 0, 1)

    videos = split_micro(batch[batches.VIDEO])
    labels = split_micro(batch[batches.LABEL])
    colors = split_micro(batch[batches.COLOR]) if batches.COLOR in batch else None
    rng = jax.random.fold_in(rng, optimizer.step[...])

    def loss_fn(params: nnx.State, videos_uint8: jax.Array, micro_labels: jax.Array, key: jax.Array,
                color: jax.Array | None = None):
      micro_model = nnx.merge(model_graph, params, rest)
      mix_key, drop_key = jax.random.split(key)
      inputs, targets = _mixed_inputs(mix_key, videos_uint8, micro_labels, config, dtype, color)
      text_features = (micro_model.encode_text(text_inputs) if config.train_text
                       else jax.lax.stop_gradient(text_inputs))
      logits = micro_model(inputs, text_features=text_features, drop_rng=drop_key)
      loss = soft_cross_entropy(logits, targets)
      return loss, jnp.mean(jnp.argmax(logits, -1) == micro_labels)

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def accumulate(carry, micro):
      grads_sum, loss_sum, acc_sum = carry
      (loss, accuracy), grads = grad_fn(params, *micro)
      grads_sum = jax.tree.map(jnp.add, grads_sum, grads)
      return (grads_sum, loss_sum + loss, acc_sum + accuracy), None

    zeros = jax.tree.map(jnp.zeros_like, params)
    keys = jax.random.split(rng, accum)
    micro_batches = (videos, labels, keys) + ((colors,) if colors is not None else ())
    (grads, loss, accuracy), _ = jax.lax.scan(accumulate, (zeros, 0.0, 0.0), micro_batches)
    grads = jax.tree.map(lambda g: g / accum, grads)
    step_before = optimizer.step[...]
    optimizer.update(model, grads)
    metrics = {"loss": loss / accum, "train_accuracy": accuracy / accum,
               "grad_norm": jnp.sqrt(sum(jnp.sum(jnp.square(g.astype(jnp.float32))) for g in jax.tree.leaves(grads)))}
    metrics.update({f"lr/{name}": schedule(step_before) for name, schedule in schedules.items()})
    return nnx.state(bundle), metrics

  return step

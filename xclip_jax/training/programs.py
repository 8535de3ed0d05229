"""The jitted programs a training run compiles, built in one place for the trainer and the planner.

`xclip_jax.training.trainer` runs these programs; `xclip_jax.planning` compiles the very same ones for TPU
topologies it does not have (abstract inputs only) to tell whether a run fits and how fast it may go. Both
go through `jit_train_step`, `abstract_train_inputs` and `eval_batch_size` here, so the planned program is
the one that runs. `check_run` rejects a run whose numbers cannot be split over the devices, naming the
config field, before anything is compiled.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx
from jax.sharding import Mesh

from xclip_jax import run_config, sharding
from xclip_jax.data import batches, device_color
from xclip_jax.models.config import ModelConfig
from xclip_jax.training import steps


def train_step_config(config: ml_collections.ConfigDict, num_classes: int, mesh: Mesh) -> steps.TrainStepConfig:
  """The train step's options from a run config (`config.train`) and the mesh it runs on."""
  t = config.train
  return steps.TrainStepConfig(
      num_classes=num_classes, grad_accum_steps=int(t.grad_accum_steps), train_text=bool(t.train_text),
      label_smoothing=float(t.label_smoothing), mixup=float(t.mixup), cutmix=float(t.cutmix),
      mixup_switch_prob=float(t.mixup_switch_prob), batch_shards=sharding.batch_shards(mesh))


def check_run(config: ml_collections.ConfigDict, model_config: ModelConfig, mesh: Mesh,
              process_count: int = 1) -> None:
  """Raises run_config.ConfigError (a ValueError) naming the config field and the numbers, for a run the devices
  cannot split.

  The mesh itself is checked when it is made (`sharding.mesh_shape`); here: the batch against gradient
  accumulation, processes and batch shards, and attention heads against the `tensor` axis (a split inside
  a head would make every attention reshape a collective).
  """
  batch = int(config.data.batch_size)
  accum = int(config.train.grad_accum_steps)
  shards = sharding.batch_shards(mesh)
  axes = " x ".join(f"{a}={mesh.shape[a]}" for a in sharding.BATCH_AXES if a in mesh.shape)
  if accum < 1 or batch % accum:
    raise run_config.ConfigError(f"data.batch_size={batch} is not divisible by train.grad_accum_steps={accum}.")
  if batch % process_count:
    raise run_config.ConfigError(f"data.batch_size={batch} is not divisible by the {process_count} processes.")
  micro = batch // accum
  if micro % shards:
    raise run_config.ConfigError(f"data.batch_size={batch} / train.grad_accum_steps={accum} = {micro} clips per "
                                 f"micro-batch do not split over the {shards} batch shards of config.mesh ({axes}); "
                                 f"make the micro-batch a multiple of {shards}.")
  tensor = int(mesh.shape.get("tensor", 1))
  heads = {"vision": model_config.vision_heads, "text": model_config.text_heads, "MIT": model_config.mit_heads,
           "prompt generator": model_config.prompt_heads}
  uneven = {name: count for name, count in heads.items() if count % tensor}
  if uneven:
    detail = ", ".join(f"{name} {count}" for name, count in uneven.items())
    raise run_config.ConfigError(f"config.mesh tensor={tensor} does not divide the attention heads of model."
                                 f"variant={config.model.variant} ({detail} heads); use a tensor size that divides "
                                 f"every head count.")


def eval_batch_size(requested: int, mesh: Mesh) -> int:
  """The evaluation batch actually used: `data.eval_batch_size` rounded up to a multiple of the batch shards.

  The extra rows are padding (`valid=False`, not counted), so every device gets whole rows: 16 videos on a
  v5e-256 become 256 rows per step.
  """
  return sharding.round_up_to_shards(requested, mesh)


def jit_train_step(graphdef: nnx.GraphDef, state_shardings: nnx.State, trainable: Any,
                   step_config: steps.TrainStepConfig, schedules: dict[str, Callable], mesh: Mesh) -> Callable:
  """The jitted train step `step(state, batch, text_inputs, rng) -> (state, metrics)` the trainer runs.

  The state is donated (updated in place) and keeps its sharding; metrics come back replicated.
  """
  return jax.jit(steps.make_train_step(graphdef, trainable, step_config, schedules),
                 out_shardings=(state_shardings, sharding.replicated(mesh)), donate_argnums=0)


def _spec(shape: tuple[int, ...], dtype: Any, sharded: jax.sharding.Sharding) -> jax.ShapeDtypeStruct:
  return jax.ShapeDtypeStruct(shape, jnp.dtype(dtype), sharding=sharded)


def train_batch_spec(config: ml_collections.ConfigDict, mesh: Mesh) -> dict[str, jax.ShapeDtypeStruct]:
  """The global training batch as `pipeline.global_batch` delivers it: uint8 clips and int32 labels, and with
  `data.augment.color_on_device` the per-frame colour draws the step applies."""
  d = config.data
  batch, frames, size = int(d.batch_size), int(d.num_frames), int(d.input_size)
  spec = {batches.VIDEO: _spec((batch, frames, size, size, 3), jnp.uint8, sharding.batch_sharding(mesh, 5)),
          batches.LABEL: _spec((batch,), jnp.int32, sharding.batch_sharding(mesh, 1))}
  if d.augment.get("color_on_device", False):
    spec[batches.COLOR] = _spec((batch, frames, device_color.COLUMNS), jnp.float32, sharding.batch_sharding(mesh, 3))
  return spec


def eval_batch_spec(config: ml_collections.ConfigDict, mesh: Mesh, views: int) -> dict[str, jax.ShapeDtypeStruct]:
  """A global evaluation batch of `views` views per video (padded as `eval_batch_size` says)."""
  d = config.data
  batch, frames, size = eval_batch_size(int(d.eval_batch_size), mesh), int(d.num_frames), int(d.input_size)
  spec = {batches.VIDEO: _spec((batch, views, frames, size, size, 3), jnp.uint8, sharding.batch_sharding(mesh, 6))}
  spec.update({name: _spec((batch,), jnp.dtype(dtype), sharding.batch_sharding(mesh, 1))
               for name, dtype in batches.EVAL_ROW_FIELDS.items()})
  return spec


def tokens_spec(num_classes: int, model_config: ModelConfig, mesh: Mesh) -> jax.ShapeDtypeStruct:
  """Class-name tokens (K, context) as the trainer places them: replicated int32."""
  return _spec((num_classes, model_config.context_length), jnp.int32, sharding.replicated(mesh))


def abstract_key(mesh: Mesh) -> jax.ShapeDtypeStruct:
  """The per-run PRNG key as an abstract, replicated value (a concrete key cannot live on compile-only devices)."""
  key = jax.eval_shape(lambda: jax.random.key(0))
  return jax.ShapeDtypeStruct(key.shape, key.dtype, sharding=sharding.replicated(mesh))


def text_inputs_spec(encode: Callable, model_state: Any, num_classes: int, model_config: ModelConfig,
                     step_config: steps.TrainStepConfig, mesh: Mesh) -> jax.ShapeDtypeStruct:
  """What the train step receives as `text_inputs`: tokens when the text tower trains, else the (K, E) class
  features the text encoder `encode(model_state, tokens)` returns (replicated)."""
  tokens = tokens_spec(num_classes, model_config, mesh)
  if step_config.train_text:
    return tokens
  with jax.set_mesh(mesh):
    features = jax.eval_shape(encode, model_state, tokens)
  return _spec(features.shape, features.dtype, sharding.replicated(mesh))

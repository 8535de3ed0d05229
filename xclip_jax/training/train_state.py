"""The training state: model + optimizer as one NNX graph, created directly sharded on the mesh.

The state is split once into (graphdef, state); jitted steps take and return `state` (a pytree of
`nnx.Variable`s). Parameters and optimizer moments are placed by their logical axis names
(`xclip_jax.sharding`), so with fsdp > 1 both are really sharded.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
import optax
from flax import nnx
from flax.traverse_util import flatten_dict, unflatten_dict
from jax.sharding import Mesh

from xclip_jax import sharding
from xclip_jax.models.config import ModelConfig
from xclip_jax.models.params import Path, abstract_model, from_layer_params, model_from_params
from xclip_jax.models.xclip import XCLIP, create_model


class Trainable(nnx.Module):
  """Model and optimizer in one graph, so one `nnx.split` yields the whole training state."""

  def __init__(self, model: XCLIP, optimizer: nnx.Optimizer):
    self.model = model
    self.optimizer = optimizer


@dataclasses.dataclass
class TrainState:
  graphdef: nnx.GraphDef
  state: nnx.State  # {"model": ..., "optimizer": {"step": ..., "opt_state": ...}}
  shardings: nnx.State  # NamedSharding per leaf, same structure as `state`

  @property
  def step(self) -> int:
    return int(jax.device_get(self.state["optimizer"]["step"][...]))


def _merge_init_params(model: XCLIP, init_params: Mapping[Path, jax.Array]) -> None:
  params = nnx.state(model, nnx.Param)
  flat = flatten_dict(nnx.to_pure_dict(params))
  flat.update({path: init_params[path] for path in flat if path in init_params})
  nnx.replace_by_pure_dict(params, unflatten_dict(flat))
  nnx.update(model, params)


def _trainable_builder(model_config: ModelConfig, tx: optax.GradientTransformation, trainable: nnx.filterlib.Filter,
                       seed: int):
  def build(init: Mapping[Path, jax.Array] | None) -> Trainable:
    model = create_model(model_config, seed=seed)
    if init:
      _merge_init_params(model, init)
    return Trainable(model, nnx.Optimizer(model, tx, wrt=trainable))
  return build


def abstract_initial_state(model_config: ModelConfig, tx: optax.GradientTransformation,
                           trainable: nnx.filterlib.Filter, mesh: Mesh) -> TrainState:
  """The training state as ShapeDtypeStructs carrying their shardings: nothing is allocated.

  What `create_train_state` would place on `mesh`; compiling against it needs no device memory, so it also
  works for compile-only devices (`xclip_jax.planning`), where any concrete array fails.
  """
  graphdef, abstract = nnx.split(nnx.eval_shape(lambda: _trainable_builder(model_config, tx, trainable, 0)(None)))
  shardings = sharding.state_shardings(abstract, mesh)
  return TrainState(graphdef, with_shardings(abstract, shardings), shardings)


def create_train_state(model_config: ModelConfig, tx: optax.GradientTransformation, trainable: nnx.filterlib.Filter,
                       mesh: Mesh, *, seed: int, init_params: Mapping[Path, np.ndarray] | None = None) -> TrainState:
  """Initialises model and optimizer on the mesh (parameters from `init_params`, per-layer layout, where given).

  One jitted program creates everything directly with its sharding.
  """
  build = _trainable_builder(model_config, tx, trainable, seed)
  init = from_layer_params(model_config, {p: np.asarray(v, np.float32) for p, v in (init_params or {}).items()})
  abstract = abstract_initial_state(model_config, tx, trainable, mesh)
  graphdef, shardings = abstract.graphdef, abstract.shardings
  init_shardings = None
  if init:
    param_shardings = flatten_dict(nnx.to_pure_dict(shardings["model"]))
    init_shardings = {p: param_shardings[p] for p in init}
  with jax.set_mesh(mesh):
    state = jax.jit(lambda i: nnx.state(build(i)), in_shardings=(init_shardings,),
                    out_shardings=shardings)(init or None)
  return TrainState(graphdef, state, shardings)


def model_graphdef(model_config: ModelConfig) -> nnx.GraphDef:
  """Graph of the bare model: what evaluation merges with `TrainState.state["model"]`."""
  return nnx.graphdef(abstract_model(model_config))


def create_model_state(model_config: ModelConfig, mesh: Mesh, *, seed: int) -> nnx.State:
  """A randomly initialised model's state, created by one jitted program directly on the mesh."""
  abstract = nnx.state(abstract_model(model_config))
  shardings = sharding.state_shardings(abstract, mesh)
  return jax.jit(lambda: nnx.state(create_model(model_config, seed=seed)), out_shardings=shardings)()


def place_model(model_config: ModelConfig, params: Mapping[Path, np.ndarray], mesh: Mesh
                ) -> tuple[nnx.GraphDef, nnx.State]:
  """(graphdef, sharded state) of a model with the given parameters, for evaluation without an optimizer."""
  graphdef, abstract = nnx.split(abstract_model(model_config))
  shardings = sharding.state_shardings(abstract, mesh)
  host = nnx.state(model_from_params(model_config, params))
  return graphdef, jax.device_put(host, shardings)


def with_shardings(state: nnx.State, shardings: nnx.State) -> nnx.State:
  """ShapeDtypeStructs carrying `shardings`, for a concrete or abstract state of the same structure."""
  def one(variable: nnx.Variable, sharded: nnx.Variable) -> nnx.Variable:
    value = variable.get_value()
    if not hasattr(value, "shape"):  # e.g. optax.MaskedNode placeholders of masked optimizer states
      return variable
    return variable.replace(jax.ShapeDtypeStruct(value.shape, value.dtype, sharding=sharded.get_value()))
  return jax.tree.map(one, state, shardings, is_leaf=lambda x: isinstance(x, nnx.Variable))


def abstract_train_state(train_state: TrainState) -> nnx.State:
  """ShapeDtypeStructs with shardings: the restore target for checkpoints (any device count)."""
  return with_shardings(train_state.state, train_state.shardings)


def count_parameters(state: nnx.State, trainable: nnx.filterlib.Filter) -> dict[str, int]:
  model_state = state["model"]
  total = sum(x.size for x in jax.tree.leaves(nnx.filter_state(model_state, nnx.Param)))
  trained = sum(x.size for x in jax.tree.leaves(nnx.filter_state(model_state, trainable)))
  return {"parameters": total, "trainable": trained}


def describe_sharding(train_state: TrainState, limit: int = 6) -> list[str]:
  """A few human-readable parameter shardings (logged at start-up)."""
  lines = []
  flat = flatten_dict(nnx.to_pure_dict(train_state.shardings["model"]))
  shapes = flatten_dict(nnx.to_pure_dict(train_state.state["model"]))
  for path in sorted(flat, key=lambda p: -int(np.prod(shapes[p].shape)))[:limit]:
    lines.append(f"{'/'.join(map(str, path))} {tuple(shapes[path].shape)} -> {flat[path].spec}")
  return lines


def log_state(train_state: TrainState, trainable: Any) -> None:
  counts = count_parameters(train_state.state, trainable)
  logging.info("Parameters: %.2fM total, %.2fM trained", counts["parameters"] / 1e6, counts["trainable"] / 1e6)
  for line in describe_sharding(train_state):
    logging.info("  sharding %s", line)

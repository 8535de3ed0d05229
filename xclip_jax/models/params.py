"""Moving parameters in and out of an `XCLIP` module as flat {path: array} dicts.

Conversion, pretrained files and checkpoint surgery all speak this one format, the per-layer layout: keys
are tuples such as ("visual", "resblocks", 0, "attn", "query", "kernel"), matching `nnx.to_pure_dict` of
the model state when `scan_layers` is off. With `scan_layers` the model holds each stack as one array
per parameter, ("visual", "resblocks", "attn", "query", "kernel") with a leading layer axis;
`to_layer_params` / `from_layer_params` convert, and every function here takes and returns the per-layer
layout whatever the config says.
"""

from __future__ import annotations

import collections
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from flax.traverse_util import flatten_dict, unflatten_dict

from xclip_jax.models.config import ModelConfig
from xclip_jax.models.layer_stack import STACK_KEY
from xclip_jax.models.xclip import XCLIP, create_model

Path = tuple[str | int, ...]


def abstract_model(config: ModelConfig) -> XCLIP:
  """The model with `jax.ShapeDtypeStruct` leaves: shapes without allocating memory."""
  return nnx.eval_shape(lambda: create_model(config))


def stack_position(path: tuple) -> int | None:
  """Index of the stack key in a stacked-layout path (the layer index does not follow it), else None.

  Accepts plain paths and the names of pytree key paths (as the optimizer's masks see them).
  """
  for i, name in enumerate(path[:-1]):
    if str(name) == STACK_KEY and not str(path[i + 1]).isdigit():
      return i
  return None


def to_layer_params(config: ModelConfig, params: Mapping[Path, np.ndarray]) -> dict[Path, np.ndarray]:
  """Model-layout params -> the per-layer layout (splits stacked arrays along their first axis)."""
  if not config.scan_layers:
    return dict(params)
  result = {}
  for path, value in params.items():
    at = stack_position(path)
    if at is None:
      result[path] = value
      continue
    for layer in range(value.shape[0]):
      result[path[:at + 1] + (layer,) + path[at + 1:]] = value[layer]
  return result


def from_layer_params(config: ModelConfig, params: Mapping[Path, np.ndarray]) -> dict[Path, np.ndarray]:
  """Per-layer params -> the model's layout (stacks each parameter over layers when `scan_layers`).

  A stacked parameter needs every layer: a partial set is an error naming what is missing.
  """
  if not config.scan_layers:
    return dict(params)
  result, stacks = {}, collections.defaultdict(dict)
  for path, value in params.items():
    at = next((i for i, name in enumerate(path[:-1]) if name == STACK_KEY and isinstance(path[i + 1], int)), None)
    if at is None:
      result[path] = value
    else:
      stacks[path[:at + 1] + path[at + 2:]][path[at + 1]] = value
  for path, by_layer in stacks.items():
    if sorted(by_layer) != list(range(len(by_layer))):
      raise ValueError(f"Cannot stack {'/'.join(map(str, path))} for scan_layers: layers {sorted(by_layer)} present, "
                       f"expected 0..{len(by_layer) - 1} without gaps.")
    values = [by_layer[i] for i in range(len(by_layer))]
    stack = np.stack if all(isinstance(v, np.ndarray) for v in values) else jnp.stack
    result[path] = stack(values)
  return result


def parameter_shapes(config: ModelConfig) -> dict[Path, tuple[int, ...]]:
  """Shapes of every parameter, per-layer layout."""
  return {path: tuple(leaf.shape) for path, leaf in flatten_dict(
      nnx.to_pure_dict(nnx.state(abstract_model(config.replace(scan_layers=False))))).items()}


def flat_params(model: XCLIP) -> dict[Path, np.ndarray]:
  """All parameters of a model as host numpy arrays (gathers sharded arrays), per-layer layout."""
  params = {path: np.asarray(jax.device_get(leaf)) for path, leaf in
            flatten_dict(nnx.to_pure_dict(nnx.state(model, nnx.Param))).items()}
  return to_layer_params(model.config, params)


def model_from_params(config: ModelConfig, params: Mapping[Path, np.ndarray]) -> XCLIP:
  """Builds an `XCLIP` whose parameters are exactly `params` (per-layer layout; every parameter present)."""
  graphdef, state = nnx.split(abstract_model(config))  # traced once where it can be: seconds for the large models
  shapes = parameter_shapes(config) if config.scan_layers else {
      path: tuple(leaf.shape) for path, leaf in flatten_dict(nnx.to_pure_dict(state)).items()}
  missing = sorted("/".join(map(str, p)) for p in shapes if p not in params)
  unknown = sorted("/".join(map(str, p)) for p in params if p not in shapes)
  wrong = sorted(f"{'/'.join(map(str, p))}: {tuple(np.shape(params[p]))} != {shapes[p]}" for p in shapes
                 if p in params and tuple(np.shape(params[p])) != shapes[p])
  if missing or unknown or wrong:
    raise ValueError(f"Parameters do not fit the model config ({config.describe()}): missing {missing[:10]}, "
                     f"unknown {unknown[:10]}, wrong shapes {wrong[:10]}.")
  params = from_layer_params(config, {p: np.asarray(v, np.float32) for p, v in params.items()})
  nnx.replace_by_pure_dict(state, unflatten_dict({p: jnp.asarray(v) for p, v in params.items()}))
  return nnx.merge(graphdef, state)

"""Moving parameters in and out of an `XCLIP` module as flat {path: array} dicts.

Conversion, pretrained files and checkpoint surgery all speak this one format: keys are tuples such as
("visual", "resblocks", 0, "attn", "query", "kernel"), matching `nnx.to_pure_dict` of the model state.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from flax.traverse_util import flatten_dict, unflatten_dict

from xclip_jax.models.config import ModelConfig
from xclip_jax.models.xclip import XCLIP, create_model

Path = tuple[str | int, ...]


def abstract_model(config: ModelConfig) -> XCLIP:
  """The model with `jax.ShapeDtypeStruct` leaves: shapes without allocating memory."""
  return nnx.eval_shape(lambda: create_model(config))


def parameter_shapes(config: ModelConfig) -> dict[Path, tuple[int, ...]]:
  return {path: tuple(leaf.shape) for path, leaf in flatten_dict(
      nnx.to_pure_dict(nnx.state(abstract_model(config)))).items()}


def flat_params(model: XCLIP) -> dict[Path, np.ndarray]:
  """All parameters of a model as host numpy arrays (gathers sharded arrays)."""
  return {path: np.asarray(jax.device_get(leaf)) for path, leaf in
          flatten_dict(nnx.to_pure_dict(nnx.state(model, nnx.Param))).items()}


def model_from_params(config: ModelConfig, params: Mapping[Path, np.ndarray]) -> XCLIP:
  """Builds an `XCLIP` whose parameters are exactly `params` (every parameter must be present)."""
  graphdef, state = nnx.split(abstract_model(config))  # traced once: it takes seconds for the large models
  shapes = {path: tuple(leaf.shape) for path, leaf in flatten_dict(nnx.to_pure_dict(state)).items()}
  missing = sorted("/".join(map(str, p)) for p in shapes if p not in params)
  unknown = sorted("/".join(map(str, p)) for p in params if p not in shapes)
  wrong = sorted(f"{'/'.join(map(str, p))}: {tuple(np.shape(params[p]))} != {shapes[p]}" for p in shapes
                 if p in params and tuple(np.shape(params[p])) != shapes[p])
  if missing or unknown or wrong:
    raise ValueError(f"Parameters do not fit the model config ({config.describe()}): missing {missing[:10]}, "
                     f"unknown {unknown[:10]}, wrong shapes {wrong[:10]}.")
  nnx.replace_by_pure_dict(state, unflatten_dict({p: jnp.asarray(v, jnp.float32) for p, v in params.items()}))
  return nnx.merge(graphdef, state)

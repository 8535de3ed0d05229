"""The model of a run: its architecture from config.model, or from whatever config.init_from names.

    model_config = model_config_from(config)         # a fresh model: config.model's variant, frames, overrides
    chosen = initial_model(config)                   # init_from read (xclip_jax.model_reader), data adapted
    chosen.config, chosen.model_config, chosen.params, chosen.source

`init_from.path` takes anything `xclip_jax.load_model` takes (one reader, `xclip_jax.model_reader`): a model
name, a converted directory, an HF / official / OpenAI PyTorch file, a training workdir, a gs:// path. The
architecture is the source's: config.model.variant and config.model.frames describe a fresh model only (a
CLIP source, which has no frame count, gets config.model.frames), and the data block follows the model
(data.num_frames, data.input_size). config.model still sets the run-time options and the ablations
(`RUNTIME_FIELDS`, `ABLATION_FIELDS`). A field of config.model.overrides that the source contradicts is an
error naming it. The chosen architecture is logged.
"""

from __future__ import annotations

import dataclasses
import logging
import os

import ml_collections
import numpy as np

from xclip_jax import model_reader, run_config
from xclip_jax.models.config import RUNTIME_FIELDS, ModelConfig, variant_config
from xclip_jax.models.params import Path, parameter_shapes

ABLATION_FIELDS = ("use_cross_frame", "use_mit", "use_prompt")
# The data fields that must equal a model field (the model's shapes): data field -> ModelConfig field.
DATA_SHAPE_FIELDS = {"num_frames": "num_frames", "input_size": "image_size"}


@dataclasses.dataclass
class InitialModel:
  """A run's model before training: the config to run with (data adapted), architecture, parameters.

  `params` is None for a random initialisation; `source` says where the parameters come from.
  """

  config: ml_collections.ConfigDict
  model_config: ModelConfig
  params: dict[Path, np.ndarray] | None
  source: str


def model_config_from(config: ml_collections.ConfigDict) -> ModelConfig:
  """The architecture named by config.model (variant, frames, overrides) with its run-time options."""
  m = config.model
  if int(m.frames) != int(config.data.num_frames):
    raise run_config.ConfigError(f"config.model.frames={m.frames} but config.data.num_frames="
                                 f"{config.data.num_frames}; they must agree (the MIT's temporal embedding has one "
                                 f"row per frame).")
  options = {name: m[name] for name in RUNTIME_FIELDS + ABLATION_FIELDS}
  return variant_config(m.variant, frames=int(m.frames), **options, **m.overrides.to_dict())


def _check_overrides(config: ml_collections.ConfigDict, source: ModelConfig, name: str) -> None:
  """One line naming the first config.model.overrides field that the source's architecture contradicts."""
  for field, value in sorted(config.model.overrides.to_dict().items()):
    if field in RUNTIME_FIELDS + ABLATION_FIELDS:
      continue
    if not hasattr(source, field):
      raise run_config.ConfigError(f"config.model.overrides.{field}: ModelConfig has no such field.")
    if getattr(source, field) != value:
      raise run_config.ConfigError(f"config.model.overrides.{field}={value!r} but init_from {name} has {field}="
                                   f"{getattr(source, field)!r}; the architecture comes from init_from: drop the "
                                   f"override (or start from another model).")


def with_model_shapes(config: ml_collections.ConfigDict, model_config: ModelConfig,
                      source: str) -> ml_collections.ConfigDict:
  """A copy of `config` whose data block (frames, input size) and model.frames fit `model_config`."""
  config = config.copy_and_resolve_references()
  changed = []
  for data_field, model_field in DATA_SHAPE_FIELDS.items():
    value = getattr(model_config, model_field)
    if int(config.data[data_field]) != value:
      changed.append(f"data.{data_field}={value} (was {config.data[data_field]})")
      config.data[data_field] = value
  config.model.frames = model_config.num_frames
  if changed:
    logging.info("%s: the data follow the model: %s", source, ", ".join(changed))
  return config


def _fit_ablations(model_config: ModelConfig, params: dict[Path, np.ndarray]) -> dict[Path, np.ndarray]:
  """The parameters this model has (ablations drop modules; modules it lacks start from random init)."""
  shapes = parameter_shapes(model_config)
  dropped = sorted("/".join(map(str, p)) for p in params if p not in shapes)
  fresh = sorted("/".join(map(str, p)) for p in shapes if p not in params)
  if dropped:
    logging.info("init_from: %d checkpoint tensors unused by this model (ablations), e.g. %s", len(dropped),
                 dropped[:3])
  if fresh:
    logging.info("init_from: %d parameters not in the checkpoint start from random init, e.g. %s", len(fresh),
                 fresh[:3])
  return {p: v for p, v in params.items() if p in shapes}


def model_from_source(config: ml_collections.ConfigDict, source: str | os.PathLike | None = None, *,
                      what: str = "init_from", options: tuple[str, ...] = RUNTIME_FIELDS + ABLATION_FIELDS
                      ) -> InitialModel:
  """The model read from `source` (default config.init_from.path) with the config.model fields `options`
  (run-time options and ablations), and the config adapted to it (see the module docstring)."""
  name = config.init_from.path if source is None else source
  found = model_reader.read_model(name, clip_frames=int(config.model.frames))
  _check_overrides(config, found.config, found.name)
  model_config = found.config.replace(**{field: config.model[field] for field in options})
  logging.info("%s %s; running with %s", what, found.describe(), model_config.describe())
  return InitialModel(with_model_shapes(config, model_config, f"{what} {found.name}"), model_config,
                      _fit_ablations(model_config, found.params), found.name)


def initial_model(config: ml_collections.ConfigDict) -> InitialModel:
  """config.init_from's model, or a random one of config.model's architecture when init_from is empty."""
  if config.init_from.path:
    return model_from_source(config)
  model_config = model_config_from(config)
  logging.info("Random initialisation: %s", model_config.describe())
  return InitialModel(config, model_config, None, "random initialisation")

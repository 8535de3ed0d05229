"""The one model reader: any model source -> its architecture (`ModelConfig`) and parameters.

    found = read_model("runs/demo/supervised")      # a training workdir: its latest checkpoint
    found = read_model("microsoft/xclip-base-patch32")   # a name: fetched and converted once (xclip_jax.zoo)
    found.config, found.params, found.kind, found.describe()

`xclip_jax.load_model` (inference), the trainer's `init_from` and `main --config.mode=evaluate` all read
through `read_model`, so a source that one of them takes, they all take. The sources (`KINDS`):

- a model name (`python -m xclip_jax.zoo list`, any HF XCLIP hub id, "openai:ViT-B/16"): fetched and converted
  once into the cache, then read as a converted directory;
- "jax": a converted directory (config.json + params.safetensors, `xclip_jax.pretrained`);
- "workdir": a training workdir, its latest (or a given) Orbax checkpoint, in the layout
  `xclip_jax.training.checkpointing` writes (`STATE`/`META` items, "model."-prefixed keys);
- "hf": a HuggingFace XCLIP directory; "xclip": an official X-CLIP .pth; "openai": an OpenAI CLIP .pt (CLIP
  becomes an X-CLIP whose new modules start from the official initialisation): converted on the fly
  (`xclip_jax.conversion`; .pth/.pt files need torch);
- any of these in a bucket (gs://...).

The architecture always comes from the source. Only a CLIP source has no frame count: its frames are chosen
(`frames` or `clip_frames`, default 8). Run-time options (`RUNTIME_FIELDS`: dtype, remat, ...) are the
reader's caller's to set (`with_runtime_options`). Importing this module is light: JAX, Orbax, torch and the
converters load only for the sources that need them.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from xclip_jax import pretrained, storage
from xclip_jax.models.config import RUNTIME_FIELDS, ModelConfig
from xclip_jax.models.params import Path

KINDS = ("jax", "workdir", "hf", "xclip", "openai")
# How a training checkpoint is laid out (written by xclip_jax.training.checkpointing): Orbax items, and the
# separator of the flat "model.visual.conv1" keys of the state item.
STATE, DATA, META = "state", "data", "meta"
SEPARATOR = "."
MODEL_PREFIX = "model" + SEPARATOR


@dataclasses.dataclass(frozen=True)
class ModelRead:
  """What `read_model` found.

  Attributes:
    config: the architecture (and the run-time options stored with it).
    params: flat float32 parameters {path: array}, per-layer layout.
    kind: which of `KINDS` the source was.
    location: where it was read from (a cache directory for a name).
    name: the source as given.
  """

  config: ModelConfig
  params: dict[Path, np.ndarray]
  kind: str
  location: str
  name: str

  def describe(self) -> str:
    """One line for logs: what was read and the architecture it has."""
    where = self.name if self.name == self.location else f"{self.name} ({self.location})"
    return f"{where}, {self.kind}: {self.config.describe()}"


def detect_kind(path: str | os.PathLike) -> str:
  """Which of `KINDS` a local or gs:// path holds; raises naming the path if none."""
  path = storage.path(path)
  if path.is_dir():
    if pretrained.is_pretrained_dir(path):
      return "jax"
    if (path / "checkpoints").is_dir():
      return "workdir"
    config = path / "config.json"
    if config.is_file():
      try:
        if json.loads(config.read_text()).get("model_type") == "xclip":
          return "hf"
      except json.JSONDecodeError as error:
        raise ValueError(f"{config} is not valid JSON: {error}") from error
    raise ValueError(f"{path} is neither an xclip_jax model directory (config.json + params.safetensors, written by "
                     f"scripts/convert_checkpoint.py), a training workdir (checkpoints/), nor a HuggingFace XCLIP "
                     f"directory.")
  if path.is_file():
    return "xclip" if path.suffix == ".pth" else "openai"
  raise FileNotFoundError(f"No model at {path}.")


def _is_clip_name(name: str) -> bool:
  from xclip_jax import zoo

  try:
    return zoo.find_model(name).source == "openai"
  except zoo.UnknownModelError:
    return False


def read_model(source: str | os.PathLike, *, frames: int | None = None, clip_frames: int | None = None,
               revision: str | None = None, step: int | None = None) -> ModelRead:
  """Reads a model from any source (see the module docstring).

  Args:
    source: a local path (always tried first; an `os.PathLike` is never taken as a name), a gs:// URL or a
      model name.
    frames: frames per clip the caller needs: chooses T for a CLIP source; an X-CLIP source trained with
      another count is refused.
    clip_frames: T for a CLIP source only; an X-CLIP source keeps its own (what a fine-tune wants).
    revision: branch, tag or commit of an HF hub repo.
    step: a training workdir's checkpoint step (default: its latest).

  Raises:
    ValueError: frames do not match, or the source is not a model; FileNotFoundError: nothing there;
    `xclip_jax.zoo.ZooError`: an unknown name or a failed download.
  """
  from xclip_jax import zoo

  name = os.fspath(source)
  wanted = frames
  if wanted is None and clip_frames is not None:
    is_path = isinstance(source, os.PathLike) or storage.is_remote(name) or os.path.exists(name)
    clip = (detect_kind(name) == "openai") if is_path else _is_clip_name(name)
    wanted = clip_frames if clip else None
  path = zoo.resolve(source, frames=wanted, revision=revision)
  kind = detect_kind(path)
  if step is not None and kind != "workdir":
    raise ValueError(f"step={step} applies to a training workdir; {name} is a {kind} model.")
  if kind == "jax":
    config, params = pretrained.load_pretrained(path)
  elif kind == "workdir":
    config, params = read_workdir(path, step)
  else:
    from xclip_jax.conversion import import_checkpoint

    config, params, _ = import_checkpoint(kind, path, frames=wanted)
  if wanted is not None and wanted != config.num_frames:
    raise ValueError(f"{name} was trained with {config.num_frames} frames; it cannot be loaded with "
                     f"frames={wanted}.")
  return ModelRead(config, params, kind, os.fspath(path), name)


def read_workdir(workdir: str | os.PathLike, step: int | None = None
                 ) -> tuple[ModelConfig, dict[Path, np.ndarray]]:
  """Model config and parameters (host numpy, per-layer layout) of a workdir's latest (or given) checkpoint.

  Restored onto the host CPU, whatever mesh, device count or process count wrote the checkpoint.
  """
  import jax
  import orbax.checkpoint as ocp

  from xclip_jax.models.params import to_layer_params

  directory = storage.path(workdir) / "checkpoints"
  manager = ocp.CheckpointManager(storage.absolute(directory), item_handlers={
      STATE: ocp.StandardCheckpointHandler(), META: ocp.JsonCheckpointHandler()})
  try:
    step = manager.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"{directory} holds no checkpoint.")
    host = jax.sharding.SingleDeviceSharding(jax.devices("cpu")[0])
    # The state's own metadata: the manager's item_metadata would also look at the data-iterator item, which this
    # reader has no handler for (grain's), and warn twice that it "could not be restored".
    saved = ocp.StandardCheckpointHandler().metadata(storage.absolute(directory) / str(step) / STATE)
    target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=host), saved,
                          is_leaf=lambda m: hasattr(m, "shape") and hasattr(m, "dtype"))
    restored = manager.restore(step, args=ocp.args.Composite(**{STATE: ocp.args.StandardRestore(target),
                                                                META: ocp.args.JsonRestore()}))
  finally:
    manager.close()
  meta = dict(restored[META])
  config = ModelConfig.from_dict(meta["model_config"], source=f"{directory / str(step)} meta")
  params = {tuple(int(p) if p.isdigit() else p for p in key[len(MODEL_PREFIX):].split(SEPARATOR)): np.asarray(value)
            for key, value in restored[STATE].items() if key.startswith(MODEL_PREFIX)}
  return config, to_layer_params(config, params)


def with_runtime_options(config: ModelConfig, options: Mapping[str, Any], *, source: str,
                         allowed: tuple[str, ...] = RUNTIME_FIELDS) -> ModelConfig:
  """`config` with run-time options changed; any other field is refused in one line naming it."""
  bad = sorted(set(options) - set(allowed))
  if bad:
    raise ValueError(f"{source}: {bad} cannot be changed on a trained model (only the run-time options "
                     f"{sorted(allowed)}).")
  return config.replace(**options)

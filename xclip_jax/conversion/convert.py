"""Importing checkpoints from OpenAI CLIP, official X-CLIP and HuggingFace, and exporting them back.

Every source becomes (ModelConfig, flat float32 params); every target is written from that pair. Inputs
and outputs may be gs:// URLs: a bucket input is downloaded to a temporary folder first (torch and
safetensors read local files), a bucket output written locally and uploaded (`xclip_jax.storage`).
"""

from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Mapping
from typing import Any

import numpy as np
from etils import epath
from safetensors import safe_open
from safetensors.numpy import save_file

from xclip_jax import pretrained, storage
from xclip_jax.conversion import hf, official, torch_io
from xclip_jax.conversion.rules import ConversionError, apply_rules, invert_rules
from xclip_jax.models.config import ModelConfig
from xclip_jax.models.params import Path, flat_params, parameter_shapes
from xclip_jax.models.xclip import create_model

SOURCES = ("openai", "xclip", "hf", "jax")
TARGETS = ("jax", "hf", "official")
HF_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
# Bump when a change to the importers changes what they produce: converted models cached by name
# (xclip_jax.zoo) are keyed by it, so they are converted again.
CONVERTER_VERSION = 1


def is_xclip_module(path: Path) -> bool:
  """Parameters X-CLIP adds to CLIP (randomly initialised when starting from CLIP)."""
  if path[0] in ("mit", "prompts_visual_ln", "prompts_visual_proj", "prompts_generator"):
    return True
  return path[0] == "visual" and len(path) > 3 and str(path[3]).startswith("message_")


def _read_safetensors(path: pathlib.Path) -> dict[str, np.ndarray]:
  try:
    try:
      with safe_open(str(path), framework="numpy") as handle:
        return {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 (not a dict)
    except TypeError:  # bfloat16 has no numpy dtype: read through JAX instead
      with safe_open(str(path), framework="flax") as handle:
        return {key: np.asarray(handle.get_tensor(key), dtype=np.float32) for key in handle.keys()}  # noqa: SIM118
  except Exception as error:  # safetensors raises its own (Rust) error types for corrupt files
    raise ConversionError(f"{path} is not a readable safetensors file: {error}") from error


def read_hf_directory(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
  """config.json plus weights (safetensors, sharded safetensors, or pytorch_model.bin) of an HF model dir."""
  path = pathlib.Path(path)
  config_path = path / "config.json"
  if not config_path.is_file():
    raise FileNotFoundError(f"{path} is not a HuggingFace model directory: {config_path} is missing.")
  try:
    hf_config = json.loads(config_path.read_text())
  except json.JSONDecodeError as error:
    raise ConversionError(f"{config_path} is not valid JSON: {error}") from error
  if (path / "model.safetensors").is_file():
    state = _read_safetensors(path / "model.safetensors")
  elif (path / "model.safetensors.index.json").is_file():
    index = json.loads((path / "model.safetensors.index.json").read_text())
    state = {}
    for shard in sorted(set(index.get("weight_map", {}).values())):
      state.update(_read_safetensors(path / shard))
  elif (path / "pytorch_model.bin").is_file():
    state = torch_io.load_state_dict(path / "pytorch_model.bin")
  else:
    raise FileNotFoundError(f"{path} holds none of the weight files {HF_WEIGHT_FILES}.")
  return hf_config, {key: np.asarray(value, dtype=np.float32) for key, value in state.items()}


def import_checkpoint(source: str, path: str | os.PathLike, *, frames: int | None = None, seed: int = 0
                      ) -> tuple[ModelConfig, dict[Path, np.ndarray], dict[str, Any]]:
  """Reads a checkpoint into (config, params, provenance metadata).

  Args:
    source: "openai" (CLIP TorchScript archive or state dict), "xclip" (official .pth), "hf" (XCLIPModel
      directory) or "jax" (a directory written by this project).
    path: the checkpoint file or directory.
    frames: frames per clip; required to match X-CLIP/HF checkpoints, chooses T for CLIP (default 8).
    seed: initialisation seed of the X-CLIP modules when starting from CLIP.
  """
  name = str(path)
  if storage.is_remote(path) and source != "jax":  # "jax" directories are read from the bucket directly
    with storage.local_copy(path) as local:
      config, params, metadata = import_checkpoint(source, local, frames=frames, seed=seed)
    return config, params, {**metadata, "input": name}
  metadata: dict[str, Any] = {"source": source, "input": name if storage.is_remote(path) else os.path.abspath(path)}
  if source == "jax":
    config, params = pretrained.load_pretrained(path)
    if frames is not None and frames != config.num_frames:
      raise ConversionError(f"{name} is a {config.num_frames}-frame model but --frames={frames}.")
    return config, params, metadata
  if source == "hf":
    hf_config, state = read_hf_directory(path)
    config = hf.config_from_hf(hf_config, source_name=name, frames=frames)
    params = apply_rules(state, hf.hf_rules(config), parameter_shapes(config), source_name=name,
                         ignored=hf.IGNORED_KEYS)
    return config, params, metadata
  if source not in ("openai", "xclip"):
    raise ValueError(f"Unknown source {source!r}; choose one of {SOURCES}.")
  state = torch_io.load_state_dict(path)
  state = {k: v for k, v in state.items() if k not in official.OPENAI_METADATA_KEYS}
  has_xclip_modules = any(k.startswith(("mit.", "prompts_")) or ".message_" in k for k in state)
  if source == "openai" and has_xclip_modules:
    raise ConversionError(f"{name} contains X-CLIP modules (mit/prompts/message); convert it with --source xclip.")
  if source == "xclip" and not has_xclip_modules:
    raise ConversionError(f"{name} has no X-CLIP modules (mit/prompts/message); a CLIP model converts with "
                          f"--source openai.")
  config = official.infer_config(state, source_name=name, frames=frames)
  shapes = parameter_shapes(config)
  if source == "xclip":
    return config, apply_rules(state, official.official_rules(config), shapes, source_name=name), metadata
  # OpenAI CLIP: CLIP tensors map one to one; X-CLIP's new modules start from the official initialisation.
  params = apply_rules(state, official.clip_rules(config), shapes, source_name=name, allow_unfilled=is_xclip_module)
  fresh = flat_params(create_model(config, seed=seed))
  params.update({p: v for p, v in fresh.items() if p not in params})
  metadata["init_seed"] = seed
  return config, params, metadata


def export_checkpoint(target: str, config: ModelConfig, params: Mapping[Path, np.ndarray],
                      output: str | os.PathLike, *, metadata: Mapping[str, Any] | None = None,
                      overwrite: bool = False) -> epath.Path:
  """Writes (config, params) as an xclip_jax directory, an HF directory or an official .pth file."""
  output = storage.path(output)
  if target == "jax":
    return pretrained.save_pretrained(output, config, params, metadata=metadata, overwrite=overwrite)
  if target == "hf":
    hf_config = hf.config_to_hf(config)
    state = invert_rules(params, hf.hf_rules(config))
    with storage.staged_directory(output, overwrite=overwrite, last=["config.json"]) as staging:
      (staging / "config.json").write_text(json.dumps(hf_config, indent=2, sort_keys=True) + "\n")
      save_file(state, str(staging / "model.safetensors"), metadata={"format": "pt"})
    return output
  if target == "official":
    state = invert_rules(params, official.official_rules(config))
    if output.exists() and not overwrite:
      raise FileExistsError(f"{output} already exists; pass --overwrite to replace it.")
    with storage.staged_file(output) as staging:
      torch_io.save_state_dict(state, staging, wrap_key="model")
    return output
  raise ValueError(f"Unknown target {target!r}; choose one of {TARGETS}.")

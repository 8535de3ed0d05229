"""The converted-model directory: `config.json` (ModelConfig) + `params.safetensors`.

This is what `scripts/convert_checkpoint.py` writes and `xclip_jax.load_model` reads. safetensors needs
neither torch nor pickle, and the directory is written atomically: a failed write leaves no partial output.
It may be in a bucket (gs://...): written locally and uploaded with config.json last (readers look for it).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
from etils import epath
from safetensors import safe_open
from safetensors.numpy import load as load_safetensors
from safetensors.numpy import save_file

from xclip_jax import storage
from xclip_jax.models.config import ModelConfig
from xclip_jax.models.params import Path

FORMAT = "xclip_jax.pretrained"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
PARAMS_FILE = "params.safetensors"


def _key(path: Path) -> str:
  return "/".join(str(p) for p in path)


def _path(key: str) -> Path:
  return tuple(int(part) if part.isdigit() else part for part in key.split("/"))


def save_pretrained(output: str | os.PathLike, config: ModelConfig, params: Mapping[Path, np.ndarray], *,
                    metadata: Mapping[str, Any] | None = None, overwrite: bool = False) -> epath.Path:
  """Writes a model directory that `load_pretrained` / `xclip_jax.load_model` read."""
  with storage.staged_directory(output, overwrite=overwrite, last=[CONFIG_FILE]) as staging:
    document = {"format": FORMAT, "version": FORMAT_VERSION, "model": config.to_dict(),
                "metadata": dict(metadata or {})}
    (staging / CONFIG_FILE).write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    save_file({_key(p): np.asarray(v, dtype=np.float32, order="C") for p, v in params.items()},
              str(staging / PARAMS_FILE), metadata={"format": FORMAT})
  return storage.path(output)


def is_pretrained_dir(path: str | os.PathLike) -> bool:
  config = storage.path(path) / CONFIG_FILE
  if not config.is_file():
    return False
  try:
    return json.loads(config.read_text()).get("format") == FORMAT
  except (json.JSONDecodeError, AttributeError):
    return False


def read_config(path: str | os.PathLike) -> tuple[ModelConfig, dict[str, Any]]:
  config_path = storage.path(path) / CONFIG_FILE
  if not config_path.is_file():
    raise FileNotFoundError(f"{path} is not an xclip_jax model directory: {config_path} is missing.")
  try:
    document = json.loads(config_path.read_text())
  except json.JSONDecodeError as error:
    raise ValueError(f"{config_path} is not valid JSON: {error}") from error
  if document.get("format") != FORMAT:
    raise ValueError(f"{config_path} is not an xclip_jax model config (format {document.get('format')!r}); "
                     f"convert checkpoints with scripts/convert_checkpoint.py.")
  if document.get("version") != FORMAT_VERSION:
    raise ValueError(f"{config_path}: unsupported format version {document.get('version')!r}.")
  return ModelConfig.from_dict(document["model"], source=str(config_path)), document.get("metadata", {})


def load_pretrained(path: str | os.PathLike) -> tuple[ModelConfig, dict[Path, np.ndarray]]:
  """Reads a model directory: (config, flat float32 params)."""
  config, _ = read_config(path)
  params_path = storage.path(path) / PARAMS_FILE
  if not params_path.is_file():
    raise FileNotFoundError(f"{params_path} is missing.")
  try:
    if storage.is_remote(params_path):  # one read of the whole object
      params = {_path(key): value for key, value in load_safetensors(params_path.read_bytes()).items()}
    else:
      with safe_open(str(params_path), framework="numpy") as handle:
        params = {_path(key): handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 (not a dict)
  except Exception as error:  # safetensors raises its own error types for corrupt files
    raise ValueError(f"{params_path} cannot be read: {error}") from error
  return config, params

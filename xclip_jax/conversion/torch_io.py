"""Reading (and writing) PyTorch checkpoint files as numpy arrays.

torch is imported lazily, only here, so that training and inference never need it. Files are unpickled
with torch's `weights_only` loader; files that also pickle other objects (an official X-CLIP checkpoint
pickles its yacs config) go through a restricted unpickler that replaces those objects by inert stand-ins
rather than importing and executing their classes.
"""

from __future__ import annotations

import logging
import pathlib
import pickle
import re
import types
import zipfile
from collections.abc import Mapping
from typing import Any

import numpy as np

from xclip_jax.conversion.rules import ConversionError

TORCH_INSTALL_HINT = "pip install torch==2.13.0"


def require_torch() -> Any:
  try:
    import torch
  except ImportError as error:
    raise ImportError(f"Reading or writing PyTorch checkpoints needs torch, which is not installed. "
                      f"Install the CPU build with `{TORCH_INSTALL_HINT}`.") from error
  return torch


def _is_torchscript(path: pathlib.Path) -> bool:
  """TorchScript archives (OpenAI's released CLIP files) are zips holding compiled `code/`."""
  if not zipfile.is_zipfile(path):
    return False
  with zipfile.ZipFile(path) as archive:
    return any(re.search(r"(^|/)(code/|constants\.pkl$)", name) for name in archive.namelist())


class _StandIn(dict):
  """Inert replacement for a pickled object of a class outside the allowlist (never imported or run)."""

  def __init__(self, *args: Any, **kwargs: Any):
    super().__init__()
    self.__dict__["pickled_args"] = args

  def __setstate__(self, state: Any) -> None:
    self.__dict__["pickled_state"] = state


def _restricted_pickle_module(torch: Any, replaced: list[str]) -> types.ModuleType:
  """A `pickle` look-alike whose Unpickler resolves only the globals torch's weights-only loader allows.

  Anything else (e.g. `yacs.config.CfgNode` in official X-CLIP checkpoints) becomes an inert `_StandIn`
  subclass, so unpickling can neither import nor execute foreign code.
  """
  allowed = torch._weights_only_unpickler._get_allowed_globals()

  class RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
      qualified = f"{module}.{name}"
      if qualified in allowed:
        return allowed[qualified]
      replaced.append(qualified)
      return type(name, (_StandIn,), {"__module__": module})

  module = types.ModuleType("restricted_pickle")
  module.Unpickler = RestrictedUnpickler
  module.load = lambda file, **kwargs: RestrictedUnpickler(file, **kwargs).load()
  module.__dict__.update(HIGHEST_PROTOCOL=pickle.HIGHEST_PROTOCOL, UnpicklingError=pickle.UnpicklingError)
  return module


def _torch_load(torch: Any, path: pathlib.Path) -> Any:
  """`torch.load(weights_only=True)`; for files pickling other objects, the restricted unpickler above."""
  try:
    return torch.load(path, map_location="cpu", weights_only=True)
  except pickle.UnpicklingError:
    replaced: list[str] = []
    result = torch.load(path, map_location="cpu", weights_only=False,
                        pickle_module=_restricted_pickle_module(torch, replaced))
    logging.info("%s: objects of classes %s were replaced by inert stand-ins (they hold no weights).",
                 path, sorted(set(replaced)))
    return result


def _unwrap(obj: Any, path: pathlib.Path) -> Mapping[str, Any]:
  """Finds the state dict inside common checkpoint wrappers ({'model': ...}, {'state_dict': ...})."""
  for key in ("model", "state_dict", "module"):
    if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
      return _unwrap(obj[key], path)
  if not isinstance(obj, Mapping):
    raise ConversionError(f"{path}: expected a state dict (a mapping of tensors), found {type(obj).__name__}.")
  return obj


def load_state_dict(path: str | pathlib.Path) -> dict[str, np.ndarray]:
  """Loads a PyTorch checkpoint (TorchScript archive, state dict, or wrapped state dict) as float32 numpy."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"No such checkpoint file: {path}")
  torch = require_torch()
  try:
    if _is_torchscript(path):
      raw = torch.jit.load(str(path), map_location="cpu").state_dict()
    else:
      raw = _unwrap(_torch_load(torch, path), path)
  except (RuntimeError, EOFError, zipfile.BadZipFile) as error:
    raise ConversionError(f"{path}: not a readable PyTorch checkpoint ({error}).") from error
  prefix = "module."  # (Distributed)DataParallel wrappers
  if raw and all(key.startswith(prefix) for key in raw):
    raw = {key[len(prefix):]: value for key, value in raw.items()}
  state = {}
  non_tensors = []
  for key, value in raw.items():
    if isinstance(value, torch.Tensor):
      state[key] = value.detach().to(torch.float32).numpy() if value.is_floating_point() else value.numpy()
    else:
      non_tensors.append(key)
  if non_tensors:
    raise ConversionError(f"{path}: entries {non_tensors[:10]} of the state dict are not tensors.")
  return state


def save_state_dict(state: Mapping[str, np.ndarray], path: str | pathlib.Path, wrap_key: str | None = None) -> None:
  """Writes numpy arrays as a PyTorch state dict (optionally wrapped as {wrap_key: state})."""
  torch = require_torch()
  tensors = {key: torch.from_numpy(np.asarray(value, order="C")) for key, value in state.items()}
  torch.save({wrap_key: tensors} if wrap_key else tensors, str(path))

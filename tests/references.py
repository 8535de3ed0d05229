"""Reference PyTorch implementations used by the parity tests (imported only by tests needing torch).

- OpenAI's own CLIP code (`clip/model.py` of the `openai-clip` package, requirements-dev.txt), loaded by
  file path because `clip/__init__.py` imports torchvision, which we do not install.
- transformers' `XCLIPModel`, randomly initialised.
"""

from __future__ import annotations

import functools
import importlib.util
import pathlib
import types

import numpy as np


@functools.cache
def openai_clip_file(name: str) -> types.ModuleType:
  """A module of OpenAI's `clip` package (e.g. "model", "simple_tokenizer"), without the package import."""
  spec = importlib.util.find_spec("clip")
  if spec is None or not spec.submodule_search_locations:
    raise ImportError("the openai-clip package is not installed (pip install -r requirements-dev.txt)")
  path = pathlib.Path(spec.submodule_search_locations[0]) / f"{name}.py"
  module_spec = importlib.util.spec_from_file_location(f"_openai_clip_{name}", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module


def randomize_(model, seed: int, scale: float = 0.05) -> None:
  """Overwrites every floating parameter with random values (LayerNorms around 1/0, logit scale ln 100).

  Random init alone leaves LayerNorms at exactly 1/0 and HF's Linear std at 1.0; parity tests are more
  telling when every tensor is distinct and the activations stay in a sensible range.
  """
  import torch

  generator = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for name, param in model.named_parameters():
      noise = torch.randn(param.shape, generator=generator)
      if name.endswith("logit_scale"):
        param.copy_(torch.tensor(np.log(100.0)))
      elif param.ndim == 1 and ("norm" in name or "ln" in name) and name.endswith("weight"):
        param.copy_(1.0 + 0.1 * noise)
      elif name.endswith("alpha"):
        param.copy_(0.1 + 0.05 * noise)
      elif "class_embedding" in name or "position" in name:
        param.copy_(0.5 * noise)
      else:
        param.copy_(scale * noise)


def random_videos(batch: int, frames: int, size: int, seed: int) -> np.ndarray:
  """Normalised-looking float32 videos (B, T, H, W, 3)."""
  return np.random.default_rng(seed).normal(size=(batch, frames, size, size, 3)).astype(np.float32)


def max_abs_diff(a, b) -> float:
  return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))

"""xclip_jax: X-CLIP video recognition (Ni et al., ECCV 2022) in JAX/Flax.

    import xclip_jax
    model = xclip_jax.load_model("microsoft/xclip-base-patch32")  # a name (xclip_jax.available_models()) or a path
    text = model.encode_text(xclip_jax.tokenize(["archery", "juggling balls"]))
    logits = model(videos, text_features=text)  # videos: (B, T, H, W, 3) float32, ImageNet-normalised

Names are imported on first use (PEP 562), so light modules such as the data pipeline, which grain
imports in every worker process, do not pay for JAX and Flax.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "InferenceModel": "xclip_jax.inference", "load_model": "xclip_jax.inference",
    "normalize_frames": "xclip_jax.inference", "VARIANTS": "xclip_jax.models.config",
    "ModelConfig": "xclip_jax.models.config", "variant_config": "xclip_jax.models.config",
    "XCLIP": "xclip_jax.models.xclip", "create_model": "xclip_jax.models.xclip", "tokenize": "xclip_jax.tokenizer",
    "available_models": "xclip_jax.zoo",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
  if name not in _EXPORTS:
    raise AttributeError(f"module 'xclip_jax' has no attribute {name!r}")
  value = getattr(importlib.import_module(_EXPORTS[name]), name)
  globals()[name] = value
  return value


def __dir__() -> list[str]:
  return sorted(list(globals()) + __all__)

"""The user-facing model: `xclip_jax.load_model(name or path)` and compiled inference entry points.

The NNX module is split once into (graphdef, state); each entry point is a `jax.jit` function of the
state, so calls after the first reuse the compiled program. Class texts can be encoded once with
`encode_text` and passed as `text_features=` to every later call (what the official code caches).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from xclip_jax import model_reader
from xclip_jax.data import device_ops
from xclip_jax.models import frame_count, layers
from xclip_jax.models.config import ModelConfig
from xclip_jax.models.params import flat_params, model_from_params
from xclip_jax.models.xclip import XCLIP, VideoFeatures
from xclip_jax.tokenizer import tokenize


def normalize_frames(frames_uint8: np.ndarray | jax.Array) -> jax.Array:
  """uint8 RGB frames (..., 3) -> float32 input for the model (ImageNet mean/std, as the official code)."""
  return device_ops.normalize(jnp.asarray(frames_uint8))


class InferenceModel:
  """A loaded X-CLIP model with jit-compiled `__call__`, `encode_text`, `encode_video` and `logits`."""

  def __init__(self, module: XCLIP):
    self.config: ModelConfig = module.config
    self.graphdef, self.state = nnx.split(layers.store_weights_in_compute_dtype(module))
    graphdef = self.graphdef
    options = layers.inference_compiler_options(self.config.dtype)  # those of main's evaluation programs
    self._encode_text = jax.jit(lambda state, tokens: nnx.merge(graphdef, state).encode_text(tokens),
                                compiler_options=options)
    self._encode_video = jax.jit(lambda state, videos: nnx.merge(graphdef, state).encode_video(videos),
                                 compiler_options=options)
    self._logits = jax.jit(lambda state, video, text: nnx.merge(graphdef, state).logits(video, text),
                           compiler_options=options)

  @property
  def module(self) -> XCLIP:
    """The NNX module (shares parameters with this object)."""
    return nnx.merge(self.graphdef, self.state)

  def encode_text(self, tokens: np.ndarray | jax.Array) -> jax.Array:
    """Class-text embeddings (K, E) from tokens (K, 77) int32 (see `xclip_jax.tokenize`)."""
    return self._encode_text(self.state, jnp.asarray(tokens, jnp.int32))

  def encode_video(self, videos: np.ndarray | jax.Array) -> VideoFeatures:
    """Video embeddings and prompt context from videos (B, T, H, W, 3) float32, ImageNet-normalised."""
    return self._encode_video(self.state, jnp.asarray(videos, jnp.float32))

  def logits(self, video: VideoFeatures, text_features: jax.Array) -> jax.Array:
    return self._logits(self.state, video, jnp.asarray(text_features, jnp.float32))

  def __call__(self, videos: np.ndarray | jax.Array, tokens: np.ndarray | jax.Array | None = None, *,
               text_features: jax.Array | None = None) -> jax.Array:
    """Logits (B, K): videos (B, T, H, W, 3) float32 normalised; class texts as tokens or text_features."""
    if (tokens is None) == (text_features is None):
      raise ValueError("Pass exactly one of `tokens` or `text_features`.")
    if text_features is None:
      text_features = self.encode_text(tokens)
    return self.logits(self.encode_video(videos), text_features)

  def classify(self, videos: np.ndarray | jax.Array, class_names: Sequence[str]) -> np.ndarray:
    """Softmax probabilities (B, K) of videos over any class names (open-set recognition)."""
    logits = self(videos, tokenize(list(class_names), context_length=self.config.context_length, truncate=True))
    return np.asarray(jax.nn.softmax(logits, axis=-1))

  def at_frames(self, frames: int, method: str | None = None) -> InferenceModel:
    """The same model taking `frames` frames per clip: the MIT's temporal position table resized
    (models/frame_count.py; `method` one of its METHODS, default its DEFAULT_METHOD, measured)."""
    if frames == self.config.num_frames:
      return self
    config, params = frame_count.at_frames(self.config, flat_params(self.module), frames,
                                           method or frame_count.DEFAULT_METHOD)
    return InferenceModel(model_from_params(config, params))

  def __repr__(self) -> str:
    count = sum(x.size for x in jax.tree.leaves(self.state))
    return f"InferenceModel({count / 1e6:.1f}M parameters; {self.config.describe()})"


def load_model(name_or_path: str | os.PathLike, *, frames: int | None = None, revision: str | None = None,
               dtype: str | None = None, **overrides: Any) -> InferenceModel:
  """Loads a model for inference, by name or from a local path.

  Args:
    name_or_path: a local path (always tried first; an `os.PathLike` is never taken as a name): an
      xclip_jax model directory (from scripts/convert_checkpoint.py), a training workdir (its latest
      checkpoint), or, converted on the fly, a HuggingFace XCLIP directory, an official X-CLIP `.pth` or an
      OpenAI CLIP `.pt` (these need torch). Otherwise a model name (`xclip_jax.available_models()`): an HF
      hub id such as "microsoft/xclip-base-patch32" (any XCLIP repo), an official release file such as
      "k400_16_8", or "openai:ViT-B/16" (CLIP turned into X-CLIP); downloaded and converted once into
      `$XCLIP_JAX_CACHE`, then read from there.
    frames: frames per clip for CLIP (openai: names and .pt files; default 8); for X-CLIP models, checked
      against the trained model when given.
    revision: branch, tag or commit of an HF hub repo (default main).
    dtype: compute dtype ("float32" default; "bfloat16" for speed on accelerators and on CPUs with AVX512-BF16
      or AMX: docs/performance.md#bfloat16-on-the-cpu). In bf16 the products' weights are held in bf16.
    **overrides: run-time `ModelConfig` options such as `attention_implementation="xla"`.
  """
  found = model_reader.read_model(name_or_path, frames=frames, revision=revision)
  changes = dict(overrides, **({"dtype": dtype} if dtype else {}))
  config = model_reader.with_runtime_options(found.config, changes, source=f"load_model({found.name!r})",
                                             allowed=("dtype", "attention_implementation", "remat"))
  logging.info("load_model: %s", found.describe())
  return InferenceModel(model_from_params(config, found.params))

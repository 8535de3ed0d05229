"""The functions that leave JAX: the classifier, the two towers and the step that combines them.

Each is a pure function `f(weights, *inputs)` of a flat {name: array} weights dict (names as in a model
directory's params.safetensors, "visual/conv1/kernel") and of arrays with a dynamic batch (videos) or number of
texts. The ONNX files bake the weights in as constants; the StableHLO artifacts take them as their first argument
(one weights file serves all four). Videos go in as uint8 RGB frames (batch, T, H, W, 3): the ImageNet
normalisation of the data pipeline (`data.device_ops.normalize`) is inside, so callers only decode and sample.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from xclip_jax.data import device_ops
from xclip_jax.inference import InferenceModel
from xclip_jax.models.config import ModelConfig

BATCH, TEXTS = "batch", "texts"  # names of the dynamic dimensions, in the artifacts and the manifest


@dataclasses.dataclass(frozen=True)
class TensorSpec:
  """One input or output: its name, shape (ints, or BATCH / TEXTS for the dynamic dimensions) and dtype."""

  name: str
  shape: tuple[int | str, ...]
  dtype: str

  def describe(self) -> dict[str, Any]:
    return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}


@dataclasses.dataclass(frozen=True)
class ExportFunction:
  """A function to export: `fn(weights, *inputs)` returns the outputs in the order of `outputs`."""

  name: str
  summary: str
  fn: Callable[..., tuple[jax.Array, ...]]
  inputs: tuple[TensorSpec, ...]
  outputs: tuple[TensorSpec, ...]

  def abstract_inputs(self) -> list[jax.ShapeDtypeStruct]:
    """The inputs as shape structs whose BATCH / TEXTS dimensions are symbolic (`jax.export.symbolic_shape`)."""
    dims = dict(zip((BATCH, TEXTS), jax.export.symbolic_shape(f"{BATCH}, {TEXTS}"), strict=True))
    return [jax.ShapeDtypeStruct(tuple(dims.get(d, d) for d in spec.shape), jnp.dtype(spec.dtype))
            for spec in self.inputs]

  def check_outputs(self, weights: dict[str, Any]) -> None:
    """Raises if the traced outputs do not have the declared shapes and dtypes (what the manifest states)."""
    traced = jax.eval_shape(self.fn, weights, *self.abstract_inputs())
    got = [(tuple(str(d) if not isinstance(d, int) else d for d in x.shape), str(x.dtype)) for x in traced]
    declared = [(spec.shape, spec.dtype) for spec in self.outputs]
    if got != declared:
      raise AssertionError(f"export: {self.name} returns {got}, declared {declared}")

  def bound(self, weights: dict[str, Any]) -> Callable[..., tuple[jax.Array, ...]]:
    """`fn` with its weights given: a function of the inputs only (the weights become constants when traced)."""
    return lambda *inputs: self.fn(weights, *inputs)


def _leaf_name(key_path) -> str:
  """"visual/conv1/kernel" for a state leaf's key path (the Variable's trailing `.value` dropped)."""
  parts = [str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in key_path]
  return "/".join(parts[:-1] if parts and parts[-1] == "value" else parts)


class ExportedModel:
  """A loaded model cut into the exported functions, with its weights as a flat {name: float32 array} dict
  (scalars as shape (1,))."""

  def __init__(self, model: InferenceModel, class_embeddings: np.ndarray | None = None):
    self.config: ModelConfig = model.config
    self.graphdef = model.graphdef
    named, self._treedef = jax.tree_util.tree_flatten_with_path(model.state)
    self.names = [_leaf_name(path) for path, _ in named]
    if len(set(self.names)) != len(self.names):
      raise ValueError("export: two model parameters have the same name")
    # At least one dimension: safetensors stores a scalar (logit_scale) as shape (1,). `module` restores shapes.
    self.shapes = {name: tuple(leaf.shape) for name, (_, leaf) in zip(self.names, named, strict=True)}
    self.weights = {name: np.atleast_1d(np.asarray(jax.device_get(leaf), np.float32)) for name, (_, leaf) in
                    zip(self.names, named, strict=True)}
    self.class_embeddings = None if class_embeddings is None else np.asarray(class_embeddings, np.float32)

  def module(self, weights: dict[str, Any]):
    """The NNX module with these weights (traced arrays inside an export)."""
    state = jax.tree.unflatten(self._treedef, [jnp.reshape(weights[name], self.shapes[name]) for name in self.names])
    return nnx.merge(self.graphdef, state)

  # --- the functions --------------------------------------------------------------------------------------
  def _video_features(self, weights, video):
    return self.module(weights).encode_video(device_ops.normalize(video))

  def _scores(self, weights, embedding, prompt_context, text_features):
    from xclip_jax.models.xclip import VideoFeatures

    logits = self.module(weights).logits(VideoFeatures(embedding, prompt_context), text_features)
    return logits, jax.nn.softmax(logits, axis=-1)

  def classifier_fn(self, weights, video):
    features = self._video_features(weights, video)
    return self._scores(weights, features.embedding, features.prompt_context, jnp.asarray(self.class_embeddings))

  def video_encoder_fn(self, weights, video):
    features = self._video_features(weights, video)
    return (features.embedding,) if features.prompt_context is None else tuple(features)

  def text_encoder_fn(self, weights, tokens):
    return (self.module(weights).encode_text(tokens),)

  def logits_fn(self, weights, embedding, *rest):
    prompt_context, text_features = rest if self.config.use_prompt else (None, *rest)
    return self._scores(weights, embedding, prompt_context, text_features)

  # --- their signatures -----------------------------------------------------------------------------------
  def functions(self) -> list[ExportFunction]:
    """The classifier (when labels were given), the video encoder, the text encoder and the combining step."""
    c = self.config
    video = TensorSpec("video", (BATCH, c.num_frames, c.image_size, c.image_size, 3), "uint8")
    embedding = TensorSpec("video_embedding", (BATCH, c.embed_dim), "float32")
    context = TensorSpec("prompt_context", (BATCH, c.num_patches, c.embed_dim), "float32")
    video_out = (embedding, context) if c.use_prompt else (embedding,)
    text_features = TensorSpec("text_features", (TEXTS, c.embed_dim), "float32")
    scores = lambda classes: (TensorSpec("logits", (BATCH, classes), "float32"),
                              TensorSpec("probabilities", (BATCH, classes), "float32"))
    functions = []
    if self.class_embeddings is not None:
      functions.append(ExportFunction("classifier", "uint8 video -> logits and probabilities over the labels given "
                                      "at export", self.classifier_fn, (video,), scores(len(self.class_embeddings))))
    prompted = " and prompt context" if c.use_prompt else ""
    functions += [
        ExportFunction("video_encoder", f"uint8 video -> video embedding{prompted}", self.video_encoder_fn, (video,),
                       video_out),
        ExportFunction("text_encoder", "CLIP BPE tokens -> text features (before the video-specific prompts)",
                       self.text_encoder_fn, (TensorSpec("tokens", (TEXTS, c.context_length), "int32"),),
                       (text_features,)),
        ExportFunction("logits", "video_encoder and text_encoder outputs -> logits and probabilities",
                       self.logits_fn, (*video_out, text_features), scores(TEXTS)),
    ]
    return functions


def function_named(functions: Sequence[ExportFunction], name: str) -> ExportFunction:
  [found] = [f for f in functions if f.name == name]
  return found

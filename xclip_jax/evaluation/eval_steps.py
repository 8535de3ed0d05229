"""Evaluation steps (pure functions of the model's nnx state), jitted by `xclip_jax.evaluation.evaluator`.

Probability step: every view of a video is classified and the softmax is averaged over its views (the
official multi-view protocol sums them: the same ranking). The eval step returns these per-video
probabilities with the batch's labels, which `scoring` turns into accuracy (the one metrics computation; also
`video_files.classify_videos`' probabilities come from the probability step). The text encoder turns
class-name tokens into the class features every step compares against.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from xclip_jax.data import batches, device_ops

Metrics = dict[str, jax.Array]
PROBABILITIES = "probabilities"  # the eval step's (b, K) output, beside the batch's per-video rows


def _view_probabilities(model_graphdef: nnx.GraphDef, model_state: nnx.State, videos: jax.Array,
                        text_features: jax.Array) -> jax.Array:
  """Class softmax of every view: videos (b, V, T, H, W, 3) uint8 -> (b, V, K) float32."""
  model = nnx.merge(model_graphdef, model_state)
  b, views = videos.shape[:2]
  inputs = device_ops.normalize(videos.reshape(b * views, *videos.shape[2:]), model.dtype)
  logits = model(inputs, text_features=text_features)
  return jax.nn.softmax(logits.astype(jnp.float32), axis=-1).reshape(b, views, -1)


def make_probability_step(model_graphdef: nnx.GraphDef) -> Callable:
  """Returns step(model_state, videos_uint8 (b, V, T, H, W, 3), text_features) -> (b, K) class probabilities,
  the softmax averaged over the V views (ranks as the official sum of the views' softmax)."""

  def step(model_state: nnx.State, videos: jax.Array, text_features: jax.Array) -> jax.Array:
    return _view_probabilities(model_graphdef, model_state, videos, text_features).mean(axis=1)

  return step


def make_eval_step(model_graphdef: nnx.GraphDef) -> Callable:
  """Returns step(model_state, batch, text_features) -> the batch's per-video "probabilities" (b, K) with its
  "label", "index", "valid" and "decode_ok" rows, for `scoring.score` (every process gets every row)."""
  probabilities = make_probability_step(model_graphdef)

  def step(model_state: nnx.State, batch: dict[str, jax.Array], text_features: jax.Array) -> Metrics:
    rows = {key: batch[key] for key in batches.EVAL_ROW_FIELDS}
    return {PROBABILITIES: probabilities(model_state, batch[batches.VIDEO], text_features), **rows}

  return step


def make_text_encoder(model_graphdef: nnx.GraphDef) -> Callable:
  """Returns encode(model_state, tokens) -> (K, E) class-text features (computed once per class list)."""
  return lambda model_state, tokens: nnx.merge(model_graphdef, model_state).encode_text(tokens)

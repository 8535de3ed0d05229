"""Evaluation steps (pure functions of the model's nnx state), jitted by `xclip_jax.evaluation.evaluator`.

Eval step: every view of a video is classified, softmax probabilities are summed over views (official
multi-view protocol) and top-1/top-5 hits are counted over valid rows; failed decodes count as misses.
The probability step returns the view-averaged softmax (prediction); the text encoder turns class-name
tokens into the class features every step compares against.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from xclip_jax.data import device_ops

Metrics = dict[str, jax.Array]


def _view_probabilities(model_graphdef: nnx.GraphDef, model_state: nnx.State, videos: jax.Array,
                        text_features: jax.Array) -> jax.Array:
  """Class softmax of every view: videos (b, V, T, H, W, 3) uint8 -> (b, V, K) float32."""
  model = nnx.merge(model_graphdef, model_state)
  b, views = videos.shape[:2]
  inputs = device_ops.normalize(videos.reshape(b * views, *videos.shape[2:]), model.dtype)
  logits = model(inputs, text_features=text_features)
  return jax.nn.softmax(logits.astype(jnp.float32), axis=-1).reshape(b, views, -1)


def make_eval_step(model_graphdef: nnx.GraphDef, top_k: int = 5) -> Callable:
  """Returns step(model_state, batch, text_features) -> counts summed over the (global) batch."""

  def step(model_state: nnx.State, batch: dict[str, jax.Array], text_features: jax.Array) -> Metrics:
    probabilities = _view_probabilities(model_graphdef, model_state, batch["video"], text_features).sum(axis=1)
    k = min(top_k, probabilities.shape[-1])
    _, top = jax.lax.top_k(probabilities, k)
    labels = batch["label"]
    counted = batch["valid"]
    decoded = counted & batch["decode_ok"]
    hit1 = decoded & (top[:, 0] == labels)
    hit5 = decoded & jnp.any(top == labels[:, None], axis=-1)
    return {"correct1": jnp.sum(hit1), "correct5": jnp.sum(hit5), "count": jnp.sum(counted),
            "decode_failures": jnp.sum(counted & ~batch["decode_ok"])}

  return step


def make_probability_step(model_graphdef: nnx.GraphDef) -> Callable:
  """Returns step(model_state, videos_uint8 (b, V, T, H, W, 3), text_features) -> (b, K) class probabilities,
  the softmax averaged over the V views (what the eval step ranks, normalised to sum to 1)."""

  def step(model_state: nnx.State, videos: jax.Array, text_features: jax.Array) -> jax.Array:
    return _view_probabilities(model_graphdef, model_state, videos, text_features).mean(axis=1)

  return step


def make_text_encoder(model_graphdef: nnx.GraphDef) -> Callable:
  """Returns encode(model_state, tokens) -> (K, E) class-text features (computed once per class list)."""
  return lambda model_state, tokens: nnx.merge(model_graphdef, model_state).encode_text(tokens)

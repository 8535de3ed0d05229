"""Runs the planned train step on this machine's devices and times it: the measurement beside the estimate.

Random parameters and random uint8 clips of the configured shape (no data is read): the step's speed does not
depend on pixel values. The program is the trainer's (`programs.jit_train_step`), so the time is that of a
training step without the input pipeline.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from xclip_jax import sharding
from xclip_jax.data import batches
from xclip_jax.evaluation.evaluator import Evaluator
from xclip_jax.training import optimizer, programs, run_model, train_state


def _peak_bytes(devices) -> int | None:
  peaks = []
  for device in devices:
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    if not stats or "peak_bytes_in_use" not in stats:
      return None
    peaks.append(int(stats["peak_bytes_in_use"]))
  return max(peaks) if peaks else None


def measure_train_step(config: ml_collections.ConfigDict, mesh: Any, num_classes: int, *, steps: int = 5,
                       seed: int = 0) -> dict[str, Any]:
  """Median / min / max seconds of `steps` train steps after one compiling step, and peak device memory."""
  model_config = run_model.model_config_from(config)
  tx, schedules = optimizer.make_optimizer(config.train, 1000, 100)
  trainable = optimizer.trainable_filter(bool(config.train.train_text))
  state = train_state.create_train_state(model_config, tx, trainable, mesh, seed=seed)
  step_config = programs.train_step_config(config, num_classes, mesh)
  step = programs.jit_train_step(state.graphdef, state.shardings, trainable, step_config, schedules, mesh)
  specs = programs.train_batch_spec(config, mesh)
  rng = np.random.default_rng(seed)
  batch = {batches.VIDEO: rng.integers(0, 256, specs[batches.VIDEO].shape, dtype=np.uint8),
           batches.LABEL: rng.integers(0, num_classes, specs[batches.LABEL].shape).astype(np.int32)}
  if batches.COLOR in specs:  # data.augment.color_on_device: all-zero draws (the cost does not depend on the values)
    batch[batches.COLOR] = np.zeros(specs[batches.COLOR].shape, np.float32)
  batch = {k: jax.device_put(v, specs[k].sharding) for k, v in batch.items()}
  tokens = jnp.asarray(rng.integers(1, model_config.vocab_size, (num_classes, model_config.context_length)),
                       jnp.int32)
  if step_config.train_text:
    text_inputs = jax.device_put(tokens, sharding.replicated(mesh))
  else:
    evaluator = Evaluator(train_state.model_graphdef(model_config), mesh, dtype=model_config.dtype)
    with jax.set_mesh(mesh):
      text_inputs = evaluator.text_encoder(state.state["model"], tokens)
  key = jax.random.key(seed)
  times = []
  with jax.set_mesh(mesh):
    current = state.state
    for index in range(steps + 1):
      start = time.perf_counter()
      current, metrics = step(current, batch, text_inputs, key)
      jax.block_until_ready((current, metrics))
      if index:  # the first call compiles
        times.append(time.perf_counter() - start)
  median = statistics.median(times)
  return {"steps": steps, "step_seconds_median": median, "step_seconds_min": min(times),
          "step_seconds_max": max(times),
          "clips_per_s_per_device": int(config.data.batch_size) / median / mesh.size,
          "peak_bytes_per_device": _peak_bytes(mesh.devices.flat), "loss": float(metrics["loss"]),
          "measured": "wall-clock of the train step alone (random data, no input pipeline)"}

"""Benchmark worker for xclip_jax (started by scripts/benchmark.py; see protocol.py).

Training row: the project's own jitted train step (`xclip_jax.training.steps`), state donated, on a batch
already on device: uint8 frames normalised on device, smoothed one-hot targets (label smoothing 0.1, mixup
off so that the peer computes the same loss), soft-target cross-entropy over the class logits, AdamW with
the official parameter groups; text tower frozen with the class texts encoded once (unless train_text).
Inference row: normalise + video tower + MIT + prompt generator + logits against the cached class texts,
the weights held as `xclip_jax.load_model` holds them.
"""

from __future__ import annotations

import json
import pathlib
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from flax.traverse_util import flatten_dict

from scripts.benchmarking import protocol
from xclip_jax import pretrained, sharding
from xclip_jax.data import device_ops
from xclip_jax.data.pipeline import global_batch
from xclip_jax.evaluation import eval_steps
from xclip_jax.models import layers
from xclip_jax.models.config import variant_config
from xclip_jax.training import optimizer, steps, train_state


def compute_dtype(requested: str) -> str:
  """"auto": bfloat16 on accelerators, float32 on CPU."""
  if requested != "auto":
    return requested
  return "float32" if jax.default_backend() == "cpu" else "bfloat16"


def model_config(spec: dict[str, Any]):
  extra = {"scan_layers": True} if spec["scan_layers"] else {}
  return variant_config(spec["variant"], frames=spec["frames"], dtype=compute_dtype(spec["dtype"]),
                        remat=spec["remat"], attention_implementation=spec["attention"], **extra,
                        **spec["overrides"])


def export_weights(spec: dict[str, Any]) -> None:
  """Writes a randomly initialised model (seed 0) as an xclip_jax directory (`<workdir>/jax`, what our
  runners load) and, with the project's converter, as an HF XCLIPModel directory (`spec["weights"]`, what
  the peer loads): both then time the same model, and both start from a file. Runs in a process of its
  own, so that neither the initialisation program nor the host copies count in a runner's peak memory."""
  from xclip_jax import pretrained
  from xclip_jax.conversion.convert import export_checkpoint
  from xclip_jax.models.params import to_layer_params

  config = model_config(spec)
  model_state = train_state.create_model_state(config, sharding.make_mesh(spec["mesh"]), seed=0)
  params = flatten_dict(nnx.to_pure_dict(nnx.state(nnx.merge(train_state.model_graphdef(config), model_state),
                                                   nnx.Param)))
  params = to_layer_params(config, {path: np.asarray(jax.device_get(value)) for path, value in params.items()})
  workdir = pathlib.Path(spec["workdir"])
  pretrained.save_pretrained(workdir / "jax", config, params, overwrite=True)
  if spec["peer"] == "hf":
    export_checkpoint("hf", config, params, pathlib.Path(spec["weights"]), overwrite=True)


class OursRunner(protocol.Runner):
  memory_kind = "device"

  def __init__(self, spec: dict[str, Any]):
    config = model_config(spec)
    self.dtype = config.dtype
    mesh = sharding.make_mesh(spec["mesh"])
    inputs = np.load(pathlib.Path(spec["workdir"]) / protocol.INPUTS_FILE)
    device = jax.devices()[0]
    self.device = f"{jax.device_count()} x {device.device_kind} ({device.platform})"
    self.memory_kind = "device" if device.platform != "cpu" else "rss"
    graphdef = train_state.model_graphdef(config)
    _, params = pretrained.load_pretrained(pathlib.Path(spec["workdir"]) / "jax")  # written by export_weights
    # States are created outside `jax.set_mesh`: their logical axis names are mapped by xclip_jax.sharding.
    if spec["row"] == "train":
      # The schedule's length does not matter for timing.
      tx, schedules = optimizer.make_optimizer(protocol.official_recipe(), total_steps=1000, warmup_steps=10)
      trainable = optimizer.trainable_filter(spec["train_text"])
      state = train_state.create_train_state(config, tx, trainable, mesh, seed=0, init_params=params)
      model_state = state.state["model"]
    else:
      _, model_state = train_state.place_model(config, params, mesh)
      # As `xclip_jax.load_model` holds them for inference: half-precision products' weights stored rounded.
      model_state = nnx.state(layers.store_weights_in_compute_dtype(nnx.merge(graphdef, model_state)))
    del params
    with jax.set_mesh(mesh):
      batch = global_batch({"video": inputs["videos"], "label": inputs["labels"]}, mesh)
      tokens = jnp.asarray(inputs["tokens"])
      encode = jax.jit(eval_steps.make_text_encoder(graphdef))
      text = tokens if spec["train_text"] and spec["row"] == "train" else encode(model_state, tokens)
    self.mesh = mesh
    key = jax.random.key(0)
    if spec["row"] == "train":
      step_config = steps.TrainStepConfig(num_classes=tokens.shape[0], grad_accum_steps=spec["accum"],
                                          train_text=spec["train_text"], mixup=0.0, label_smoothing=0.1)
      function = jax.jit(steps.make_train_step(state.graphdef, trainable, step_config, schedules),
                         out_shardings=(state.shardings, sharding.replicated(mesh)), donate_argnums=0)
      self.state = state.state
      self.lower = lambda: function.lower(self.state, batch, text, key)
    else:
      def infer(model_state, videos, text_features):
        model = nnx.merge(graphdef, model_state)
        return model(device_ops.normalize(videos, model.dtype), text_features=text_features)

      # The compile options of xclip_jax.load_model's programs (Eigen's float32 products on a CPU).
      function = jax.jit(infer, compiler_options=layers.inference_compiler_options(config.dtype))
      self.lower = lambda: function.lower(model_state, batch["video"], text)
    # Compiled ahead of time, so that compilation and the first step are timed apart.
    start = time.perf_counter()
    with jax.set_mesh(mesh):
      compiled = self.lower().compile()
    self.compile_seconds = time.perf_counter() - start
    if spec["row"] == "train":
      def run():
        self.state, metrics = compiled(self.state, batch, text, key)
        return metrics["loss"]
    else:
      def run():
        return compiled(model_state, batch["video"], text)
    self._run = run

  def step(self) -> jax.Array:
    with jax.set_mesh(self.mesh):
      return self._run()

  def sync(self, result: jax.Array) -> None:
    jax.block_until_ready(result)

  def check_value(self, result: jax.Array) -> list:
    return np.asarray(jax.device_get(result), np.float64).reshape(-1).tolist()

  def peak_memory_bytes(self) -> int | None:
    if self.memory_kind == "rss":
      return protocol.peak_rss_bytes()
    stats = jax.devices()[0].memory_stats() or {}
    return stats.get("peak_bytes_in_use")


if __name__ == "__main__":
  if json.loads(sys.argv[1])["row"] == "export":
    export_weights(json.loads(sys.argv[1]))
  else:
    protocol.serve(OursRunner)

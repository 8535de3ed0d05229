"""Training-step throughput and MFU on synthetic batches (the input pipeline is excluded on purpose).

  python scripts/benchmark_train.py --variant B/16 --frames 8 --batch 64 --dtype bfloat16
  python scripts/benchmark_train.py --variant B/16 --frames 8 --batch 256 --accum 4 --mesh data=1,fsdp=-1

Prints step time, clips/s (total and per device), model TFLOP/s per device and MFU. Model FLOPs per step
= 3 x (forward multiply-adds x 2) of the video tower and the prompt generator for `--classes` class texts
(the text tower is frozen and cached, as official; `--train-text` adds it); rematerialisation recompute is
not counted (that would be HFU). Peak bf16 FLOP/s per chip comes from --peak-tflops or the device kind.
Compare with scripts/benchmark_data.py (decode + augment clips/s) to see whether training is input-bound.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from xclip_jax import perf, sharding
from xclip_jax.data.pipeline import global_batch
from xclip_jax.models.config import variant_config
from xclip_jax.tokenizer import tokenize
from xclip_jax.training import optimizer, steps, train_state

# Dense bf16 peak per chip (datasheets); matched against jax.Device.device_kind.
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "GH200": 989.0, "A100": 312.0, "L4": 121.0, "TPU v4": 275.0,
               "TPU v5 lite": 197.0, "TPU v5e": 197.0, "TPU v5p": 459.0, "TPU v6 lite": 918.0}


def peak_tflops(kind: str, override: float | None) -> float | None:
  if override:
    return override
  return next((value for name, value in PEAK_TFLOPS.items() if name.lower() in kind.lower()), None)


def model_flops_per_step(config, batch: int, classes: int, train_text: bool) -> float:
  """FLOPs (2 per multiply-add) of forward + backward (x3) for one optimizer step."""
  parts = perf.flops_breakdown(config, num_classes=classes)
  video = sum(v for k, v in parts.items() if k != "text")  # per clip (prompt generator for all K classes)
  total = 2 * 3 * video * batch
  if train_text:
    total += 2 * 3 * parts["text"]  # K class texts once per step
  return total


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--variant", default="B/16")
  parser.add_argument("--frames", type=int, default=8)
  parser.add_argument("--batch", type=int, default=32, help="global batch per optimizer step")
  parser.add_argument("--accum", type=int, default=1, help="micro-batches per step")
  parser.add_argument("--classes", type=int, default=400)
  parser.add_argument("--dtype", default="bfloat16")
  parser.add_argument("--remat", action="store_true")
  parser.add_argument("--train-text", action="store_true")
  parser.add_argument("--attention", default="auto", help="auto, xla or cudnn")
  parser.add_argument("--mesh", default="data=-1", help="e.g. data=1,fsdp=-1")
  parser.add_argument("--steps", type=int, default=10)
  parser.add_argument("--warmup", type=int, default=2)
  parser.add_argument("--peak-tflops", type=float, default=None)
  parser.add_argument("--override", action="append", default=[], help="ModelConfig field=value (int)")
  args = parser.parse_args()

  overrides = {k: int(v) for k, v in (item.split("=") for item in args.override)}
  config = variant_config(args.variant, frames=args.frames, dtype=args.dtype, remat=args.remat,
                          attention_implementation=args.attention, **overrides)
  mesh = sharding.make_mesh({k: int(v) for k, v in (item.split("=") for item in args.mesh.split(","))})
  train_config = ml_collections.ConfigDict(dict(lr=8e-6, min_lr_ratio=0.01, new_module_lr_multiplier=10.0,
                                                weight_decay=0.001, b1=0.9, b2=0.98, eps=1e-8, grad_clip_norm=0.0))
  tx, schedules = optimizer.make_optimizer(train_config, total_steps=1000, warmup_steps=10)
  trainable = optimizer.trainable_filter(args.train_text)
  state = train_state.create_train_state(config, tx, trainable, mesh, seed=0)
  step_config = steps.TrainStepConfig(num_classes=args.classes, grad_accum_steps=args.accum,
                                      train_text=args.train_text)
  step = jax.jit(steps.make_train_step(state.graphdef, trainable, step_config, schedules),
                 out_shardings=(state.shardings, sharding.replicated(mesh)), donate_argnums=0)
  rng = np.random.default_rng(0)
  local = {"video": rng.integers(0, 256, (args.batch, args.frames, config.image_size, config.image_size, 3),
                                 dtype=np.uint8),
           "label": rng.integers(0, args.classes, (args.batch,)).astype(np.int32)}
  names = [f"class {i}" for i in range(args.classes)]
  encode = jax.jit(steps.make_text_encoder(train_state.model_graphdef(config)))
  with jax.set_mesh(mesh):
    batch = global_batch(local, mesh)
    tokens = jnp.asarray(tokenize(names))
    if args.train_text:
      text = jax.device_put(tokens, sharding.replicated(mesh))
    else:
      text = encode(state.state["model"], tokens)
    key = jax.random.key(0)
    compile_start = time.perf_counter()
    current = state.state
    for _ in range(args.warmup):
      current, metrics = step(current, batch, text, key)
    jax.block_until_ready(metrics)
    compile_seconds = time.perf_counter() - compile_start
    start = time.perf_counter()
    for _ in range(args.steps):
      current, metrics = step(current, batch, text, key)
    jax.block_until_ready(metrics)
    seconds = (time.perf_counter() - start) / args.steps

  devices = jax.device_count()
  flops = model_flops_per_step(config, args.batch, args.classes, args.train_text)
  per_device = flops / seconds / devices / 1e12
  kind = jax.devices()[0].device_kind
  peak = peak_tflops(kind, args.peak_tflops)
  print(f"{args.variant}-{args.frames} {args.dtype} batch {args.batch} (accum {args.accum}, remat {args.remat}) "
        f"on {devices} x {kind}, mesh {dict(mesh.shape)}")
  print(f"  warm-up (compile + {args.warmup} steps): {compile_seconds:.1f} s")
  print(f"  step time {seconds * 1e3:.1f} ms | {args.batch / seconds:.1f} clips/s | "
        f"{args.batch / seconds / devices:.1f} clips/s/device")
  mfu = f"MFU {100 * per_device / peak:.1f}% of {peak:.0f} TFLOP/s" if peak else "MFU: unknown peak (--peak-tflops)"
  print(f"  model FLOPs/step {flops / 1e12:.2f} TFLOP | {per_device:.2f} TFLOP/s/device | {mfu}")
  stats = jax.devices()[0].memory_stats() or {}
  if "peak_bytes_in_use" in stats:
    print(f"  peak device memory {stats['peak_bytes_in_use'] / 2**30:.2f} GiB (device 0)")
  print(f"  loss {float(metrics['loss']):.4f}")


if __name__ == "__main__":
  main()

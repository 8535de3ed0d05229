"""Start-up of a training run: creating the train state, tracing the step, compiling it.

  python scripts/benchmark_startup.py --variant B/16,L/14 --runs 2          # per-layer and scan_layers
  python scripts/benchmark_startup.py --variant L/14 --code /path/to/older/checkout --layouts per-layer

Each measurement runs in a fresh process (nothing cached between them; XLA's persistent compilation cache
is off) and times, with the project's own functions: `create_train_state` from random initialisation (one
jitted program that draws every parameter and the optimizer state, blocked until ready), then
`jax.jit(train_step).lower(...)` (trace + lower) and `.compile()` on abstract inputs (batch of 224 px clips,
frozen text tower with cached class features). Wall seconds and process CPU seconds (all threads; on a shared
machine CPU time is the steadier figure) are printed per run, and a markdown table with the range over
`--runs` at the end. `--code` imports xclip_jax from another checkout, to compare before and after a change
(layouts a checkout does not know are skipped with a note).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

from xclip_jax import cli

REPO = pathlib.Path(__file__).resolve().parent.parent
LAYOUTS = ("per-layer", "scan")
PHASES = ("create", "lower", "compile")


def measure(variant: str, frames: int, batch: int, classes: int, layout: str) -> dict[str, float]:
  """In this process: times the three start-up phases of one training run (returns seconds per phase)."""
  import jax
  import jax.numpy as jnp

  from xclip_jax import run_config, sharding
  from xclip_jax.models.config import variant_config
  from xclip_jax.training import optimizer, steps, train_state

  extra = {"scan_layers": True} if layout == "scan" else {}
  config = variant_config(variant, frames=frames, **extra)
  mesh = sharding.make_mesh({"data": -1})
  # The official recipe (run-config defaults); the schedule's length does not matter here.
  tx, schedules = optimizer.make_optimizer(run_config.base_config().train, total_steps=1000, warmup_steps=10)
  trainable = optimizer.trainable_filter(False)
  result = {}

  def timed(phase: str, run):
    wall, cpu = time.perf_counter(), time.process_time()
    value = run()
    result[phase] = time.perf_counter() - wall
    result[phase + "_cpu"] = time.process_time() - cpu
    return value

  state = timed("create", lambda: jax.block_until_ready(
      train_state.create_train_state(config, tx, trainable, mesh, seed=0)))
  step_config = steps.TrainStepConfig(num_classes=classes, mixup=0.0)
  function = jax.jit(steps.make_train_step(state.graphdef, trainable, step_config, schedules), donate_argnums=0)
  size = config.image_size
  batch_spec = {"video": jax.ShapeDtypeStruct((batch, frames, size, size, 3), jnp.uint8),
                "label": jax.ShapeDtypeStruct((batch,), jnp.int32)}
  text = jax.ShapeDtypeStruct((classes, config.embed_dim), jnp.float32)
  with jax.set_mesh(mesh):
    lowered = timed("lower", lambda: function.lower(state.state, batch_spec, text, jax.random.key(0)))
    timed("compile", lowered.compile)
  return result


def run_fresh(args: argparse.Namespace, variant: str, layout: str) -> dict[str, float] | str:
  """One measurement in a new process; returns its seconds, or the reason it could not run."""
  code = pathlib.Path(args.code).resolve()
  env = {**os.environ, "PYTHONPATH": f"{code}{os.pathsep}{REPO}", "JAX_ENABLE_COMPILATION_CACHE": "false"}
  spec = dict(variant=variant, frames=args.frames, batch=args.batch, classes=args.classes, layout=layout)
  done = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], env=env, cwd=code,
                        capture_output=True, text=True)
  if done.returncode != 0:
    last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
    return f"failed: {last}"
  return json.loads(done.stdout.strip().splitlines()[-1])


def seconds_range(values: list[float]) -> str:
  low, high = min(values), max(values)
  return f"{low:.0f}" if round(low) == round(high) else f"{low:.0f}-{high:.0f}"


def main(argv: list[str] | None = None) -> int:
  parser = cli.parser(description=__doc__)
  parser.add_argument("--variant", default="B/16,L/14", help="comma-separated variants")
  parser.add_argument("--frames", type=int, default=8)
  parser.add_argument("--batch", type=int, default=4)
  parser.add_argument("--classes", type=int, default=16)
  parser.add_argument("--layouts", default=",".join(LAYOUTS), help="per-layer and/or scan (model.scan_layers)")
  parser.add_argument("--runs", type=int, default=2, help="fresh processes per variant and layout")
  parser.add_argument("--code", default=str(REPO), help="checkout whose xclip_jax is measured")
  parser.add_argument("--label", default="", help="name of the code in the table (default: its git commit)")
  parser.add_argument("--worker", help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.worker:
    spec = json.loads(args.worker)
    print(json.dumps(measure(**spec)))
    return 0
  layouts = args.layouts.split(",")
  unknown = sorted(set(layouts) - set(LAYOUTS))
  if unknown:
    parser.error(f"--layouts: unknown {unknown}; choose from {list(LAYOUTS)}")
  if not (pathlib.Path(args.code) / "xclip_jax").is_dir():
    parser.error(f"--code {args.code}: no xclip_jax package there")
  label = args.label or subprocess.run(["git", "-C", args.code, "rev-parse", "--short", "HEAD"],
                                       capture_output=True, text=True).stdout.strip() or args.code
  rows = []
  for variant in args.variant.split(","):
    for layout in layouts:
      runs = []
      for run in range(args.runs):
        result = run_fresh(args, variant, layout)
        if isinstance(result, str):
          print(f"{variant} {layout} run {run + 1}: {result}", flush=True)
          break
        runs.append(result)
        print(f"{variant} {layout} run {run + 1}: " + ", ".join(
            f"{phase} {result[phase]:.1f} s (CPU {result[phase + '_cpu']:.1f} s)" for phase in PHASES), flush=True)
      if runs:
        rows.append((variant, layout, runs))
  print(f"\n{args.frames} frames, batch {args.batch}, {args.classes} classes, float32; code {label}; "
        f"{args.runs} fresh processes each: wall seconds (CPU seconds), range over runs\n")
  print("| model | code | layout | create the train state | trace + lower the step | compile the step |")
  print("|---|---|---|---|---|---|")
  for variant, layout, runs in rows:
    cells = [f"{seconds_range([r[p] for r in runs])} ({seconds_range([r[p + '_cpu'] for r in runs])})"
             for p in PHASES]
    print(f"| {variant} | {label} | {layout} | " + " | ".join(cells) + " |")
  return 0 if rows else 1


if __name__ == "__main__":
  sys.exit(main())

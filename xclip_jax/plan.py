r"""Plans a run on a TPU slice without one: compiles `main`'s programs for the slice with XLA's TPU compiler.

  python -m xclip_jax.plan --config configs/kinetics.py:variant=L/14@336,frames=16 --topology v5e-16 \
      [--config.a.b=v ...] [--find-batch] [--json]

Prints, per chip: memory of the train step, the eval step and the text encoder (fits or not), FLOPs per step
(XLA's count beside xclip_jax.perf's), collectives per step, a roofline estimate of the step time with the
clips/s and MFU it allows, and how many CPUs per chip the input pipeline needs. `--topology local` compiles for
this machine's own devices and also runs and times the train step. Needs libtpu for TPU topologies
(`pip install -e .[tpu]`). Every figure is an estimate by the compiler or the roofline, never a measurement
(except the local timing).
"""

from __future__ import annotations

import json
import os
import sys

from absl import app, flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Run configuration file (configs/*.py[:args]).",
                                          lock_config=True)
_TOPOLOGY = flags.DEFINE_string("topology", None, "Cloud TPU slice (v5e-8, v4-32, v5p-8, v6e-256, ...) or 'local'.")
_FIND_BATCH = flags.DEFINE_boolean("find-batch", False,
                                   "Also find the largest per-chip batch whose train step fits, remat off and on.")
_JSON = flags.DEFINE_boolean("json", False, "Print the plan as JSON (for tools) instead of text.")
_DECODE_RATE = flags.DEFINE_float(
    "decode-rate", None, "Clips each CPU decodes and augments per second (default: the MP4 path's measured rate, "
    "see xclip_jax/planning/input_budget.py; measure yours with scripts/benchmark_data.py).")
_NUM_CLASSES = flags.DEFINE_integer("num-classes", None,
                                    "Number of classes, when config.data.class_names does not name them.")
_PROGRAMS = flags.DEFINE_list("programs", ["train", "eval", "text"], "Programs to compile: train, eval, text.")
_LOCAL_STEPS = flags.DEFINE_integer("local-steps", 5, "With --topology local: train steps to run and time.")
_OUTPUT = flags.DEFINE_string("output", None, "Also write the JSON plan to this file.")
_CACHE_DIR = flags.DEFINE_string(
    "cache-dir", os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "xclip_jax", "plans"),
    "Where compiled programs' reports are kept: a program lowered to the same text for the same devices and "
    "compiler is not compiled again (find-batch, reruns). Empty: no cache.")
flags.mark_flags_as_required(["config", "topology"])


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  from xclip_jax.planning import topologies

  if _TOPOLOGY.value != "local":
    try:
      topologies.lookup(_TOPOLOGY.value)
    except ValueError as error:
      sys.exit(str(error))
    topologies.quiet_libtpu(own_process=True)
    # Compiling for a slice needs no local accelerator: keep JAX off one this host may have (a TPU VM's chips
    # may be busy training).
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
  unknown = sorted(set(_PROGRAMS.value) - {"train", "eval", "text"})
  if unknown:
    raise app.UsageError(f"--programs: unknown {unknown}; choose from train, eval, text")

  from xclip_jax.planning import batch_search, input_budget, planner, report

  config = _CONFIG.value
  try:
    target = planner.target(_TOPOLOGY.value)
    rate = _DECODE_RATE.value or input_budget.DEFAULT_DECODE_RATE
    result = planner.plan(config, target, num_classes=_NUM_CLASSES.value, decode_rate=rate,
                          which=tuple(_PROGRAMS.value), measure_steps=_LOCAL_STEPS.value if target.local else 0,
                          cache_dir=_CACHE_DIR.value or None)
    searches, accumulated = [], None
    if _FIND_BATCH.value:
      classes = planner.class_count(config, _NUM_CLASSES.value)
      searches = [batch_search.find_largest_batch(config, target, classes, remat=remat,
                                                  cache_dir=_CACHE_DIR.value or None) for remat in (False, True)]
      accumulated = _plan_with_accumulation(config, target, result, searches, rate)
  except ValueError as error:  # an impossible plan: the message names the config field
    sys.exit(f"Cannot plan this run: {error}")
  payload = result.to_dict()
  payload["find_batch"] = [s.to_dict() for s in searches]
  payload["accumulated"] = accumulated.to_dict() if accumulated else None
  payload["command"] = " ".join(sys.argv)
  if _OUTPUT.value:
    from etils import epath

    epath.Path(_OUTPUT.value).write_text(json.dumps(payload, indent=2) + "\n")
  if _JSON.value:
    print(json.dumps(payload, indent=2))
    return
  print(report.format_report(result, title=_config_name()))
  for search in searches:
    probes = ", ".join(f"{p.per_chip}: {'fits' if p.fits else 'no'} ({p.bytes / report.GIB:.2f} GiB)"
                       for p in search.probes)
    print(f"Largest per-chip batch that fits, remat {'on' if search.remat else 'off'}: {search.largest_fitting} "
          f"(found with {len(search.probes)} compiles: {probes})")
  if accumulated is not None:
    print()
    print(report.format_report(accumulated, title=f"the same run with train.grad_accum_steps="
                                                  f"{accumulated.config['grad_accum_steps']} (what fits)"))


def _plan_with_accumulation(config, target, result, searches, rate):
  """When the run's train step does not fit, the same global batch with the fewest micro-batches that do
  (the config's remat): the plan a user would run instead, with its step-time estimate."""
  from xclip_jax import sharding
  from xclip_jax.planning import planner

  if result.fits is not False:
    return None
  largest = next((s.largest_fitting for s in searches if s.remat == bool(config.model.remat)), 0)
  mesh = sharding.make_mesh(config.mesh, devices=target.devices)
  micro = int(config.data.batch_size) // sharding.batch_shards(mesh)  # per chip
  steps = next((k for k in range(1, micro + 1) if micro % k == 0 and micro // k <= largest), None)
  if not largest or steps is None:
    return None
  trial = config.copy_and_resolve_references()
  trial.train.grad_accum_steps = steps
  return planner.plan(trial, target, num_classes=_NUM_CLASSES.value, decode_rate=rate, which=("train",),
                      cache_dir=_CACHE_DIR.value or None)


def _config_name() -> str:
  for arg in sys.argv[1:]:
    if arg.startswith("--config="):
      return arg.split("=", 1)[1]
  return ""


if __name__ == "__main__":
  app.run(main)

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

from xclip_jax import cli

PROG = "python -m xclip_jax.plan"


def _parser() -> cli.Parser:
  parser = cli.parser(PROG, __doc__)
  cli.add_config(parser)
  parser.add_argument("--topology", help="Cloud TPU slice (v5e-8, v4-32, v5p-8, v6e-256, ...) or 'local'")
  parser.add_argument("--find-batch", action="store_true",
                      help="also find the largest per-chip batch whose train step fits, remat off and on")
  parser.add_argument("--json", action="store_true", help="print the plan as JSON (for tools) instead of text")
  parser.add_argument("--decode-rate", type=float, default=None,
                      help="clips each CPU decodes and augments per second (default: measured here for frame shards "
                           "and synthetic videos at the run's frame size, clip length and augmentation; the MP4 "
                           "path's measured rate for video files, see xclip_jax/planning/input_budget.py; measure "
                           "yours with scripts/benchmark_data.py)")
  parser.add_argument("--num-classes", type=int, default=None,
                      help="number of classes, when config.data.class_names does not name them")
  parser.add_argument("--programs", default="train,eval,text",
                      help="programs to compile, comma-separated: train, eval, text (default all three)")
  parser.add_argument("--local-steps", type=int, default=5, help="with --topology local: train steps to run and time")
  parser.add_argument("--output", default=None, help="also write the JSON plan to this file")
  parser.add_argument(
      "--cache-dir", default=os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")),
                                          "xclip_jax", "plans"),
      help="where compiled programs' reports are kept: a program lowered to the same text for the same devices and "
           "compiler is not compiled again (find-batch, reruns); empty: no cache")
  return parser


def main(argv: list[str] | None = None) -> int:
  parser = _parser()
  args = parser.parse_args(argv)
  cli.require(parser, args, "config", "topology")
  from xclip_jax.planning import topologies

  if args.topology != "local":
    try:
      topologies.lookup(args.topology)
    except ValueError as error:
      parser.error(f"--topology: {error}")
    topologies.quiet_libtpu(own_process=True)
    # Compiling for a slice needs no local accelerator: keep JAX off one this host may have (a TPU VM's chips
    # may be busy training).
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
  programs = [p.strip() for p in args.programs.split(",") if p.strip()]
  unknown = sorted(set(programs) - {"train", "eval", "text"})
  if unknown:
    parser.error(f"--programs: unknown {unknown}; choose from train, eval, text")

  from xclip_jax.planning import batch_search, input_budget, planner, report

  config = args.config
  cache_dir = args.cache_dir or None
  try:
    target = planner.target(args.topology)
    if args.decode_rate:
      rate, rate_source = args.decode_rate, "given (--decode-rate)"
    elif target.vcpus_per_host:  # a TPU slice: the CPUs of its hosts feed it
      rate, rate_source = input_budget.decode_rate(config)
    else:
      rate, rate_source = input_budget.DEFAULT_DECODE_RATE, None
    result = planner.plan(config, target, num_classes=args.num_classes, decode_rate=rate,
                          decode_rate_source=rate_source, which=tuple(programs),
                          measure_steps=args.local_steps if target.local else 0, cache_dir=cache_dir)
    searches, accumulated = [], None
    if args.find_batch:
      classes = planner.class_count(config, args.num_classes)
      searches = [batch_search.find_largest_batch(config, target, classes, remat=remat, cache_dir=cache_dir)
                  for remat in (False, True)]
      accumulated = _plan_with_accumulation(config, target, result, searches, (rate, rate_source), args.num_classes,
                                            cache_dir)
  except ValueError as error:  # an impossible plan: the message names the config field
    parser.error(f"cannot plan this run: {error}")
  payload = result.to_dict()
  payload["find_batch"] = [s.to_dict() for s in searches]
  payload["accumulated"] = accumulated.to_dict() if accumulated else None
  payload["command"] = " ".join(sys.argv)
  if args.output:
    from xclip_jax import storage

    storage.write_text(args.output, json.dumps(payload, indent=2) + "\n")  # whole, or not at all (Ctrl-C)
  if args.json:
    print(json.dumps(payload, indent=2))
    return 0
  print(report.format_report(result, title=args.config_file))
  for search in searches:
    probes = ", ".join(f"{p.per_chip}: {'fits' if p.fits else 'no'} ({p.bytes / report.GIB:.2f} GiB)"
                       for p in search.probes)
    print(f"Largest per-chip batch that fits, remat {'on' if search.remat else 'off'}: {search.largest_fitting} "
          f"(found with {len(search.probes)} compiles: {probes})")
  if accumulated is not None:
    print()
    print(report.format_report(accumulated, title=f"the same run with train.grad_accum_steps="
                                                  f"{accumulated.config['grad_accum_steps']} (what fits)"))
  return 0


def _plan_with_accumulation(config, target, result, searches, rate, num_classes, cache_dir):
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
  return planner.plan(trial, target, num_classes=num_classes, decode_rate=rate[0], decode_rate_source=rate[1],
                      which=("train",), cache_dir=cache_dir)


if __name__ == "__main__":
  cli.run(main, prog="xclip_jax.plan")

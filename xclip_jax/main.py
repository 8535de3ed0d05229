r"""Trains or evaluates: python -m xclip_jax.main --config configs/<file>.py[:args] --workdir DIR [--config.a.b=v].

Trains with periodic evaluation (resuming from DIR's latest checkpoint by itself) or, with
`--config.mode=evaluate`, only evaluates. With `--config.compile_only=true` it only compiles the run's programs
on these devices, prints their memory and speed estimates (as `python -m xclip_jax.plan` does) and exits.
Started as several processes (one per host, or per GPU), it joins them with `jax.distributed.initialize()`:
on TPU pods, SLURM and Kubernetes the arguments are detected; elsewhere pass --coordinator-address,
--num-processes and --process-id (or the JAX_* environment variables). A mistyped or refused config field is one
line naming it, with exit status 2.
"""

from __future__ import annotations

import argparse
import os
import sys

from xclip_jax import cli

PROG = "python -m xclip_jax.main"


def _parser() -> cli.Parser:
  epilog = (f"configs (each takes :args after its name, e.g. configs/demo.py:shrink=true):\n{cli.config_catalogue()}"
            f"\n\nevery field of a config, with its value (after :args and overrides):\n"
            f"  {PROG} --config configs/demo.py --print-config")
  parser = cli.parser(PROG, __doc__, epilog=epilog)
  cli.add_config(parser)
  parser.add_argument("--workdir", help="directory (or gs://bucket/path) for checkpoints, TensorBoard events and "
                                        "results; a run resumes from its latest checkpoint")
  parser.add_argument("--coordinator-address", help="host:port of process 0 (multi-process runs)")
  parser.add_argument("--num-processes", type=int, help="number of processes (multi-process runs)")
  parser.add_argument("--process-id", type=int, help="this process's index (multi-process runs)")
  parser.add_argument("--cpu-collectives", default="gloo", choices=("gloo", "mpi"),
                      help="collectives between CPU processes (multi-process CPU runs; default gloo)")
  return parser


def _initialize_distributed(args: argparse.Namespace) -> None:
  """Joins the other processes of a multi-process run; does nothing for a single process."""
  import jax
  from absl import logging

  explicit = args.coordinator_address is not None
  detected = any(name in os.environ for name in ("JAX_COORDINATOR_ADDRESS", "TPU_WORKER_HOSTNAMES",
                                                 "MEGASCALE_COORDINATOR_ADDRESS")) or int(
                                                     os.environ.get("SLURM_NTASKS", "1")) > 1
  if not (explicit or detected):
    return
  jax.config.update("jax_cpu_collectives_implementation", args.cpu_collectives)  # CPU backend only
  if explicit:
    jax.distributed.initialize(coordinator_address=args.coordinator_address, num_processes=args.num_processes,
                               process_id=args.process_id)
  else:
    jax.distributed.initialize()
  if jax.process_count() > 1:
    logging.info("Process %d of %d, %d local / %d global devices", jax.process_index(), jax.process_count(),
                 jax.local_device_count(), jax.device_count())


def _hide_accelerators_from_tensorflow() -> None:
  """TF (used by TFDS and clu) must not grab GPU memory meant for JAX."""
  try:
    import tensorflow as tf

    tf.config.set_visible_devices([], "GPU")
  except (ImportError, RuntimeError):
    pass


class _QuietLibraries:
  """Drops INFO records of Orbax/grain/fsspec internals (dozens per checkpoint); warnings and errors pass."""

  NOISY = ("/orbax/", "/grain/", "/clu/", "/gcsfs/", "/fsspec/")

  def filter(self, record) -> bool:
    return record.levelno >= 30 or not any(part in record.pathname for part in self.NOISY)


def _check_config(config) -> None:
  """Every value main can check before any work: mode and protocol, the data block, the mesh over these devices
  and, for a fresh model (no init_from, whose architecture is read when the run starts), the model (variant,
  model.frames = data.num_frames) and, for training, the batch over the mesh. Raises ValueError naming the
  field."""
  import jax

  from xclip_jax import run_config, sharding
  from xclip_jax.data import config as data_config
  from xclip_jax.training import programs, run_model

  run_config.check_protocol(config)
  data_config.validate(config.data)
  mesh = sharding.make_mesh(config.mesh)
  if config.init_from.path:
    return
  model_config = run_model.model_config_from(config)
  if config.mode == "train" and config.protocol in ("supervised", "few_shot"):
    programs.check_run(config, model_config, mesh, jax.process_count())


def main(argv: list[str] | None = None) -> int:
  parser = _parser()
  args = parser.parse_args(argv)
  cli.require(parser, args, "config", "workdir")
  cli.use_absl_logging().addFilter(_QuietLibraries())
  _initialize_distributed(args)
  from xclip_jax import run_config

  try:
    _check_config(args.config)
  except ValueError as error:  # a value this run cannot use: one line naming the field, before any work
    parser.error(f"{args.config_file}: {error}")
  _hide_accelerators_from_tensorflow()
  if args.config.get("compile_only", False):
    from xclip_jax.planning import planner

    return planner.compile_only(args.config)
  from xclip_jax import interrupts, protocols, storage
  from xclip_jax.data import folders, labels

  try:
    protocols.run(args.config, args.workdir)
    if interrupts.stopped_by() == "SIGINT":  # saved and stopped; the trainer printed where
      return interrupts.EXIT_STATUS
  except run_config.ConfigError as error:  # found once the run reads its inputs (a checkpoint, the data)
    parser.error(f"{args.config_file}: {error}")
  except (folders.VideoInputError, labels.LabelFileError, storage.StorageError) as error:
    # Bad input or an unwritable workdir, found before the work it would spoil: one line, no traceback.
    print(f"xclip_jax.main: error: {error}", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  cli.run(main, prog="xclip_jax.main", interrupted="what was complete is kept (checkpoints, generated data, frame "
                                                   "shards) and the same command continues from it")

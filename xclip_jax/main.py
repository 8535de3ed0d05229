r"""Entry point: python -m xclip_jax.main --config configs/<file>.py[:args] --workdir DIR [--config.a.b=v].

Trains with periodic evaluation (resuming from DIR's latest checkpoint by itself) or, with
`--config.mode=evaluate`, only evaluates. With `--config.compile_only=true` it only compiles the run's programs
on these devices, prints their memory and speed estimates (as `python -m xclip_jax.plan` does) and exits.
Started as several processes (one per host, or per GPU), it joins them with `jax.distributed.initialize()`:
on TPU pods, SLURM and Kubernetes the arguments are detected; elsewhere pass --coordinator_address,
--num_processes and --process_id (or the JAX_* environment variables).
"""

from __future__ import annotations

import os

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Run configuration file (configs/*.py[:args]).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory (or gs://bucket/path) for checkpoints, TensorBoard "
                                "events and results.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (multi-process runs).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Number of processes (multi-process runs).")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index (multi-process runs).")
_CPU_COLLECTIVES = flags.DEFINE_string("cpu_collectives", "gloo",
                                       "Collectives between CPU processes (multi-process CPU runs): gloo or mpi.")
flags.mark_flags_as_required(["config", "workdir"])


def _initialize_distributed() -> None:
  """Joins the other processes of a multi-process run; does nothing for a single process."""
  import jax

  explicit = _COORDINATOR.value is not None
  detected = any(name in os.environ for name in ("JAX_COORDINATOR_ADDRESS", "TPU_WORKER_HOSTNAMES",
                                                 "MEGASCALE_COORDINATOR_ADDRESS")) or int(
                                                     os.environ.get("SLURM_NTASKS", "1")) > 1
  if not (explicit or detected):
    return
  jax.config.update("jax_cpu_collectives_implementation", _CPU_COLLECTIVES.value)  # CPU backend only
  if explicit:
    jax.distributed.initialize(coordinator_address=_COORDINATOR.value, num_processes=_NUM_PROCESSES.value,
                               process_id=_PROCESS_ID.value)
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


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logging.get_absl_handler().addFilter(_QuietLibraries())
  _hide_accelerators_from_tensorflow()
  _initialize_distributed()
  if _CONFIG.value.get("compile_only", False):
    from xclip_jax.planning import planner

    raise SystemExit(planner.compile_only(_CONFIG.value))
  from xclip_jax import protocols, storage
  from xclip_jax.data import folders, labels

  try:
    protocols.run(_CONFIG.value, _WORKDIR.value)
  except (folders.VideoInputError, labels.LabelFileError, storage.StorageError) as error:
    # Bad input or an unwritable workdir, found before the work it would spoil: one line, no traceback.
    raise SystemExit(f"xclip_jax.main: error: {error}") from None


if __name__ == "__main__":
  app.run(main)

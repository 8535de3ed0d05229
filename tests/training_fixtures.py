"""A tiny synthetic dataset and run config for the training/evaluation tests (fast on 2 CPU cores)."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import tempfile

import ml_collections

from xclip_jax import run_config
from xclip_jax.data import synthetic

REPO = pathlib.Path(__file__).resolve().parents[1]
TINY_MODEL = dict(image_size=32, patch_size=16, vision_width=64, vision_layers=2, vision_heads=2, vision_mlp_dim=128,
                  text_width=32, text_layers=1, text_heads=1, text_mlp_dim=64, embed_dim=32, mit_heads=1,
                  mit_mlp_dim=64, prompt_heads=1)
FRAMES = 4
# The shrunk demo (`configs/demo.py:shrink=true`) on a smaller synthetic dataset: the same code path, seconds per
# phase instead of a minute. Flags for xclip_jax.main; zero-shot and few-shot val sets get 2 videos per class.
SMALL_DEMO_DATA = ("--config.demo.synthetic.train_per_class=8", "--config.demo.synthetic.val_per_class=2",
                   "--config.demo.synthetic.zero_shot_per_class=2",
                   "--config.demo.synthetic.few_shot_train_per_class=4")


def make_dataset(directory: pathlib.Path) -> pathlib.Path:
  """Real H.264 files of the synthetic moving shapes, 32 px, a few per class."""
  synthetic.generate(str(directory), seed=0, size=32, frames=8, train_per_class=2, val_per_class=1,
                     zero_shot_per_class=2, few_shot_train_per_class=2, quiet=True)
  return directory


def tiny_config(data_dir: pathlib.Path, **mesh: int) -> ml_collections.ConfigDict:
  """Supervised training of a tiny X-CLIP for 2 steps on the synthetic data."""
  c = run_config.base_config()
  c.protocol = "supervised"
  c.model.variant = "tiny"
  c.model.frames = FRAMES
  c.model.dtype = "float32"
  c.model.overrides = ml_collections.ConfigDict(TINY_MODEL)
  c.data.source = "synthetic"
  c.data.synthetic_dir = str(data_dir)
  c.data.num_frames = FRAMES
  c.data.input_size = 32
  c.data.resize_short = 32
  c.data.augment.flip = 0.0
  c.data.batch_size = 8
  c.data.eval_batch_size = 8
  c.data.num_workers = 0
  c.data.seed = 0
  c.train.total_steps = 2
  c.train.lr = 1e-3
  c.train.train_text = True
  c.train.seed = 0
  c.eval.every_steps = -1
  c.eval.final_clips = 1
  c.eval.final_crops = 1
  c.checkpoint.every_steps = 1
  c.log_every_steps = 1
  c.mesh = ml_collections.ConfigDict(mesh or {"data": -1, "fsdp": 1, "tensor": 1})
  return c


def main_command(config_path: pathlib.Path, workdir: pathlib.Path, *extra: str) -> list[str]:
  return [sys.executable, "-m", "xclip_jax.main", f"--config={config_path}", f"--workdir={workdir}", *extra]


def write_config_file(config: ml_collections.ConfigDict, path: pathlib.Path) -> pathlib.Path:
  """A config file returning exactly `config` (subprocess runs load configs from files)."""
  path.write_text("import ml_collections\n\n\ndef get_config(arg=None):\n"
                  f"  return ml_collections.ConfigDict({config.to_dict()!r})\n")
  return path


def subprocess_env(devices: int = 1) -> dict[str, str]:
  env = dict(os.environ)
  env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
  env["JAX_PLATFORMS"] = "cpu"
  env["PYTHONPATH"] = str(REPO)
  env["TF_CPP_MIN_LOG_LEVEL"] = "3"
  # Subprocesses of one test compile the same programs: share them through JAX's persistent cache.
  env["JAX_COMPILATION_CACHE_DIR"] = str(pathlib.Path(tempfile.gettempdir()) / "xclip_jax_test_compilation_cache")
  env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
  env["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "-1"
  return env


def user_env() -> dict[str, str]:
  """The environment of a user's shell: none of the settings tests/conftest.py and subprocess_env add to keep
  libtpu, TensorFlow and JAX quiet or on the CPU."""
  env = subprocess_env()
  for key in ("JAX_PLATFORMS", "TPU_SKIP_MDS_QUERY", "ALLOW_MULTIPLE_LIBTPU_LOAD", "TF_CPP_MIN_LOG_LEVEL",
              "XLA_FLAGS"):
    env.pop(key, None)
  return env


def terminal_env() -> dict[str, str]:
  """A user's environment (with the tests' compilation cache) for commands stopped as a terminal stops them,
  unless an accelerator would then be used (the tests run on the CPU)."""
  from xclip_jax import cli

  env = user_env() if cli.cpu_unless_accelerator({}) else subprocess_env()
  env["JAX_COMPILATION_CACHE_DIR"] = subprocess_env()["JAX_COMPILATION_CACHE_DIR"]
  return env


# What a command stopped cleanly must never print: tracebacks, leaked shared memory, libtpu's noise on a CPU
# run, Orbax's warning about the data-iterator item.
NOISE = ("Traceback", "leaked shared_memory", "Exception ignored", "jellyfish", "unexpected worker hostname",
         "Failed to find host bounds", "could not be restored")


def assert_quiet(log: str) -> None:
  found = [line for line in log.splitlines() if any(noise in line for noise in NOISE)]
  assert not found, "\n".join(found)


def run_main(config_file: pathlib.Path, workdir: pathlib.Path, *extra: str, devices: int = 1,
             timeout: int = 600) -> subprocess.CompletedProcess:
  return subprocess.run(main_command(config_file, workdir, *extra), cwd=REPO, env=subprocess_env(devices),
                        capture_output=True, text=True, timeout=timeout, check=False)

"""How long loading a model by name takes: the first load (converts) and later ones (cached), fresh processes.

    python scripts/benchmark_zoo_load.py [--variant B/16] [--frames 8] [--repeats 3]

There is no network here, so the "download" is an XCLIP of the given size with random weights, put into a
temporary HuggingFace hub cache in huggingface_hub's layout and loaded offline (HF_HUB_OFFLINE=1) by its hub
id, exactly as a downloaded repo is. For each load, a new Python process prints the seconds spent importing
JAX/Flax/xclip_jax and in `xclip_jax.load_model(NAME)`, and whether torch was imported. Timings depend on
the machine and its load: report them with both.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import subprocess
import sys
import tempfile

import numpy as np

from xclip_jax import cli

REPO = "benchmark/xclip-random"
COMMIT = "0" * 40
LOAD = """
import json, sys, time
start = time.perf_counter()
import xclip_jax.inference
imported = time.perf_counter()
model = xclip_jax.load_model({repo!r})
done = time.perf_counter()
print(json.dumps({{"import_s": imported - start, "load_s": done - imported, "torch": "torch" in sys.modules,
                  "parameters_M": sum(x.size for x in __import__("jax").tree.leaves(model.state)) / 1e6}}))
"""


def write_hf_cache(hub_cache: pathlib.Path, variant: str, frames: int) -> None:
  """A random XCLIPModel (config.json + model.safetensors) as huggingface_hub caches a downloaded repo."""
  from xclip_jax.conversion import export_checkpoint
  from xclip_jax.models.config import variant_config
  from xclip_jax.models.params import flat_params
  from xclip_jax.models.xclip import create_model

  config = variant_config(variant, frames=frames)
  with tempfile.TemporaryDirectory() as scratch:
    export_checkpoint("hf", config, flat_params(create_model(config)), pathlib.Path(scratch) / "repo")
    folder = hub_cache / f"models--{REPO.replace('/', '--')}"
    for path in (pathlib.Path(scratch) / "repo").iterdir():
      data = path.read_bytes()
      blob = folder / "blobs" / hashlib.sha256(data).hexdigest()
      blob.parent.mkdir(parents=True, exist_ok=True)
      blob.write_bytes(data)
      link = folder / "snapshots" / COMMIT / path.name
      link.parent.mkdir(parents=True, exist_ok=True)
      link.symlink_to(os.path.relpath(blob, link.parent))
  (folder / "refs").mkdir(parents=True, exist_ok=True)
  (folder / "refs" / "main").write_text(COMMIT)


def timed_load(env: dict[str, str]) -> dict:
  result = subprocess.run([sys.executable, "-c", LOAD.format(repo=REPO)], env=env, capture_output=True, text=True,
                          check=False)
  if result.returncode != 0:
    raise SystemExit(f"load failed:\n{result.stderr}")
  return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
  parser = cli.parser(description=__doc__)
  parser.add_argument("--variant", default="B/16")
  parser.add_argument("--frames", type=int, default=8)
  parser.add_argument("--repeats", type=int, default=3, help="cached loads to time")
  args = parser.parse_args()
  with tempfile.TemporaryDirectory() as root:
    root = pathlib.Path(root)
    print(f"writing a random {args.variant} {args.frames}-frame XCLIP into an HF cache under {root} ...")
    write_hf_cache(root / "hf" / "hub", args.variant, args.frames)
    env = {**os.environ, "HF_HOME": str(root / "hf"), "HF_HUB_OFFLINE": "1", "XCLIP_JAX_CACHE": str(root / "xc"),
           "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "cpu"), "TF_CPP_MIN_LOG_LEVEL": "3"}
    rows = [("first (convert)", timed_load(env))] + [(f"cached #{i + 1}", timed_load(env))
                                                     for i in range(args.repeats)]
  print(f"xclip_jax.load_model({REPO!r}), {rows[0][1]['parameters_M']:.1f}M parameters, {os.cpu_count()} CPUs:")
  for name, row in rows:
    print(f"  {name:16s} load_model {row['load_s']:6.2f} s   (imports {row['import_s']:.2f} s; "
          f"torch imported: {row['torch']})")
  cached = np.array([row["load_s"] for _, row in rows[1:]])
  print(f"cached loads: {cached.min():.2f}-{cached.max():.2f} s over {len(cached)} runs")


if __name__ == "__main__":
  main()

r"""The TPU planning table of docs/tpu.md: one `python -m xclip_jax.plan` per variant and slice.

  python scripts/plan_table.py --variants B/32-8,B/16-8,L/14-8,L/14@336-16 --topologies v5e-8,v4-8,v5p-8,v6e-8 \
      --output-dir runs/plan_table [--find-batch]

Each cell plans the train step of configs/kinetics.py at the official recipe: global batch 256 made of the
official micro-batch per chip (8 clips for B/32 and B/16-8, 4 for L/14, 1 for L/14@336, as the official 8-GPU
configs run them) and gradient accumulation for the rest, with the config's remat. `--find-batch` also finds
the largest per-chip batch (remat off and on; several more compiles per cell). Cells run one at a time as their
own plan commands, keeping JSON and log in --output-dir, so an interrupted table resumes where it stopped;
then the Markdown table is printed from the JSON files (cells without one print as "not run"). Every figure is
the compiler's or the roofline's estimate, not a measurement.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from etils import epath

from xclip_jax import cli
from xclip_jax.planning import topologies

GIB = 1024**3
GLOBAL_BATCH = 256
# Official micro-batch per GPU (configs/k400/*.yaml: per-GPU batch x accumulation on 8 GPUs = 256).
OFFICIAL_MICRO_BATCH = {"B/32-8": 8, "B/16-8": 8, "B/16-16": 4, "B/16-32": 4, "L/14-8": 4, "L/14@336-16": 1}


def cell_path(output_dir: epath.Path, variant: str, topology: str) -> epath.Path:
  return output_dir / f"official_{variant.replace('/', '').replace('@', '-')}_{topology}.json"


def run_cell(variant: str, topology: str, output_dir: epath.Path, find_batch: bool, extra: list[str]) -> None:
  target = cell_path(output_dir, variant, topology)
  if target.exists():
    return
  name, frames = variant.rsplit("-", 1)
  accumulation = GLOBAL_BATCH // (topologies.lookup(topology).chips * OFFICIAL_MICRO_BATCH[variant])
  command = [sys.executable, "-m", "xclip_jax.plan", f"--config=configs/kinetics.py:variant={name},frames={frames}",
             f"--topology={topology}", "--programs=train", f"--config.train.grad_accum_steps={accumulation}",
             f"--output={target}", *(["--find-batch"] if find_batch else []), *extra]
  print(f"{time.strftime('%H:%M:%S')} {' '.join(command[1:])}", flush=True)
  log = str(target).replace(".json", ".log")
  with open(log, "w") as stream:
    status = subprocess.run(command, stdout=stream, stderr=subprocess.STDOUT, check=False).returncode
  if status:
    print(f"  failed (exit {status}); see {log}", flush=True)


def row(variant: str, topology: str, plan: dict | None) -> str:
  if plan is None:
    return f"| {variant} | {topology} | not run | | | | | | |"
  train, config = plan["programs"][0], plan["config"]
  micro = config["per_chip_batch"] // config["grad_accum_steps"]
  shape = f"{micro} x {config['grad_accum_steps']}" + (", remat" if config["remat"] else "")
  note = " (refused)" if train["refusal"] else " (over the HBM; the compiler accepted it)" if not train["fits"] else ""
  memory = f"{train['total_bytes'] / GIB:.1f}{note}"
  searches = {s["remat"]: s["largest_fitting_per_chip"] for s in plan.get("find_batch") or []}
  found = f"{searches[False]} / {searches[True]}" if searches else "-"
  cells = ["-"] * 4
  roof, budget = plan.get("roofline"), plan.get("input")
  if roof:
    low, high = roof["clips_per_s_per_chip_range"]
    cells = [f"{roof['lower_s']:.2f}-{roof['upper_s']:.2f}", f"{low:.1f}-{high:.1f}", f"{roof['mfu_bound']:.0%}",
             f"{budget['cpus_needed_per_chip']:.1f} of {budget['vcpus_per_chip']:.0f}" if budget else "-"]
  return f"| {variant} | {topology} | {shape} | {memory} | " + " | ".join(cells) + f" | {found} |"


def main() -> None:
  parser = cli.parser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--variants", default="B/32-8,B/16-8,L/14-8,L/14@336-16", help="variant-frames, comma separated")
  parser.add_argument("--topologies", default="v5e-8,v4-8,v5p-8,v6e-8", help="Cloud TPU slices, comma separated")
  parser.add_argument("--output-dir", default="runs/plan_table", help="JSON and log per cell (resumable)")
  parser.add_argument("--find-batch", action="store_true", help="Also find the largest per-chip batch per cell.")
  parser.add_argument("--print-only", action="store_true", help="Only print the table from existing JSON files.")
  args, extra = parser.parse_known_args()
  output_dir = epath.Path(args.output_dir)
  output_dir.mkdir(parents=True, exist_ok=True)
  variants, slices = args.variants.split(","), args.topologies.split(",")
  unknown = sorted(set(variants) - set(OFFICIAL_MICRO_BATCH))
  if unknown:
    sys.exit(f"--variants: no official micro-batch known for {unknown}; known: {sorted(OFFICIAL_MICRO_BATCH)}")
  for topology in slices:
    topologies.lookup(topology)  # an unknown name fails here, listing the known ones
  if not args.print_only:
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    for topology in slices:
      for variant in variants:
        run_cell(variant, topology, output_dir, args.find_batch, extra)
  print("| variant | slice | clips per chip x micro-batches | train step memory per chip (GiB) | step s (roofline) "
        "| clips/s per chip | MFU bound | host CPUs needed per chip (of vCPUs) | largest batch per chip, remat "
        "off / on |")
  print("|---|---|---|---|---|---|---|---|---|")
  for variant in variants:
    for topology in slices:
      path = cell_path(output_dir, variant, topology)
      print(row(variant, topology, json.loads(path.read_text()) if path.exists() else None))


if __name__ == "__main__":
  main()

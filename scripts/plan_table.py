r"""The TPU planning table of docs/tpu.md: one `python -m xclip_jax.plan --find-batch` per variant and slice.

  python scripts/plan_table.py --variants B/32-8,B/16-8,L/14-8,L/14@336-16 --topologies v5e-8,v4-8,v5p-8,v6e-8 \
      --output-dir runs/plan_table

Runs each cell as its own plan command (the official recipe of configs/kinetics.py: global batch 256, the
config's remat; train step only), one at a time, keeping its JSON (and log) in --output-dir so an interrupted
table resumes where it stopped; then prints the Markdown table from the JSON files. Cells without a JSON file
print as "not run". Every figure is the compiler's or the roofline's estimate, not a measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from etils import epath

GIB = 1024**3


def cell_name(variant: str, topology: str) -> str:
  return f"{variant.replace('/', '').replace('@', '-')}_{topology}"


def run_cell(variant: str, topology: str, output_dir: epath.Path, extra: list[str]) -> None:
  name, frames = variant.rsplit("-", 1)
  target = output_dir / f"{cell_name(variant, topology)}.json"
  if target.exists():
    return
  command = [sys.executable, "-m", "xclip_jax.plan", f"--config=configs/kinetics.py:variant={name},frames={frames}",
             f"--topology={topology}", "--find-batch", "--programs=train", f"--output={target}", *extra]
  print(f"{time.strftime('%H:%M:%S')} {' '.join(command[1:])}", flush=True)
  log = output_dir / f"{cell_name(variant, topology)}.log"
  with open(log, "w") as stream:
    status = subprocess.run(command, stdout=stream, stderr=subprocess.STDOUT, check=False).returncode
  if status:
    print(f"  failed (exit {status}); see {log}", flush=True)


def row(variant: str, topology: str, plan: dict | None) -> str:
  if plan is None:
    return f"| {variant} | {topology} | not run | | | | | |"
  train = plan["programs"][0]
  searches = {s["remat"]: s["largest_fitting_per_chip"] for s in plan.get("find_batch", [])}
  config = plan["config"]
  memory = f"{train['total_bytes'] / GIB:.1f}" + (" (refused)" if train["refusal"] else "")
  memory += f" at {config['per_chip_batch']}/chip" + (", remat" if config["remat"] else "")
  timed = plan if plan.get("roofline") else plan.get("accumulated")
  cells = ["-"] * 4
  if timed and timed.get("roofline"):
    roof, budget = timed["roofline"], timed.get("input")
    low, high = roof["clips_per_s_per_chip_range"]
    accumulation = timed["config"]["grad_accum_steps"]
    cells = [f"{roof['lower_s']:.2f}-{roof['upper_s']:.2f}" + (f" ({accumulation} micro-batches)"
                                                               if accumulation > 1 else ""),
             f"{low:.0f}-{high:.0f}", f"{roof['mfu_bound']:.0%}",
             f"{budget['cpus_needed_per_chip']:.0f} of {budget['vcpus_per_chip']:.0f}" if budget else "-"]
  found = f"{searches.get(False, '-')} / {searches.get(True, '-')}"
  return f"| {variant} | {topology} | {found} | {memory} | " + " | ".join(cells) + " |"


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--variants", default="B/32-8,B/16-8,L/14-8,L/14@336-16", help="variant-frames, comma separated")
  parser.add_argument("--topologies", default="v5e-8,v4-8,v5p-8,v6e-8", help="Cloud TPU slices, comma separated")
  parser.add_argument("--output-dir", default="runs/plan_table", help="JSON and log per cell (resumable)")
  parser.add_argument("--print-only", action="store_true", help="Only print the table from existing JSON files.")
  args, extra = parser.parse_known_args()
  output_dir = epath.Path(args.output_dir)
  output_dir.mkdir(parents=True, exist_ok=True)
  variants, topologies = args.variants.split(","), args.topologies.split(",")
  if not args.print_only:
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    for topology in topologies:
      for variant in variants:
        run_cell(variant, topology, output_dir, extra)
  print("| variant | slice | largest batch per chip (remat off / on) | train step memory per chip, GiB, at global "
        "batch 256 | step s (roofline) | clips/s per chip | MFU bound | host CPUs needed per chip (of vCPUs) |")
  print("|---|---|---|---|---|---|---|---|")
  for variant in variants:
    for topology in topologies:
      path = output_dir / f"{cell_name(variant, topology)}.json"
      print(row(variant, topology, json.loads(path.read_text()) if path.exists() else None))


if __name__ == "__main__":
  main()

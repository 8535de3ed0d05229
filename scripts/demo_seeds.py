"""How much the demo's result depends on luck: `make demo` for seeds 0..N-1, each from scratch.

    python scripts/demo_seeds.py --seeds 3 [--workdir runs/demo_seeds] [--config configs/demo.py[:shrink=true]]
        [-- --config.x=y ...]

Seed s runs `python -m xclip_jax.main --config configs/demo.py:seed=s --workdir WORKDIR/seed_s` with its own
synthetic dataset (generated with seed s in WORKDIR/seed_s/data), initialisation, data order and few-shot
draw, one after another in fresh processes. Prints each seed's table and wall time, then the min / median / max
of the supervised (4 views), zero-shot and few-shot top-1 and of the wall time; writes WORKDIR/summary.json.
A seed whose workdir already holds results.json is not rerun (delete the folder to rerun it).
"""

from __future__ import annotations

import json
import pathlib
import statistics
import subprocess
import sys
import time

from xclip_jax import cli

FIGURES = (("supervised", "supervised top-1 (4 views)"), ("zero_shot", "zero-shot top-1"),
           ("few_shot", "few-shot top-1"))


def run_seed(seed: int, workdir: pathlib.Path, config: str, extra: list[str]) -> dict:
  """Runs one seed's demo (unless already done) and returns its results.json plus the wall time."""
  results_path = workdir / "results.json"
  timing_path = workdir / "wall_seconds.txt"
  if not results_path.exists():
    workdir.mkdir(parents=True, exist_ok=True)
    config_with_seed = f"{config},seed={seed}" if ":" in config else f"{config}:seed={seed}"
    command = [sys.executable, "-m", "xclip_jax.main", f"--config={config_with_seed}", f"--workdir={workdir}",
               f"--config.data.synthetic_dir={workdir / 'data'}", *extra]
    print(f"\n=== seed {seed}: {' '.join(command)}", flush=True)
    start = time.time()
    completed = subprocess.run(command, check=False)
    seconds = time.time() - start
    if completed.returncode != 0:
      raise SystemExit(f"seed {seed} failed (exit code {completed.returncode}); its log is above, workdir {workdir}")
    timing_path.write_text(f"{seconds:.1f}\n")
  results = json.loads(results_path.read_text())
  results["wall_seconds"] = float(timing_path.read_text()) if timing_path.exists() else float("nan")
  return results


def spread(values: list[float]) -> dict[str, float]:
  return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def table(seed: int, results: dict) -> str:
  lines = [f"seed {seed} ({results['wall_seconds'] / 60:.1f} min)"]
  for key, label in FIGURES:
    r = results[key]
    lines.append(f"  {label:<28} {r['top1']:6.2f}%  (chance {r['chance']:.2f}%, {r['videos']} videos, "
                 f"{r['views']} views)")
  return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
  parser = cli.parser(description=__doc__)
  parser.add_argument("--seeds", type=int, default=3, help="run seeds 0..N-1")
  parser.add_argument("--workdir", default="runs/demo_seeds", help="one subfolder per seed")
  parser.add_argument("--config", default="configs/demo.py",
                      help="demo config file and arguments, e.g. configs/demo.py:shrink=true (seed=s is added)")
  parser.add_argument("extra", nargs="*", help="more flags for xclip_jax.main, after --")
  args = parser.parse_args(argv)
  if args.seeds < 1:
    parser.error(f"--seeds must be >= 1, got {args.seeds}")
  root = pathlib.Path(args.workdir)
  per_seed = {seed: run_seed(seed, root / f"seed_{seed}", args.config, args.extra) for seed in range(args.seeds)}
  print("\nPer seed:")
  for seed, results in per_seed.items():
    print(table(seed, results))
  summary = {key: spread([r[key]["top1"] for r in per_seed.values()]) for key, _ in FIGURES}
  summary["wall_minutes"] = spread([r["wall_seconds"] / 60 for r in per_seed.values()])
  print(f"\nOver {args.seeds} seeds: min / median / max")
  for key, label in (*FIGURES, ("wall_minutes", "wall time (min)")):
    s = summary[key]
    unit = "" if key == "wall_minutes" else "%"
    print(f"  {label:<28} {s['min']:6.2f}{unit} / {s['median']:6.2f}{unit} / {s['max']:6.2f}{unit}")
  (root / "summary.json").write_text(json.dumps({"seeds": {str(k): {key: v[key]["top1"] for key, _ in FIGURES}
                                                            | {"wall_seconds": v["wall_seconds"]}
                                                            for k, v in per_seed.items()},
                                                 "summary": summary}, indent=2) + "\n")
  print(f"\nwritten: {root / 'summary.json'}")
  return 0


if __name__ == "__main__":
  sys.exit(main())

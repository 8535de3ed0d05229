"""Where a benchmark step spends its time: the top operations of ours (jax.profiler) or the peer (torch.profiler).

  python scripts/profile_step.py --framework ours --row infer --variant B/32 --batch 4 --classes 16
  python scripts/profile_step.py --framework hf --row train --variant B/32 --batch 4 --classes 16

Builds exactly what scripts/benchmark.py times (scripts/benchmarking/ours.py, peer_hf.py), warms it up,
traces `--steps` steps and prints the operations that take the most time, summed over the steps: for ours
the XLA operations of the compiled program (HLO names such as `dot.12`, `fusion.3`, with their op kinds),
for the peer torch's operator table (self time). `--trace-dir` keeps the raw trace (TensorBoard/XProf or
chrome://tracing). On CPU, `--cpus 0` pins the process to one core for steadier per-op figures.
"""

from __future__ import annotations

import collections
import os
import pathlib
import re
import sys
import tempfile

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from scripts import benchmark  # noqa: E402
from xclip_jax import cli  # noqa: E402


def _events(plane):
  for line in plane.lines:
    for event in line.events:
      yield line.name, event


def profile_ours(runner, steps: int, trace_dir: str, top: int) -> None:
  import jax

  with jax.profiler.trace(trace_dir):
    for _ in range(steps):
      result = runner.step()
    runner.sync(result)
  files = sorted(pathlib.Path(trace_dir).rglob("*.xplane.pb"))
  data = jax.profiler.ProfileData.from_file(str(files[-1]))
  totals: dict[str, float] = collections.defaultdict(float)
  counts: dict[str, int] = collections.defaultdict(int)
  wall = 0.0
  for plane in data.planes:
    if not plane.name.startswith("/host:CPU") and not plane.name.startswith("/device:"):
      continue
    for line_name, event in _events(plane):
      name = event.name
      if line_name in ("XLA Modules",) or name.startswith(("jit_", "PjitFunction", "ThunkExecutor")):
        if name.startswith("jit_") and line_name == "XLA Modules":
          wall += event.duration_ns
        continue
      if "XLA Ops" not in line_name and not re.match(r"^[a-z_\-]+(\.\d+)*$", name):
        continue
      totals[name] += event.duration_ns
      counts[name] += 1
  _print_top(totals, counts, steps, top, wall)
  with jax.set_mesh(runner.mesh):
    hlo = runner.lower().compile().as_text()
  (pathlib.Path(trace_dir) / "compiled_hlo.txt").write_text(hlo)
  print(f"\nwhat the top {top} ops compute (compiled HLO in {trace_dir}/compiled_hlo.txt):")
  for name, _ in sorted(totals.items(), key=lambda kv: -kv[1])[:top]:
    print(f"  {name:<28} {describe_instruction(hlo, name)}")


def describe_instruction(hlo: str, name: str) -> str:
  """The HLO line defining `name` (shape and operands) and, for fusions, the fused computation's root."""
  match = re.search(rf"^\s*(?:ROOT )?%?{re.escape(name)} = (.*)$", hlo, re.M)
  if not match:
    return "?"
  line = match.group(1)
  called = re.search(r"calls=(%?[\w.\-]+)", line)
  summary = re.sub(r"%|, kind=.*", "", line)[:110]
  if called:
    body = re.search(rf"^%?{re.escape(called.group(1).lstrip('%'))} .*?\{{(.*?)^\}}", hlo, re.M | re.S)
    if body:
      ops = re.findall(r"= \S+ (\w[\w\-]*)\(", body.group(1))
      summary += f"  [{' '.join(o for o in ops if o not in ('parameter', 'bitcast', 'constant'))[:120]}]"
  source = re.search(r'op_name="([^"]+)"', line)
  return summary + (f"  <- {source.group(1)[-90:]}" if source else "")


def _print_top(totals, counts, steps, top, wall=0.0) -> None:
  grand = sum(totals.values())
  kinds: dict[str, float] = collections.defaultdict(float)
  for name, ns in totals.items():
    kinds[re.sub(r"[.\d]+$", "", name)] += ns
  print(f"op time summed over threads, per step: {grand / steps / 1e6:.1f} ms"
        + (f" (program wall time {wall / steps / 1e6:.1f} ms/step)" if wall else ""))
  print("\nby kind:")
  for kind, ns in sorted(kinds.items(), key=lambda kv: -kv[1])[:top]:
    print(f"  {kind:<40} {ns / steps / 1e6:10.1f} ms  {ns / grand:6.1%}")
  print(f"\ntop {top} ops:")
  for name, ns in sorted(totals.items(), key=lambda kv: -kv[1])[:top]:
    print(f"  {name:<40} {ns / steps / 1e6:10.1f} ms  {ns / grand:6.1%}  x{counts[name] // steps}")


def profile_peer(runner, steps: int, trace_dir: str, top: int) -> None:
  import torch

  with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]
                              + ([torch.profiler.ProfilerActivity.CUDA] if runner.on_cuda else [])) as prof:
    for _ in range(steps):
      result = runner.step()
    runner.sync(result)
  prof.export_chrome_trace(str(pathlib.Path(trace_dir) / "torch_trace.json"))
  sort = "self_cuda_time_total" if runner.on_cuda else "self_cpu_time_total"
  print(prof.key_averages().table(sort_by=sort, row_limit=top))


def main(argv: list[str] | None = None) -> int:
  parser = cli.parser(description=__doc__)
  parser.add_argument("--framework", default="ours", choices=("ours", "hf"))
  parser.add_argument("--row", default="train", choices=("train", "infer"))
  parser.add_argument("--steps", type=int, default=3, help="steps traced (after the warm-up)")
  parser.add_argument("--top", type=int, default=25)
  parser.add_argument("--trace-dir", default=None, help="keep the raw trace here")
  args, rest = parser.parse_known_args(argv)
  bench = benchmark.parse_args(rest)
  variant, frames = bench.variant.split(",")[0], int(bench.frames.split(",")[0])
  with tempfile.TemporaryDirectory(prefix="xclip-profile-") as tmp:
    workdir = pathlib.Path(tmp)
    config = benchmark.variant_config(variant, frames=frames)
    benchmark.write_inputs(workdir, config, bench.batch, bench.classes)
    spec = benchmark.worker_spec(bench, variant, frames, args.row, workdir)
    spec["peer"] = "hf" if args.framework == "hf" else "none"
    benchmark.apply_cpu_limits(spec)
    benchmark.export_weights(spec, workdir)  # the weights both load, as in the benchmark
    if args.framework == "hf":
      from scripts.benchmarking.peer_hf import PeerRunner as runner_class
    else:
      from scripts.benchmarking.ours import OursRunner as runner_class
    runner = runner_class(spec)
    for _ in range(max(bench.warmup, 1)):
      result = runner.step()
    runner.sync(result)
    trace_dir = args.trace_dir or str(workdir / "trace")
    os.makedirs(trace_dir, exist_ok=True)
    print(f"{args.framework} {variant}-{frames} {args.row}, batch {bench.batch}, {bench.classes} classes, "
          f"{runner.device}, {runner.dtype}; cpus {spec['cpus'] or 'all'}")
    (profile_peer if args.framework == "hf" else profile_ours)(runner, args.steps, trace_dir, args.top)
  return 0


if __name__ == "__main__":
  sys.exit(main())

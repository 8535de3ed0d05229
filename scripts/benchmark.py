"""Training-step and inference speed of xclip_jax beside transformers' XCLIPModel, in one run.

  python scripts/benchmark.py --peer hf                                      # B/32, B/16, L/14 at 8 frames
  python scripts/benchmark.py --peer hf --variant B/32 --batch 4 --classes 16 --repeats 5
  python scripts/benchmark.py --peer none --variant B/16 --batch 256 --accum 4 --mesh data=1,fsdp=-1 --remat
  python scripts/benchmark.py --peer ours --peer-xla-flags=--xla_cpu_experimental_ynn_fusion_type= --variant B/32

For each variant x frames x row (`train`, `infer`), ours and the peer each run in their own process with
the same random weights (created once, in a process of their own, saved as an xclip_jax directory and, by
the project's converter, as an HF directory; each side loads its file, the peer with
`XCLIPModel.from_pretrained`) and the same synthetic uint8 batch; both check that their first output agrees
(max |difference| printed). After each worker's warm-up, the parent times blocks of `--steps` steps
alternately (ours, peer, peer, ours, ...), `--repeats` times, so that both see the same machine load; the
speed ratio is computed per adjacent pair and reported as the median and the range (`--one-at-a-time` runs
the frameworks one after the other instead, for models of which two copies do not fit in memory).
`--peer ours` times ours against ours run with other XLA flags (`--peer-xla-flags`, added to the environment's
XLA_FLAGS in the peer's process only): the same A/B for choosing XLA:CPU flags, and its "first outputs differ by"
says whether the flags change the results.

Rows (see scripts/benchmarking/ours.py and peer_hf.py for exactly what each side runs):
  train: one optimizer step of the X-CLIP recipe with the text tower frozen and the `--classes` class texts
         encoded once: normalise, video tower + MIT + prompts + logits, soft-target cross-entropy (label
         smoothing 0.1; mixup off on both sides), backward, AdamW with the official parameter groups.
  infer: normalise + video tower + MIT + prompts + logits against the cached class texts.

Per row: ms/step, clips/s, speed ratio ours/peer (clips/s), model TFLOP/s per device and MFU (model FLOPs from
xclip_jax.perf: 2 per multiply-add of the video tower and prompt generator, x3 for training; rematerialised
recompute is not counted), peak memory (accelerator allocator peak, or the worker's peak RSS on CPU), the
set-up time (model and optimizer state, text features, and for ours the ahead-of-time compilation, also
shown alone) and the time of the first step after it (the peer's warm-up), and the host CPU time per step
(all threads; on a shared CPU, where wall time depends on the others' load, CPU time and `--cpus 0` -- both
frameworks on one pinned core, no thread contention -- give steadier comparisons). `--dtype auto` computes in
bf16 on accelerators (bf16 autocast for the peer) and float32 on CPU. Peak FLOP/s come from the device kind
or `--peak-tflops`. The markdown table at the end is what docs/performance.md shows.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
from typing import Any

import numpy as np

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from scripts.benchmarking import protocol  # noqa: E402
from xclip_jax import cli, perf, storage  # noqa: E402
from xclip_jax.models.config import variant_config  # noqa: E402
from xclip_jax.tokenizer import tokenize  # noqa: E402

WORKERS = {"ours": "scripts.benchmarking.ours", "hf": "scripts.benchmarking.peer_hf"}
PEER_OURS = "ours+flags"  # the framework name of ours with --peer-xla-flags


def model_flops_per_step(config, row: str, batch: int, classes: int, train_text: bool) -> float:
  """FLOPs (2 per multiply-add) of one step: video tower + prompts per clip; x3 (forward + backward) to train."""
  parts = perf.flops_breakdown(config, num_classes=classes)
  video = sum(value for name, value in parts.items() if name != "text")
  if row == "infer":
    return 2 * video * batch
  return 2 * 3 * (video * batch + (parts["text"] if train_text else 0.0))


@dataclasses.dataclass
class Worker:
  """One running worker process and what it reported."""

  name: str
  process: subprocess.Popen
  log: pathlib.Path
  ready: dict[str, Any] | None = None
  done: dict[str, Any] | None = None
  blocks: list[float] = dataclasses.field(default_factory=list)  # seconds per step, one per timed block
  cpu_blocks: list[float] = dataclasses.field(default_factory=list)  # host CPU seconds (all threads) per step

  def receive(self) -> dict[str, Any]:
    for line in self.process.stdout:
      if line.startswith(protocol.MARK):
        message = json.loads(line[len(protocol.MARK):])
        if message["event"] == "error":
          raise RuntimeError(f"{self.name} worker: {message['message']} (log: {self.log})")
        return message
    tail = self.log.read_text()[-3000:] if self.log.exists() else ""
    raise RuntimeError(f"{self.name} worker exited with code {self.process.wait()} (log {self.log}):\n{tail}")

  def command(self, **message: Any) -> dict[str, Any]:
    self.process.stdin.write(json.dumps(message) + "\n")
    self.process.stdin.flush()
    return self.receive()

  def stop(self) -> None:
    if self.process.poll() is None:
      self.process.kill()
      self.process.wait()


def apply_cpu_limits(spec: dict[str, Any]) -> None:
  """Pins this process to `spec["cpus"]` (both JAX's and torch's thread pools then size themselves to it)."""
  if spec["cpus"]:
    os.sched_setaffinity(0, spec["cpus"])


def worker_env(extra_xla_flags: str = "") -> dict[str, str]:
  # Both workers share one accelerator: JAX must not reserve 75% of its memory up front (its peak in use is
  # still reported exactly).
  env = {**os.environ, "PYTHONPATH": str(REPO), "XLA_PYTHON_CLIENT_PREALLOCATE": "false"}
  if extra_xla_flags:  # later flags win in XLA_FLAGS
    env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {extra_xla_flags}".strip()
  return env


def start_worker(name: str, spec: dict[str, Any], workdir: pathlib.Path) -> Worker:
  log = workdir / f"{name}-{spec['row']}.log"
  module = WORKERS["ours" if name == PEER_OURS else name]
  env = worker_env(spec["peer_xla_flags"] if name == PEER_OURS else "")
  process = subprocess.Popen([sys.executable, "-m", module, json.dumps(spec)], cwd=REPO, text=True,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log.open("w"),
                             env=env, preexec_fn=lambda: apply_cpu_limits(spec))
  worker = Worker(name, process, log)
  try:
    worker.ready = worker.receive()
  except Exception:
    worker.stop()
    raise
  return worker


def export_weights(spec: dict[str, Any], workdir: pathlib.Path) -> None:
  """Random weights for both frameworks (scripts/benchmarking/ours.py, in a process of its own)."""
  with (workdir / "export.log").open("w") as log:
    done = subprocess.run([sys.executable, "-m", WORKERS["ours"], json.dumps({**spec, "row": "export"})], cwd=REPO,
                          stdout=log, stderr=subprocess.STDOUT, env=worker_env())
  if done.returncode:
    raise RuntimeError(f"exporting the weights for the peer failed:\n{(workdir / 'export.log').read_text()[-3000:]}")


def write_inputs(workdir: pathlib.Path, config, batch: int, classes: int) -> None:
  rng = np.random.default_rng(0)
  videos = rng.integers(0, 256, (batch, config.num_frames, config.image_size, config.image_size, 3), dtype=np.uint8)
  labels = rng.integers(0, classes, (batch,)).astype(np.int32)
  tokens = tokenize([f"class {i}" for i in range(classes)], context_length=config.context_length)
  np.savez(workdir / protocol.INPUTS_FILE, videos=videos, labels=labels, tokens=np.asarray(tokens, np.int32))


def worker_spec(args: argparse.Namespace, variant: str, frames: int, row: str, workdir: pathlib.Path
                ) -> dict[str, Any]:
  """What a worker builds (the JSON it gets as argv[1])."""
  return dict(variant=variant, frames=frames, row=row, batch=args.batch, accum=args.accum, dtype=args.dtype,
              remat=args.remat, train_text=args.train_text, attention=args.attention, mesh=args.mesh,
              overrides=args.overrides, scan_layers=args.scan_layers, warmup=args.warmup, cpus=args.cpus,
              peer=args.peer, peer_attention=args.peer_attention, peer_xla_flags=args.peer_xla_flags,
              workdir=str(workdir), weights=str(workdir / "hf"))


def run_row(args: argparse.Namespace, variant: str, frames: int, row: str, workdir: pathlib.Path
            ) -> list[dict[str, Any]]:
  """Runs ours (and the peer) for one row; returns one result dict per framework."""
  spec = worker_spec(args, variant, frames, row, workdir)
  names = ["ours"] + {"none": [], "ours": [PEER_OURS]}.get(args.peer, [args.peer])
  workers: list[Worker] = []

  def time_blocks(worker: Worker) -> None:
    timed = worker.command(cmd="time", steps=args.steps)
    worker.blocks.append(timed["seconds"] / timed["steps"])
    worker.cpu_blocks.append(timed["cpu_seconds"] / timed["steps"])

  try:
    if not (workdir / "jax").exists():
      export_weights(spec, workdir)
    if args.one_at_a_time:  # each framework alone in memory: all its blocks, then the next framework
      for name in names:
        workers.append(start_worker(name, spec, workdir))
        for _ in range(args.repeats):
          time_blocks(workers[-1])
        workers[-1].done = workers[-1].command(cmd="exit")
        workers[-1].stop()
    else:
      for name in names:
        workers.append(start_worker(name, spec, workdir))
      for repeat in range(args.repeats):
        for worker in workers if repeat % 2 == 0 else workers[::-1]:
          time_blocks(worker)
      for worker in workers:
        worker.done = worker.command(cmd="exit")
  finally:
    for worker in workers:
      worker.stop()
  config = variant_config(variant, frames=frames)
  flops = model_flops_per_step(config, row, args.batch, args.classes, args.train_text)
  results = []
  for worker in workers:
    seconds = statistics.median(worker.blocks)
    devices = int(worker.ready["device"].split(" x ")[0]) if " x " in worker.ready["device"] else 1
    peak = protocol.peak_tflops(worker.ready["device"], args.peak_tflops)
    tflops = flops / seconds / devices / 1e12
    result = dict(model=f"{variant}-{frames}", row=row, framework=worker.name, device=worker.ready["device"],
                  dtype=worker.ready.get("dtype"), batch=args.batch, classes=args.classes, devices=devices,
                  ms_per_step=1e3 * seconds, ms_per_step_blocks=[1e3 * s for s in worker.blocks],
                  cpu_ms_per_step=1e3 * statistics.median(worker.cpu_blocks),
                  clips_per_s=args.batch / seconds, tflops_per_device=tflops,
                  mfu=tflops / peak if peak else None, peak_memory_bytes=worker.done["peak_memory_bytes"],
                  memory_kind=worker.done["memory_kind"], first_step_s=worker.ready["first_step_s"],
                  init_s=worker.ready["init_s"], compile_s=worker.ready.get("compile_s"),
                  check=worker.ready["check"], xla_flags=worker.ready["xla_flags"])
    results.append(result)
  if len(workers) == 2:
    ours, peer = workers
    ratios = [p / o for o, p in zip(ours.blocks, peer.blocks, strict=True)]  # per-device speed ours / peer
    ratios = [r * results[1]["devices"] / results[0]["devices"] for r in ratios]
    results[0]["speed_vs_peer"] = dict(median=statistics.median(ratios), min=min(ratios), max=max(ratios),
                                       each=ratios, interleaved=not args.one_at_a_time)
    cpu_ratios = [p / o for o, p in zip(ours.cpu_blocks, peer.cpu_blocks, strict=True)]
    results[0]["cpu_time_vs_peer"] = dict(median=statistics.median(cpu_ratios), min=min(cpu_ratios),
                                          max=max(cpu_ratios))
    difference = np.max(np.abs(np.asarray(ours.ready["check"]) - np.asarray(peer.ready["check"])))
    results[0]["check_max_abs_diff"] = float(difference)
  return results


def _gib(value: int | None) -> str:
  return "n/a" if value is None else f"{value / 2**30:.2f} GiB"


def markdown_table(results: list[dict[str, Any]]) -> str:
  lines = ["| model | step | framework | batch | dtype | ms/step | clips/s | speed vs peer (range) | TFLOP/s | MFU "
           "| host CPU ms/step | peak memory | set-up s (compile) | first step s |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
  for r in results:
    speed = r.get("speed_vs_peer")
    ratio = (f"**{speed['median']:.2f}x** ({speed['min']:.2f}–{speed['max']:.2f})" if speed
             else ("1.00x" if r["framework"] != "ours" else "–"))
    if speed and not speed["interleaved"]:
      ratio += " one at a time"
    mfu = "n/a" if r["mfu"] is None else f"{100 * r['mfu']:.1f}%"
    memory = _gib(r["peak_memory_bytes"]) + (" RSS" if r["memory_kind"] == "rss" else "")
    name = {"ours": "xclip_jax", "hf": "HF XCLIPModel"}.get(r["framework"], "xclip_jax, --peer-xla-flags")
    setup = f"{r['init_s']:.1f}" + (f" ({r['compile_s']:.1f})" if r.get("compile_s") is not None else "")
    lines.append(f"| {r['model']} | {r['row']} | {name} | {r['batch']} | {r['dtype']} | {r['ms_per_step']:.0f} "
                 f"| {r['clips_per_s']:.2f} | {ratio} | {r['tflops_per_device']:.3f} | {mfu} "
                 f"| {r['cpu_ms_per_step']:.0f} | {memory} | {setup} | {r['first_step_s']:.1f} |")
  return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
  parser = cli.parser(description=__doc__)
  parser.add_argument("--peer", default="hf", choices=("hf", "ours", "none"),
                      help="hf: transformers' XCLIPModel; ours: ours with --peer-xla-flags")
  parser.add_argument("--peer-xla-flags", default="", help="--peer ours: XLA flags added in the peer's process")
  parser.add_argument("--variant", default="B/32,B/16,L/14", help="comma-separated variants")
  parser.add_argument("--frames", default="8", help="comma-separated frame counts")
  parser.add_argument("--rows", default="train,infer", help="train and/or infer")
  parser.add_argument("--batch", type=int, default=4, help="global batch per step")
  parser.add_argument("--accum", type=int, default=1, help="micro-batches per training step")
  parser.add_argument("--classes", type=int, default=400, help="class texts (encoded once)")
  parser.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16"),
                      help="auto: bfloat16 on accelerators (autocast for the peer), float32 on CPU")
  parser.add_argument("--remat", action="store_true", help="ours: model.remat; peer: gradient checkpointing")
  parser.add_argument("--scan-layers", action="store_true", help="ours: scan over stacked vision layers")
  parser.add_argument("--train-text", action="store_true", help="train the text tower (re-encode texts each step)")
  parser.add_argument("--attention", default="auto", help="ours: auto, xla or cudnn")
  parser.add_argument("--peer-attention", default="sdpa", help="HF attn_implementation: sdpa or eager")
  parser.add_argument("--mesh", default="data=-1", help="ours: e.g. data=1,fsdp=-1")
  parser.add_argument("--cpus", default=None, help="CPU: pin each worker to these cores, e.g. 0 or 0,1")
  parser.add_argument("--one-at-a-time", action="store_true",
                      help="run the frameworks one after the other (when two copies of a model do not fit in "
                           "memory together); their blocks are then not alternated, so the ratio is not load-fair")
  parser.add_argument("--steps", type=int, default=10, help="steps per timed block")
  parser.add_argument("--repeats", type=int, default=3, help="timed blocks per framework, alternated")
  parser.add_argument("--warmup", type=int, default=2, help="untimed steps (the first one compiles)")
  parser.add_argument("--peak-tflops", type=float, default=None, help="peak TFLOP/s per device (for MFU)")
  parser.add_argument("--override", action="append", default=[], help="ModelConfig field=value (int), ours only")
  parser.add_argument("--json", default=None, help="also write the results to this file")
  args = parser.parse_args(argv)
  args.overrides = {k: int(v) for k, v in (item.split("=") for item in args.override)}
  args.cpus = [int(c) for c in args.cpus.split(",")] if args.cpus else None
  args.mesh = {k: int(v) for k, v in (item.split("=") for item in args.mesh.split(","))}
  if args.peer == "hf" and args.overrides:
    parser.error("--override changes only our model; use it with --peer none or ours.")
  if (args.peer == "ours") != bool(args.peer_xla_flags):
    parser.error("--peer ours needs --peer-xla-flags, and --peer-xla-flags needs --peer ours.")
  if args.batch % args.accum:
    parser.error(f"--batch {args.batch} is not divisible by --accum {args.accum}.")
  return args


def main(argv: list[str] | None = None) -> int:
  args = parse_args(argv)
  started = datetime.datetime.now()
  load_before = os.getloadavg()
  results = []
  with tempfile.TemporaryDirectory(prefix="xclip-benchmark-") as tmp:
    for variant in args.variant.split(","):
      for frames in (int(f) for f in args.frames.split(",")):
        workdir = pathlib.Path(tmp) / f"{variant.replace('/', '_')}-{frames}"
        workdir.mkdir()
        write_inputs(workdir, variant_config(variant, frames=frames), args.batch, args.classes)
        for row in args.rows.split(","):
          print(f"{variant}-{frames} {row} ...", file=sys.stderr, flush=True)
          try:
            row_results = run_row(args, variant, frames, row, workdir)
          except RuntimeError as error:
            print(f"{variant}-{frames} {row} failed: {error}", file=sys.stderr)
            continue
          results.extend(row_results)
          for r in row_results:
            speed = r.get("speed_vs_peer")
            print(f"  {r['framework']:>5}: {r['ms_per_step']:.1f} ms/step (blocks "
                  f"{', '.join(f'{b:.0f}' for b in r['ms_per_step_blocks'])}), {r['clips_per_s']:.2f} clips/s, "
                  f"host CPU {r['cpu_ms_per_step']:.0f} ms/step"
                  + (f", speed vs peer {speed['median']:.3f}x [{speed['min']:.3f}, {speed['max']:.3f}], CPU time "
                     f"peer/ours {r['cpu_time_vs_peer']['median']:.3f}x, first outputs differ by "
                     f"{r['check_max_abs_diff']:.1e}" if speed else ""),
                  file=sys.stderr, flush=True)
  load_after = os.getloadavg()
  devices = sorted({r["device"] for r in results})
  print(f"\n{started:%Y-%m-%d}, devices: {'; '.join(devices)}; host: {os.cpu_count()} x {protocol.host_cpu()}; "
        f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}; load average "
        f"(1 min) {load_before[0]:.2f} before, {load_after[0]:.2f} after; {args.classes} classes, "
        f"{args.repeats} x {args.steps} timed steps per framework (median; speed range over the repeats)")
  print(markdown_table(results))
  if args.json:
    storage.write_text(args.json, json.dumps(dict(date=f"{started:%Y-%m-%d %H:%M}", args=vars(args),  # or gs://
                                                  host_cpu=protocol.host_cpu(), xla_flags=os.environ.get("XLA_FLAGS"),
                                                  load=[load_before, load_after], results=results), indent=2) + "\n")
  return 0 if results else 1


if __name__ == "__main__":
  sys.exit(main())

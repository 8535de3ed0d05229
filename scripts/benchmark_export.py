"""The exported classifier in onnxruntime beside the JAX model on the CPU, in one run; and their logits agree.

    python scripts/benchmark_export.py                                 # B/32, 8 frames, random weights
    python scripts/benchmark_export.py --variant B/32 --batches 1,8 --rounds 5 --repeats 3
    python scripts/benchmark_export.py --export exported_demo          # an existing export (its manifest's model)

Without --export it creates a randomly initialised model of --variant (seed 0), saves it as a model directory and
exports it with `python -m xclip_jax.export`'s code (`--classes` labels, ONNX only) into --workdir. Both sides
then classify the same random uint8 batch: `classifier.onnx` in onnxruntime (CPUExecutionProvider, all
optimisations, default threads) and, in JAX, the jitted function the file was made from (normalisation, video
tower, prompts, logits against the class embeddings, softmax), compiled before timing. The max |logits
difference| is printed first; over --tolerance (1e-4) the script exits 1.

Timing: for each of --rounds rounds and each batch size, JAX and onnxruntime run --repeats calls each, in
alternating order (JAX first in even rounds), so both see the same machine load. The table gives the median
latency per call and clips/s with the range over the rounds, and the CPU time per call (all threads), steadier
on a shared machine. Report the load average printed with it.
"""

from __future__ import annotations

import datetime
import json
import os
import pathlib
import statistics
import sys
import tempfile
import time

import numpy as np

from xclip_jax import cli


def make_export(variant: str, frames: int, classes: int, workdir: pathlib.Path) -> pathlib.Path:
  """A random model of `variant` saved in workdir/model and exported (ONNX) to workdir/export."""
  from xclip_jax import pretrained
  from xclip_jax.export import export_model
  from xclip_jax.models.config import variant_config
  from xclip_jax.models.params import flat_params
  from xclip_jax.models.xclip import create_model

  config = variant_config(variant, frames=frames)
  pretrained.save_pretrained(workdir / "model", config, flat_params(create_model(config, seed=0)))
  export_model(workdir / "model", workdir / "export", labels=[f"class {k}" for k in range(classes)],
               formats="onnx", progress=False)
  return workdir / "export"


def jax_classifier(folder: pathlib.Path, manifest: dict):
  """The JAX function classifier.onnx was made from, jitted, with the model the manifest names."""
  import jax

  from xclip_jax import load_model
  from xclip_jax.export.functions import ExportedModel
  from xclip_jax.tokenizer import tokenize

  model = load_model(manifest["model"]["source"], dtype="float32", attention_implementation="xla")
  labels = manifest["labels"]
  exported = ExportedModel(model, model.encode_text(tokenize(labels, context_length=model.config.context_length,
                                                             truncate=True)))
  weights = {name: jax.device_put(value) for name, value in exported.weights.items()}
  step = jax.jit(exported.classifier_fn)
  return lambda video: [np.asarray(x) for x in step(weights, video)]


def timed(fn, video, repeats: int) -> tuple[float, float]:
  """(median wall seconds per call, CPU seconds per call) over `repeats` calls."""
  walls, cpu_start = [], time.process_time()
  for _ in range(repeats):
    start = time.perf_counter()
    fn(video)
    walls.append(time.perf_counter() - start)
  return statistics.median(walls), (time.process_time() - cpu_start) / repeats


def main(argv: list[str] | None = None) -> int:
  parser = cli.parser("python scripts/benchmark_export.py", __doc__)
  parser.add_argument("--variant", default="B/32", help="model variant to create (default B/32)")
  parser.add_argument("--frames", type=int, default=8, help="frames per clip of the created model (default 8)")
  parser.add_argument("--classes", type=int, default=16, help="labels baked into the classifier (default 16)")
  parser.add_argument("--export", help="use this export folder (and the model its manifest names) instead")
  parser.add_argument("--workdir", help="where the created model and export go (default: a temporary folder)")
  parser.add_argument("--batches", default="1,8", help="comma-separated batch sizes (default 1,8)")
  parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
  parser.add_argument("--repeats", type=int, default=3, help="calls per side, batch size and round (default 3)")
  parser.add_argument("--tolerance", type=float, default=1e-4, help="largest logits difference accepted (1e-4)")
  args = parser.parse_args(argv)
  batches = [int(b) for b in args.batches.split(",")]

  import jax
  import onnxruntime

  started, load_before = datetime.datetime.now(), os.getloadavg()
  with tempfile.TemporaryDirectory(prefix="xclip-export-bench-") as tmp:
    if args.export:
      folder = pathlib.Path(args.export)
    else:
      workdir = pathlib.Path(args.workdir or tmp)
      print(f"creating and exporting a random {args.variant}-{args.frames} in {workdir} ...", file=sys.stderr)
      start = time.perf_counter()
      folder = make_export(args.variant, args.frames, args.classes, workdir)
      print(f"exported in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    manifest = json.loads((folder / "manifest.json").read_text())
    if manifest["labels"] is None:
      print(f"{folder} has no classifier (exported without labels)", file=sys.stderr)
      return 1
    frames, size = manifest["input"]["frames"], manifest["input"]["size"]
    session = onnxruntime.InferenceSession(str(folder / "classifier.onnx"), providers=["CPUExecutionProvider"])
    ours = jax_classifier(folder, manifest)
    runners = {"jax": ours, "onnxruntime": lambda video: session.run(None, {"video": video})}

    rng = np.random.default_rng(0)
    videos = {b: rng.integers(0, 256, (b, frames, size, size, 3), np.uint8) for b in batches}
    worst = 0.0
    for video in videos.values():  # also the warm-up: compiles JAX, lets onnxruntime allocate
      (jax_logits, _), (onnx_logits, _) = ours(video), runners["onnxruntime"](video)
      worst = max(worst, float(np.max(np.abs(jax_logits.astype(np.float64) - onnx_logits))))
    print(f"max |logits onnxruntime - jax| = {worst:.2e} ({len(manifest['labels'])} classes; tolerance "
          f"{args.tolerance:g})")

    results = {(side, b): [] for side in runners for b in batches}
    for round_index in range(args.rounds):
      order = list(runners) if round_index % 2 == 0 else list(reversed(runners))
      for b in batches:
        for side in order:
          results[side, b].append(timed(runners[side], videos[b], args.repeats))
      print(f"round {round_index + 1}/{args.rounds} done", file=sys.stderr)
  load_after = os.getloadavg()

  config = manifest["model"]["config"]
  name = f"{args.variant}-{frames}" if not args.export else f"{folder.name} ({frames} frames, {size} px)"
  print(f"\n{started:%Y-%m-%d}, {name}, float32; {os.cpu_count()} CPUs ({jax.devices()[0].device_kind}); load "
        f"average (1 min) {load_before[0]:.2f} before, {load_after[0]:.2f} after; onnxruntime "
        f"{onnxruntime.__version__}, jax {jax.__version__}; {args.rounds} rounds x {args.repeats} calls; "
        f"vision {config['vision_width']}x{config['vision_layers']}")
  print("| runtime | batch | latency ms (median, range over rounds) | clips/s | CPU ms per call |")
  print("|---|---|---|---|---|")
  for b in batches:
    for side in runners:
      walls = [wall for wall, _ in results[side, b]]
      cpu = statistics.median(c for _, c in results[side, b])
      median = statistics.median(walls)
      print(f"| {side} | {b} | {1e3 * median:.1f} ({1e3 * min(walls):.1f}-{1e3 * max(walls):.1f}) | "
            f"{b / median:.2f} ({b / max(walls):.2f}-{b / min(walls):.2f}) | {1e3 * cpu:.0f} |")
  return 0 if worst <= args.tolerance else 1


if __name__ == "__main__":
  cli.run(main, prog="benchmark_export.py")

"""How far bfloat16 moves the logits from float32: ours, and HF's XCLIPModel under torch's autocast.

  python scripts/compare_dtypes.py --variant B/32,B/16
  python scripts/compare_dtypes.py --checkpoint runs/demo/supervised --peer none
  python scripts/compare_dtypes.py --checkpoint runs/demo/supervised --video runs/demo/data/supervised/val.txt \
      --root runs/demo/data --labels-file runs/demo/data/supervised/classes.csv

With `--variant`, the model is the one scripts/benchmark.py times: random weights (seed 0) saved as an
xclip_jax directory and, by the converter, as an HF directory, and random uint8 clips (`--batch`) against
`--classes` class texts. `--checkpoint` takes anything `xclip_jax.load_model` loads instead (ours only), on
random clips or, with `--video` and `--labels-file`, on video files classified as `python -m xclip_jax.predict`
does (the differences are then those of the log-probabilities).
Each framework computes the inference row (normalise, video tower, MIT, prompts, logits against class texts
encoded by the same model) in float32 and in bfloat16 (ours: `dtype="bfloat16"`, what `predict --dtype
bfloat16` runs; the peer: `torch.autocast`). Printed per framework, bfloat16 against its own float32: the
largest and the mean |difference| of the logits and of the softmax probabilities, and how many clips keep
their top-1 class; and ours against the peer in float32 (the parity check).
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import tempfile

import numpy as np

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from scripts import benchmark  # noqa: E402
from scripts.benchmarking import protocol  # noqa: E402
from xclip_jax import cli  # noqa: E402

DTYPES = ("float32", "bfloat16")


def ours_logits(model_path: pathlib.Path | str, inputs: dict[str, np.ndarray], dtype: str) -> np.ndarray:
  import xclip_jax
  from xclip_jax.inference import normalize_frames

  model = xclip_jax.load_model(model_path, dtype=dtype)
  text = model.encode_text(inputs["tokens"])
  return np.asarray(model(normalize_frames(inputs["videos"]), text_features=text), np.float64)


def ours_video_log_probabilities(args: argparse.Namespace, dtype: str) -> np.ndarray:
  import xclip_jax
  from xclip_jax.evaluation import video_files
  from xclip_jax.predict import read_labels

  model = xclip_jax.load_model(args.checkpoint, dtype=dtype)
  videos = video_files.find_videos(args.video, root=args.root)
  results = video_files.classify_videos(model, videos, read_labels(None, args.labels_file), progress=False)
  failed = [result for result in results if result.error is not None]
  if failed:
    raise SystemExit(f"compare_dtypes: error: {len(failed)} of {len(results)} videos could not be read, e.g. "
                     f"{failed[0].path}: {failed[0].error}")
  return np.log(np.maximum(np.stack([result.probabilities for result in results]), 1e-30))


def peer_logits(spec: dict, dtype: str) -> np.ndarray:
  from scripts.benchmarking.peer_hf import PeerRunner

  runner = PeerRunner({**spec, "dtype": dtype})
  return np.asarray(runner.check_value(runner.step()), np.float64).reshape(runner.videos.shape[0], -1)


def softmax(logits: np.ndarray) -> np.ndarray:
  shifted = np.exp(logits - logits.max(-1, keepdims=True))
  return shifted / shifted.sum(-1, keepdims=True)


def difference(name: str, reference: np.ndarray, other: np.ndarray, what: str = "logits") -> str:
  logits, probabilities = np.abs(other - reference), np.abs(softmax(other) - softmax(reference))
  same_top1 = int(np.sum(other.argmax(-1) == reference.argmax(-1)))
  return (f"  {name:<34} {what} max {logits.max():.2e} mean {logits.mean():.2e}; probabilities max "
          f"{probabilities.max():.2e} mean {probabilities.mean():.2e}; top-1 kept {same_top1}/{len(reference)}; "
          f"float32 {what} span {reference.min():.2f} to {reference.max():.2f}")


def compare(args: argparse.Namespace, variant: str | None) -> None:
  if args.video:
    ours = {dtype: ours_video_log_probabilities(args, dtype) for dtype in DTYPES}
    print(f"{args.checkpoint}: {len(ours['float32'])} videos from {' '.join(args.video)}, {protocol.host_cpu()}")
    print(difference("ours bfloat16 vs ours float32", ours["float32"], ours["bfloat16"], "log-probabilities"))
    return
  with tempfile.TemporaryDirectory(prefix="xclip-dtypes-") as tmp:
    workdir = pathlib.Path(tmp)
    if args.checkpoint:
      import xclip_jax

      config = xclip_jax.load_model(args.checkpoint).config
      model_path, label = args.checkpoint, args.checkpoint
    else:
      config = benchmark.variant_config(variant, frames=args.frames)
      model_path, label = workdir / "jax", f"{variant}-{args.frames}, random weights"
    benchmark.write_inputs(workdir, config, args.batch, args.classes)
    inputs = dict(np.load(workdir / protocol.INPUTS_FILE))
    spec = None
    if not args.checkpoint:
      bench = benchmark.parse_args(["--peer", args.peer, "--variant", variant, "--batch", str(args.batch),
                                    "--classes", str(args.classes)])
      spec = benchmark.worker_spec(bench, variant, args.frames, "infer", workdir)
      benchmark.export_weights(spec, workdir)
    ours = {dtype: ours_logits(model_path, inputs, dtype) for dtype in DTYPES}
    print(f"{label}: {args.batch} clips x {args.classes} classes, {protocol.host_cpu()}")
    print(difference("ours bfloat16 vs ours float32", ours["float32"], ours["bfloat16"]))
    if spec is not None and args.peer == "hf":
      peer = {dtype: peer_logits(spec, dtype) for dtype in DTYPES}
      print(difference("HF autocast bf16 vs HF float32", peer["float32"], peer["bfloat16"]))
      print(difference("ours bfloat16 vs HF float32", peer["float32"], ours["bfloat16"]))
      print(difference("ours float32 vs HF float32 (parity)", peer["float32"], ours["float32"]))


def main(argv: list[str] | None = None) -> int:
  parser = cli.parser("python scripts/compare_dtypes.py", __doc__)
  parser.add_argument("--variant", default="B/32", help="comma-separated variants (random weights)")
  parser.add_argument("--checkpoint", help="a model xclip_jax.load_model loads, instead of random weights")
  parser.add_argument("--video", nargs="+", help="--checkpoint: video files, folders or lists, as predict's --video")
  parser.add_argument("--labels-file", help="--video: class names, as predict's --labels-file")
  parser.add_argument("--root", help="--video: folder that list files' paths are relative to, as predict's --root")
  parser.add_argument("--frames", type=int, default=8, help="frames per clip (random weights)")
  parser.add_argument("--batch", type=int, default=8, help="random clips")
  parser.add_argument("--classes", type=int, default=16, help="class texts")
  parser.add_argument("--peer", default="hf", choices=("hf", "none"), help="hf: also HF's XCLIPModel (autocast)")
  args = parser.parse_args(argv)
  if args.video and not (args.checkpoint and args.labels_file):
    parser.error("--video needs --checkpoint and --labels-file")
  for variant in [None] if args.checkpoint else args.variant.split(","):
    compare(args, variant)
  return 0


if __name__ == "__main__":
  cli.run(main, prog="compare_dtypes.py")

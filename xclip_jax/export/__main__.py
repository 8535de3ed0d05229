r"""Export a model for serving outside JAX: ONNX files and StableHLO artifacts, with a manifest.

  python -m xclip_jax.export --checkpoint runs/demo/supervised --out exported/ \
      --labels-file classes.csv
  python -m xclip_jax.export --checkpoint microsoft/xclip-base-patch32 --out xclip_b32/ \
      --labels "archery,juggling balls" --format onnx

--checkpoint is anything `xclip_jax.load_model` loads. --out is a new folder (local or gs://); it holds
classifier.onnx (uint8 video in, logits and probabilities over the labels out; only with --labels or
--labels-file), video_encoder.onnx, text_encoder.onnx and logits.onnx (open labels), the same four as
jax.export artifacts in stablehlo/ with their weights, and manifest.json (inputs, outputs, labels, frame sampling,
mean and std). Bad input (a model or label file that does not exist, an unsupported format, an --out that
exists) is a one-line error with exit code 2; nothing is left half-written, Ctrl-C included (exit code 130).
docs/export.md has the details.
"""

from __future__ import annotations

import sys

from xclip_jax import cli, interrupts
from xclip_jax.export import exporter


def _parser() -> cli.Parser:
  parser = cli.parser("python -m xclip_jax.export", __doc__)
  parser.add_argument("--checkpoint", required=True, help="anything xclip_jax.load_model loads")
  parser.add_argument("--out", required=True, help="a new folder for the exported files (local or gs://)")
  parser.add_argument("--labels", help='comma-separated class names for classifier.onnx, e.g. "archery,juggling balls"')
  parser.add_argument("--labels-file", help="class names for classifier.onnx, one per line or an id,name CSV")
  parser.add_argument("--format", default=",".join(exporter.FORMATS),
                      help=f"comma-separated formats to write (default {','.join(exporter.FORMATS)})")
  parser.add_argument("--no-progress", action="store_true", help="no progress bar")
  return parser


def main(argv: list[str] | None = None) -> int:
  args = _parser().parse_args(argv)
  try:
    formats = exporter.parse_formats(args.format)
    exporter.check_output(args.out)
    labels = None
    if args.labels is not None or args.labels_file is not None:
      from xclip_jax.predict import read_labels

      labels = read_labels(args.labels, args.labels_file)
    document = exporter.export_model(args.checkpoint, args.out, labels=labels, formats=formats,
                                     progress=not args.no_progress)
  except (ValueError, OSError) as error:  # OSError: missing files, zoo download failures
    print(f"export: error: {error}", file=sys.stderr)
    return 2
  except KeyboardInterrupt:
    print(f"export: interrupted; nothing was written ({args.out} was not created)", file=sys.stderr)
    return interrupts.EXIT_STATUS
  written = sorted(document["sha256"])
  print(f"export: wrote {len(written) + 1} files to {args.out}: manifest.json, {', '.join(written)}", file=sys.stderr)
  return 0


if __name__ == "__main__":
  cli.run(main, prog="xclip_jax.export")

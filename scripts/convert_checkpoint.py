"""Converts X-CLIP / CLIP checkpoints between OpenAI, official X-CLIP, HuggingFace and xclip_jax.

  python scripts/convert_checkpoint.py --source openai --input ViT-B-16.pt --output ckpt/clip_b16_8f --frames 8
  python scripts/convert_checkpoint.py --source xclip --input k400_16_8.pth --output ckpt/xclip_b16_8f
  python scripts/convert_checkpoint.py --source hf --input xclip-base-patch32/ --output ckpt/hf_b32
  python scripts/convert_checkpoint.py --source jax --input ckpt/hf_b32 --to hf --output hf_export/

The default output (`--to jax`) is a directory that `xclip_jax.load_model` reads. --input and --output may
be gs:// URLs (read through a temporary local copy; written locally, then uploaded).
"""

from __future__ import annotations

import argparse
import sys

from xclip_jax import cli
from xclip_jax.conversion import SOURCES, TARGETS, ConversionError, export_checkpoint, import_checkpoint


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  parser = cli.parser(description=__doc__)
  parser.add_argument("--source", required=True, choices=SOURCES,
                      help="openai: CLIP .pt (TorchScript) or state dict; xclip: official .pth; "
                           "hf: XCLIPModel directory; jax: a directory written by this script.")
  parser.add_argument("--input", required=True, help="checkpoint file or directory")
  parser.add_argument("--output", required=True, help="output directory (or .pth file for --to official)")
  parser.add_argument("--to", default="jax", choices=TARGETS, help="output format (default: jax)")
  parser.add_argument("--frames", type=int, default=None,
                      help="frames per clip: chooses T for CLIP (default 8); must match X-CLIP/HF checkpoints")
  parser.add_argument("--seed", type=int, default=0, help="init seed of the X-CLIP modules (--source openai)")
  parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
  return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
  args = parse_args(argv)
  try:
    config, params, metadata = import_checkpoint(args.source, args.input, frames=args.frames, seed=args.seed)
    output = export_checkpoint(args.to, config, params, args.output, metadata=metadata, overwrite=args.overwrite)
  except (ConversionError, OSError, ImportError, ValueError) as error:  # OSError: missing files, storage
    print(f"convert_checkpoint: error: {error}", file=sys.stderr)
    return 1
  total = sum(v.size for v in params.values())
  print(f"Wrote {output} ({args.to}): {total / 1e6:.1f}M parameters; {config.describe()}")
  return 0


if __name__ == "__main__":
  sys.exit(main())

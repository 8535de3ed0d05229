"""`python -m xclip_jax.zoo list` (the names), `download NAME` (fetch + convert) and `dataset NAME` (a sample set).

    python -m xclip_jax.zoo list [--json]
    python -m xclip_jax.zoo download microsoft/xclip-base-patch32
    python -m xclip_jax.zoo download openai:ViT-B/16 --frames 32
    python -m xclip_jax.zoo download microsoft/xclip-base-patch32 --revision main
    python -m xclip_jax.zoo dataset ucf101-subset --out my_videos   # train/ val/ test/ of class folders
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import sys

from xclip_jax import cli
from xclip_jax.zoo import cache, registry
from xclip_jax.zoo.datasets import SAMPLE_DATASETS
from xclip_jax.zoo.errors import ZooError

COLUMNS = ("name", "arch", "frames", "res", "trained on", "published top-1 (%)")


def table_rows() -> list[tuple[str, ...]]:
  rows = []
  for info in registry.available_models():
    frames = str(info.frames) if info.frames else f"any ({registry.DEFAULT_CLIP_FRAMES})"
    rows.append((info.name, info.architecture or "?", frames, str(info.resolution or "?"), info.trained_on,
                 info.accuracy_text()))
  return rows


def format_table(rows: list[tuple[str, ...]]) -> str:
  widths = [max(len(row[i]) for row in [COLUMNS, *rows]) for i in range(len(COLUMNS))]
  lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
           for row in [COLUMNS, tuple("-" * w for w in widths), *rows]]
  return "\n".join(lines)


def _list(args: argparse.Namespace) -> int:
  if args.json:
    print(json.dumps([{**dataclasses.asdict(info), "url": info.url} for info in registry.available_models()],
                     indent=2))
    return 0
  print(format_table(table_rows()))
  print(f"\nKinetics top-1 with 4x3 views; few- and zero-shot single view (paper / official README).\n"
        f"Any other HF hub id of an XCLIP model loads too (revision= / --revision for a branch, tag or commit).\n"
        f"openai: names turn CLIP into X-CLIP with --frames frames (default {registry.DEFAULT_CLIP_FRAMES}).\n"
        f"Cache: {cache.cache_dir()} (${cache.CACHE_VARIABLE}); HF repos also use huggingface_hub's cache.")
  return 0


def _download(args: argparse.Namespace) -> int:
  from xclip_jax import pretrained
  from xclip_jax.zoo.fetch import fetch

  path = fetch(args.name, frames=args.frames, revision=args.revision, progress=not args.quiet)
  config, metadata = pretrained.read_config(path)
  print(f"{args.name}: {path}")
  print(f"  {config.describe()}")
  if metadata.get("hf_commit"):
    print(f"  HF commit {metadata['hf_commit']}")
  print(f"  load it with xclip_jax.load_model({args.name!r}{f', frames={args.frames}' if args.frames else ''}) "
        f"or xclip_jax.load_model({str(path)!r})")
  return 0


def _dataset(args: argparse.Namespace) -> int:
  import shutil

  from xclip_jax import atomic_io
  from xclip_jax.data import folders
  from xclip_jax.zoo.datasets import sample_dataset

  root = sample_dataset(args.name, revision=args.revision, progress=not args.quiet)
  where = root
  if args.out:
    try:
      with atomic_io.atomic_directory(args.out) as staging:
        shutil.copytree(root, staging, dirs_exist_ok=True)
    except FileExistsError as error:
      raise ZooError(f"--out: {error}") from None
    where = pathlib.Path(args.out)
  print(f"{args.name}: {where}" + (f" (a copy of {root})" if args.out else ""))
  layout = folders.read_layout(where)
  for split, classes in layout.videos.items():
    print(f"  {split}/: {sum(len(v) for v in classes.values())} videos in {len(classes)} class folders")
  print(f"  evaluate a model on it: python -m xclip_jax.main --config configs/finetune.py --workdir "
        f"runs/{args.name} --config.data.root={where} --config.mode=evaluate")
  return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
  parser = cli.parser("python -m xclip_jax.zoo", __doc__)
  commands = parser.add_subparsers(dest="command", required=True)
  listing = commands.add_parser("list", help="the named models")
  listing.add_argument("--json", action="store_true", help="machine-readable output")
  listing.set_defaults(run=_list)
  download = commands.add_parser("download", help="download and convert a model into the cache")
  download.add_argument("name", help="a name from `list`, an HF hub id of an XCLIP model, or openai:<model>")
  download.add_argument("--frames", type=int, default=None, help="frames per clip (openai: default 8)")
  download.add_argument("--revision", default=None, help="HF hub branch, tag or commit (default main)")
  download.add_argument("--quiet", action="store_true",
                        help="no progress bars or messages of its own (huggingface_hub still shows its bars)")
  download.set_defaults(run=_download)
  dataset = commands.add_parser("dataset", help="download a sample data set of videos (class folders per split)")
  dataset.add_argument("name", choices=sorted(SAMPLE_DATASETS), help="which sample data set")
  dataset.add_argument("--out", default=None, help="copy it to this folder (new or empty); default: print where "
                                                   "it is in the cache")
  dataset.add_argument("--revision", default=None, help="HF hub branch, tag or commit (default main)")
  dataset.add_argument("--quiet", action="store_true", help="no progress bars of its own")
  dataset.set_defaults(run=_dataset)
  return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
  args = parse_args(argv)
  try:
    return args.run(args)
  except (ZooError, ValueError) as error:  # ConversionError is a ValueError
    print(f"xclip_jax.zoo: error: {error}", file=sys.stderr)
    return 1
  except KeyboardInterrupt:
    print("xclip_jax.zoo: interrupted; nothing partial was kept in the cache.", file=sys.stderr)
    return 130

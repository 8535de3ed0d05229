"""Prints GFLOPs per view (fvcore convention, as in the paper) for every named variant, next to the paper's
numbers and XLA's count of the compiled forward (halved: XLA counts 2 per multiply-add, plus elementwise ops).

Usage: python scripts/flops_table.py [--no-xla] [--lowered] [--breakdown B/16] [--params]

Compiles on CPU from abstract parameters (nothing is allocated or run): ~5-10 s per row on 2 cores.
"""

from __future__ import annotations

import os
import sys
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")  # only compiles; the count is what is wanted, not a device
from xclip_jax import cli, perf
from xclip_jax.models.config import VARIANTS, variant_config

ROWS = [("B/32", 8), ("B/32", 16), ("B/16", 8), ("B/16", 16), ("B/16", 32), ("L/14", 8), ("L/14", 16),
        ("L/14@336", 8), ("L/14@336", 16), ("tiny", 8)]


def _float(digits: int):
  return lambda value: "-" if value is None else f"{value:.{digits}f}"


def _percent(value) -> str:
  return "-" if value is None else f"{value:+.2%}"


def flops_rows(with_xla: bool, compile: bool) -> list[dict[str, object]]:
  rows = []
  for variant, frames in ROWS:
    assert variant in VARIANTS
    config = variant_config(variant, frames=frames)
    ours = perf.flops_per_view(config) / 1e9
    paper = perf.PAPER_GFLOPS.get((variant, frames))
    row = {"variant": variant, "frames": frames, "ours": ours, "paper": paper,
           "error": None if paper is None else ours / paper - 1, "xla": None, "ratio": None, "seconds": None}
    if with_xla:
      start = time.perf_counter()
      xla = perf.xla_flops(config, compile=compile) / 2e9
      row.update(xla=xla, ratio=xla / ours, seconds=time.perf_counter() - start)
    rows.append(row)
    print(f"  {variant}-{frames} done", file=sys.stderr, flush=True)
  return rows


def main() -> None:
  parser = cli.parser(description=__doc__)
  parser.add_argument("--no-xla", action="store_true", help="skip the XLA cross-check (instant)")
  parser.add_argument("--lowered", action="store_true", help="analyse the lowered HLO instead of compiling")
  parser.add_argument("--breakdown", action="append", default=[], metavar="VARIANT",
                      help="also print the per-component breakdown of VARIANT (8 frames); repeatable")
  parser.add_argument("--params", action="store_true", help="also print parameter counts per group")
  args = parser.parse_args()

  rows = flops_rows(with_xla=not args.no_xla, compile=not args.lowered)
  columns = [("variant", "variant", str), ("frames", "T", str), ("ours", "GFLOPs (ours)", _float(2)),
             ("paper", "paper", _float(0)), ("error", "rel. error", _percent),
             ("xla", "XLA GFLOP/2", _float(2)), ("ratio", "XLA/2 / ours", _float(4)),
             ("seconds", "XLA s", _float(1))]
  print("GFLOPs per view = multiply-adds of one video + one 77-token text (fvcore convention, paper Tab. 1)")
  print(perf.format_table(rows, columns))

  for variant in args.breakdown:
    print(f"\nBreakdown X-CLIP-{variant}, 8 frames:")
    perf.print_flops_breakdown(variant_config(variant))

  if args.params:
    param_rows = []
    for variant, frames in [(v, 8) for v in VARIANTS] + [("L/14@336", 16)]:
      param_rows.append({"variant": variant, "frames": frames,
                         **perf.count_parameters(variant_config(variant, frames=frames))})
    groups = [g for g in perf.PARAM_GROUPS if g != "logit_scale"] + ["clip", "total"]
    param_columns = [("variant", "variant", str), ("frames", "T", str)]
    param_columns += [(g, g, lambda n: f"{n / 1e6:.3f}M") for g in groups] + [("total", "total (exact)", str)]
    print("\nParameters:")
    print(perf.format_table(param_rows, param_columns))


if __name__ == "__main__":
  main()

"""The fastest an X-CLIP step can run on this CPU: each library's matrix-product rate, and the floor it sets.

  python scripts/cpu_ceiling.py --variant B/32 --batch 4
  python scripts/cpu_ceiling.py --variant B/32,B/16 --batch 4 --benchmark-json b32.json b16.json

About 90% of a CPU step is matrix products (docs/performance.md#where-the-time-goes). So no implementation's
step can take less than its FLOPs over the best product rate the CPU gives. This script times, in one process,
the products of one transformer block of the video tower at the benchmark's shapes (rows = clips x frames x
tokens): forward (q, k, v, out and the two MLP products), and for training also the input gradients (the same
products against transposed weights) and the weight gradients (transposed activations). It times them in XLA
(`jax.jit`, float32, and bf16 x bf16 accumulated in float32 as `xclip_jax.models.layers.matmul` computes),
torch (float32 and bf16) and numpy's BLAS (float32), each with every core, and prints each library's rate in
GFLOP/s, weighted as the block weights them (median of `--repeats`); `--per-product` adds each product's
own rate, which shows which form (nn, nt, tn) a library runs slowly.

Then, per variant and row, the floor: the step's FLOPs (as scripts/benchmark.py counts them) at the best
float32 rate. With `--benchmark-json` (files written by `scripts/benchmark.py --json`) it also prints each
measured step beside its floor, and the peer's measured time over the floor: the largest speed-up over the
peer that any float32 implementation of the same FLOPs could reach on this CPU.
"""

from __future__ import annotations

import json
import os
import pathlib
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from scripts import benchmark  # noqa: E402
from scripts.benchmarking import protocol  # noqa: E402
from xclip_jax import cli, storage  # noqa: E402
from xclip_jax.models.config import variant_config  # noqa: E402

# (name, count per block, m, k, n, form): an (m, k) x (k, n) product. Form "nn": both operands stored as
# used (the forward products, weights stored (in, out)); "nt": the right operand stored (n, k), i.e. the
# weight transposed (the input gradients); "tn": the left operand stored (k, m), i.e. the activations
# transposed (the weight gradients), as autodiff hands them to the library.
FORWARD = [("q/k/v/out", 4, "R", "W", "W", "nn"), ("mlp up", 1, "R", "W", "4W", "nn"),
           ("mlp down", 1, "R", "4W", "W", "nn")]
INPUT_GRADIENTS = [("q/k/v/out dx", 4, "R", "W", "W", "nt"), ("mlp up dx", 1, "R", "4W", "W", "nt"),
                   ("mlp down dx", 1, "R", "W", "4W", "nt")]
WEIGHT_GRADIENTS = [("q/k/v/out dw", 4, "W", "R", "W", "tn"), ("mlp up dw", 1, "W", "R", "4W", "tn"),
                    ("mlp down dw", 1, "4W", "R", "W", "tn")]
ROW_PRODUCTS = {"infer": FORWARD, "train": FORWARD + INPUT_GRADIENTS + WEIGHT_GRADIENTS}


def block_shapes(config, batch: int) -> dict[str, int]:
  return {"R": batch * config.num_frames * (config.grid_size ** 2 + 1), "W": config.vision_width,
          "4W": config.vision_mlp_dim}


def timed(function: Callable[[], object], repeats: int) -> float:
  function()  # compiles / warms the caches
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    function()
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def product_timers(library: str, dtype: str) -> Callable[[np.ndarray, np.ndarray, str], Callable[[], object]]:
  """A function (left, right, form) -> a call that computes the product and waits for it."""
  if library == "xla":
    import jax
    import jax.numpy as jnp

    half = dtype == "bfloat16"
    products = {form: jax.jit(lambda a, b, form=form: jnp.matmul(*_operands(form, a, b),
                                                                  preferred_element_type=jnp.float32))
                for form in ("nn", "nt", "tn")}

    def xla(left, right, form):
      a, b = (jnp.asarray(x, jnp.bfloat16 if half else jnp.float32) for x in (left, right))
      return lambda: products[form](a, b).block_until_ready()
    return xla
  if library == "torch":
    import torch

    torch.set_num_threads(os.cpu_count())

    def torch_product(left, right, form):
      a, b = (torch.from_numpy(x).to(torch.bfloat16 if dtype == "bfloat16" else torch.float32) for x in (left, right))
      return lambda: torch.matmul(*_operands(form, a, b))
    return torch_product
  return lambda left, right, form: (lambda: np.matmul(*_operands(form, left, right)))


def _operands(form: str, a, b) -> tuple:
  """The (m, k) and (k, n) operands of a product from the arrays as stored (transposed views, no copies)."""
  return (a.T if form == "tn" else a), (b.T if form == "nt" else b)


def block_rate(library: str, dtype: str, shapes: dict[str, int], products: list, repeats: int,
               each: list | None = None) -> float:
  """GFLOP/s over one block's products, each counted as often as the block computes it. `each`, when
  given, receives (product name, form, GFLOP/s) per product."""
  make = product_timers(library, dtype)
  rng = np.random.default_rng(0)
  flops = seconds = 0.0
  for name, count, m, k, n, form in products:
    m, k, n = shapes[m], shapes[k], shapes[n]
    left = rng.standard_normal((k, m) if form == "tn" else (m, k), np.float32)
    right = rng.standard_normal((n, k) if form == "nt" else (k, n), np.float32)
    product_seconds = timed(make(left, right, form), repeats)
    seconds += count * product_seconds
    flops += count * 2.0 * m * k * n
    if each is not None:
      each.append((name, form, 2.0 * m * k * n / product_seconds / 1e9))
  return flops / seconds / 1e9


LIBRARIES = [("xla", "float32"), ("torch", "float32"), ("numpy", "float32"), ("xla", "bfloat16"),
             ("torch", "bfloat16")]


def benchmark_results(parser, path: str) -> list[dict]:
  """The `results` of a `scripts/benchmark.py --json` file (local or gs://); a file that is not one is a
  one-line error naming it."""
  try:
    return json.loads(storage.path(path).read_text())["results"]
  except (OSError, ValueError, KeyError, TypeError) as error:
    parser.error(f"--benchmark-json {path}: not a scripts/benchmark.py --json file ({type(error).__name__}: {error})")


def main(argv: list[str] | None = None) -> int:
  parser = cli.parser("python scripts/cpu_ceiling.py", __doc__)
  parser.add_argument("--variant", default="B/32", help="comma-separated variants")
  parser.add_argument("--frames", type=int, default=8)
  parser.add_argument("--batch", type=int, default=4)
  parser.add_argument("--classes", type=int, default=16)
  parser.add_argument("--repeats", type=int, default=7)
  parser.add_argument("--libraries", default=",".join(f"{lib}:{dtype}" for lib, dtype in LIBRARIES),
                      help="library:dtype pairs (xla, torch, numpy; float32 or bfloat16)")
  parser.add_argument("--benchmark-json", nargs="*", default=[], help="files from scripts/benchmark.py --json")
  parser.add_argument("--per-product", action="store_true", help="also print each product's rate (training row)")
  args = parser.parse_args(argv)
  libraries = [tuple(item.split(":")) for item in args.libraries.split(",")]
  if unknown := [":".join(pair) for pair in libraries if pair not in LIBRARIES]:  # numpy has no bf16 product
    parser.error(f"--libraries: unknown {unknown}; choose from {', '.join(f'{lib}:{dt}' for lib, dt in LIBRARIES)}")
  measured = [r for path in args.benchmark_json for r in benchmark_results(parser, path)]
  configs = {}
  for variant in args.variant.split(","):
    try:
      configs[variant] = variant_config(variant, frames=args.frames)
    except ValueError as error:
      parser.error(f"--variant {variant}: {error}")
  print(f"host: {os.cpu_count()} x {protocol.host_cpu()}; load average (1 min) {os.getloadavg()[0]:.2f}")
  for variant, config in configs.items():
    shapes = block_shapes(config, args.batch)
    print(f"\n{variant}-{args.frames}, batch {args.batch}: block products with R={shapes['R']}, W={shapes['W']}, "
          f"4W={shapes['4W']}")
    print("| row | library | dtype | GFLOP/s | floor ms/step (step FLOPs at this rate) |")
    print("|---|---|---|---|---|")
    best_float32 = {}
    flops = {row: benchmark.model_flops_per_step(config, row, args.batch, args.classes, train_text=False)
             for row in ROW_PRODUCTS}
    for row, products in ROW_PRODUCTS.items():
      for library, dtype in libraries:
        each = [] if args.per_product and row == "train" else None
        rate = block_rate(library, dtype, shapes, products, args.repeats, each)
        for name, form, product_rate in each or []:
          print(f"|   {name} ({form}) | {library} | {dtype} | {product_rate:.1f} | |")
        if dtype == "float32":
          best_float32[row] = max(best_float32.get(row, 0.0), rate)
        print(f"| {row} | {library} | {dtype} | {rate:.1f} | {flops[row] / rate / 1e6:.4g} |", flush=True)
    for r in measured:
      if r["model"] != f"{variant}-{args.frames}" or r["batch"] != args.batch:
        continue
      floor_ms = flops[r["row"]] / best_float32[r["row"]] / 1e6
      print(f"measured {r['row']} {r['framework']} {r['dtype']}: {r['ms_per_step']:.0f} ms/step, "
            f"{r['ms_per_step'] / floor_ms:.2f}x the float32 floor ({floor_ms:.4g} ms)"
            + ("" if r["framework"] == "ours" or r["dtype"] != "float32" else
               f"; the most a float32 implementation could gain over it here: {r['ms_per_step'] / floor_ms:.2f}x"))
  return 0


if __name__ == "__main__":
  cli.run(main, prog="cpu_ceiling.py")

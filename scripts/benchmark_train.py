"""Training-step throughput and MFU of xclip_jax alone: `scripts/benchmark.py --peer none --rows train`.

  python scripts/benchmark_train.py --variant B/16 --frames 8 --batch 64
  python scripts/benchmark_train.py --variant L/14 --batch 256 --accum 4 --mesh data=1,fsdp=-1 --remat

Every option of scripts/benchmark.py applies (see its --help); this name is kept for existing commands.
"""

from __future__ import annotations

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from scripts import benchmark

if __name__ == "__main__":
  sys.exit(benchmark.main(["--peer", "none", "--rows", "train", *sys.argv[1:]]))

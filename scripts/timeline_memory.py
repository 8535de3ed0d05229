"""Peak memory of `predict --timeline` against video length: it should not grow with the video.

    python scripts/timeline_memory.py --checkpoint runs/demo/supervised --minutes 10,30,120

For each length it writes one synthetic video of the demo's classes (--size px, 8 fps, 2 s segments of random
classes), encoding frame by frame so the script itself never holds the video, then runs
`python -m xclip_jax.predict --timeline` on it in a child process and prints a Markdown table: video length,
frames, windows, the child's peak resident memory (getrusage's ru_maxrss) and wall time. Flat peak memory over
lengths is the claim of docs/search.md ("Memory stays bounded"); a column growing by the decoded frames
(printed as "all frames, RGB") would refute it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

from xclip_jax import cli

_FPS = 8
_SEGMENT_FRAMES = 16


def write_long_video(path: str, minutes: float, seed: int, size: int) -> int:
  """Streams `minutes` of 2 s synthetic clips of random demo classes into an H.264 file; returns its frames."""
  import numpy as np

  from xclip_jax.data import synthetic

  rng = np.random.default_rng(seed)
  shapes, motions = len(synthetic.SHAPES), len(synthetic.MOTIONS)
  total = int(round(minutes * 60 * _FPS))

  def frames():
    written = 0
    while written < total:
      clip = synthetic.render(int(rng.integers(shapes)), int(rng.integers(motions)), rng, size=size,
                              frames=_SEGMENT_FRAMES, style="plain")[: total - written]
      yield from clip
      written += len(clip)

  return synthetic.write_mp4(path, frames(), fps=_FPS)


def measure(checkpoint: str, video: str, labels: str, window: float, stride: float, out: str) -> tuple[float, float]:
  """Runs predict --timeline in a child; returns (peak RSS in MiB, wall seconds)."""
  command = [sys.executable, "-m", "xclip_jax.predict", "--checkpoint", checkpoint, "--video", video,
             "--labels", labels, "--timeline", "--window", str(window), "--stride", str(stride), "--out", out,
             "--no-progress"]
  start = time.perf_counter()
  child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  _, status, usage = os.wait4(child.pid, 0)
  wall = time.perf_counter() - start
  stderr = child.stderr.read()
  child.stderr.close()
  if os.waitstatus_to_exitcode(status) != 0:
    raise SystemExit(f"predict failed on {video}:\n{stderr[-2000:]}")
  return usage.ru_maxrss / 1024, wall  # Linux reports ru_maxrss in KiB.


def main(argv: list[str] | None = None) -> int:
  parser = cli.parser("python scripts/timeline_memory.py", __doc__)
  parser.add_argument("--checkpoint", required=True, help="anything xclip_jax.load_model loads (a demo model)")
  parser.add_argument("--minutes", default="10,30,120", help="comma-separated video lengths (default 10,30,120)")
  parser.add_argument("--window", type=float, default=2.0, help="timeline window in seconds (default 2)")
  parser.add_argument("--stride", type=float, default=1.0, help="timeline stride in seconds (default 1)")
  parser.add_argument("--size", type=int, default=32, help="frame width and height in pixels (default 32)")
  parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic segments (default 0)")
  args = parser.parse_args(argv)

  from xclip_jax.data import synthetic

  labels = ",".join(synthetic.tasks()["supervised"])
  print("| video | frames | all frames, RGB (MiB) | windows | peak RSS (MiB) | wall (s) |")
  print("|---|---|---|---|---|---|")
  with tempfile.TemporaryDirectory() as scratch:
    for minutes in (float(m) for m in args.minutes.split(",")):
      video = os.path.join(scratch, f"long_{minutes:g}min.mp4")
      frames = write_long_video(video, minutes, args.seed, args.size)
      out = os.path.join(scratch, f"timeline_{minutes:g}.csv")
      peak, wall = measure(args.checkpoint, video, labels, args.window, args.stride, out)
      with open(out) as f:
        windows = sum(1 for _ in f) - 1
      os.remove(video)
      raw = frames * args.size * args.size * 3 / 2**20
      print(f"| {minutes:g} min | {frames} | {raw:.0f} | {windows} | {peak:.0f} | {wall:.0f} |", flush=True)
  return 0


if __name__ == "__main__":
  cli.run(main, prog="timeline_memory.py")

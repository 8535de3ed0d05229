"""Synthetic videos of moving shapes whose class names compose words: the embedded demo dataset.

    python -m xclip_jax.data.synthetic --out runs/demo/data [--seed 0] [--size 64] [--frames 16] [--style plain]
        [--overwrite]

A class is `<shape> <motion>`, e.g. "triangle moving left", "square growing": 4 shapes x 6 motions = 24
compositions. Each video has a random background colour and texture, a random shape colour, size, start
position, orientation and speed, so no single frame tells the class: left from right, up from down, growing
from shrinking need the frame order, and the shape word still matters (each motion is shared by several
shapes). The compositions are split three ways:

* supervised: 16 classes, train + val;
* zero_shot: 4 held-out compositions (val only) whose words all occur in supervised classes;
* few_shot: 4 other held-out compositions, a train pool (enough per class for K-shot subsets) + val.

Layout written under --out (written to a temporary folder first, then renamed into place):

    manifest.json                       seed, generation parameters, classes, counts, timing
    videos/<task>/<split>/<class_slug>_<k>.mp4   H.264 (libx264, yuv420p), real files
    supervised/{classes.csv,train.txt,val.txt}   official formats, paths relative to --out
    zero_shot/{classes.csv,val.txt}
    few_shot/{classes.csv,train.txt,val.txt}

Content is a deterministic function of --seed and the flags (each video has its own seeded generator).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable

import numpy as np

from xclip_jax import atomic_io, cli
from xclip_jax.data import labels

SHAPES = ("circle", "square", "triangle", "cross")
MOTIONS = ("moving left", "moving right", "moving up", "moving down", "growing", "shrinking")
# Held-out compositions (shape index, motion index). Every shape and every motion of these also occurs in
# at least two supervised classes, so their words are all known from training.
ZERO_SHOT = ((0, 0), (1, 1), (2, 2), (3, 3))  # circle moving left, square moving right, triangle moving up, ...
FEW_SHOT = ((0, 4), (1, 5), (2, 0), (3, 1))  # circle growing, square shrinking, triangle moving left, cross right


def class_name(shape: int, motion: int) -> str:
  return f"{SHAPES[shape]} {MOTIONS[motion]}"


def tasks() -> dict[str, list[str]]:
  """Class names of the three tasks, in id order."""
  held = set(ZERO_SHOT) | set(FEW_SHOT)
  supervised = [class_name(s, m) for s in range(len(SHAPES)) for m in range(len(MOTIONS)) if (s, m) not in held]
  return {"supervised": supervised, "zero_shot": [class_name(*c) for c in ZERO_SHOT],
          "few_shot": [class_name(*c) for c in FEW_SHOT]}


def _shape_mask(shape: str, xx: np.ndarray, yy: np.ndarray, cx: float, cy: float, r: float, angle: float) -> np.ndarray:
  """Soft (anti-aliased) coverage in [0, 1] of a shape of radius r centred at (cx, cy)."""
  dx, dy = xx - cx, yy - cy
  c, s = np.cos(angle), np.sin(angle)
  u, v = c * dx + s * dy, -s * dx + c * dy  # Rotated coordinates.
  if shape == "circle":
    dist = np.sqrt(dx * dx + dy * dy) - r
  elif shape == "square":
    dist = np.maximum(np.abs(u), np.abs(v)) - r * 0.85
  elif shape == "triangle":  # Equilateral, circumradius r: signed distance to the three edges.
    dist = np.full_like(u, -np.inf)
    for k in range(3):
      a = np.pi / 2 + 2 * np.pi * k / 3  # Outward normal of edge k (in the rotated frame).
      dist = np.maximum(dist, u * np.cos(a) + v * np.sin(a) - r * 0.6)
  elif shape == "cross":
    arm = r * 0.35
    bar1 = np.maximum(np.abs(u) - r, np.abs(v) - arm)
    bar2 = np.maximum(np.abs(v) - r, np.abs(u) - arm)
    dist = np.minimum(bar1, bar2)
  else:
    raise ValueError(shape)
  return np.clip(0.5 - dist, 0.0, 1.0)


def _luma(rgb: np.ndarray) -> float:
  return float(rgb @ np.array([0.299, 0.587, 0.114]))


STYLES = ("textured", "plain")


def render(shape: int, motion: int, rng: np.random.Generator, size: int, frames: int,
           style: str = "textured") -> np.ndarray:
  """(frames, size, size, 3) uint8 frames of one video of class (shape, motion).

  "textured": random background colour + low-frequency texture + noise, random orientation, shapes about
  a tenth of the frame. "plain": a dark flat background, a bright shape 1.6x larger and upright: the same
  classes with fewer nuisances, learnable from scratch in minutes on a CPU (the demo's setting).
  """
  if style not in STYLES:
    raise ValueError(f"style must be one of {STYLES}, got {style!r}")
  yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
  if style == "plain":
    bg, fg, scale = rng.uniform(0, 80, size=3), rng.uniform(150, 255, size=3), 1.6
    background = np.broadcast_to(bg[None, None], (size, size, 3)).astype(np.float32)
  else:
    bg, fg, scale = rng.uniform(0, 255, size=3), rng.uniform(0, 255, size=3), 1.0
    while abs(_luma(fg) - _luma(bg)) < 70:  # Keep the shape visible.
      fg = rng.uniform(0, 255, size=3)
    # Static background: colour + smooth random texture (a few low-frequency waves) + mild noise.
    texture = np.zeros((size, size), np.float32)
    for _ in range(3):
      fx, fy = rng.uniform(0.5, 3, size=2) * 2 * np.pi / size
      texture += np.sin(xx * fx + yy * fy + rng.uniform(0, 2 * np.pi))
    background = bg[None, None] + 12 * texture[..., None] + rng.normal(0, 4, size=(size, size, 1))
  angle = rng.uniform(0, 2 * np.pi) if style == "textured" else 0.0
  name = MOTIONS[motion]
  t = np.arange(frames, dtype=np.float32) / max(frames - 1, 1)
  if name in ("growing", "shrinking"):
    r_small = rng.uniform(0.07, 0.12) * size * scale
    r_big = r_small * (rng.uniform(2.0, 2.8) if style == "textured" else 2.2)
    radius = r_small + (r_big - r_small) * (t if name == "growing" else 1 - t)
    cx = np.full_like(t, rng.uniform(0.35, 0.65) * size)
    cy = np.full_like(t, rng.uniform(0.35, 0.65) * size)
  else:
    r = rng.uniform(0.1, 0.16 if style == "textured" else 0.14) * size * scale
    radius = np.full_like(t, r)
    travel = rng.uniform(0.35, 0.55) * size
    lo, hi = r, size - r - travel  # Start range so that the whole path stays in the frame.
    start = rng.uniform(lo, max(hi, lo + 1e-3))
    other = np.full_like(t, rng.uniform(r, size - r))
    forward = start + travel * t
    if name == "moving right":
      cx, cy = forward, other
    elif name == "moving left":
      cx, cy = size - forward, other
    elif name == "moving down":
      cx, cy = other, forward
    else:  # moving up
      cx, cy = other, size - forward
  out = np.empty((frames, size, size, 3), np.uint8)
  for i in range(frames):
    m = _shape_mask(SHAPES[shape], xx, yy, float(cx[i]), float(cy[i]), float(radius[i]), angle)[..., None]
    out[i] = np.clip(background * (1 - m) + fg[None, None] * m, 0, 255).astype(np.uint8)
  return out


# x264's instruction sets by numpy's names for them (x264 name: numpy name), AVX-512 left out on purpose.
_X264_CPU_FLAGS = (("MMX2", "SSE"), ("SSE", "SSE"), ("SSE2", "SSE2"), ("SSE3", "SSE3"), ("SSSE3", "SSSE3"),
                   ("SSE4.1", "SSE41"), ("SSE4.2", "SSE42"), ("LZCNT", "LZCNT"), ("AVX", "AVX"), ("FMA3", "FMA3"),
                   ("BMI1", "BMI"), ("BMI2", "BMI2"), ("AVX2", "AVX2"))


def x264_cpu_flags() -> str | None:
  """The `asm=` value for x264 that leaves its AVX-512 code out; None off x86-64 (nothing to leave out).

  Why: the x264 bundled with PyAV 18.1 (core 165) reads memory it never wrote on its AVX-512 path, so on
  CPUs with AVX-512 the same frames encoded twice, by one process or two, gave different files (found with
  glibc's MALLOC_PERTURB_: each fill value gave other bytes), and the demo's data, and with it every demo run,
  differed from run to run (issue 21). Up to AVX2 the output is bit-identical whichever of those sets the CPU
  has (checked: SSE4.2 and AVX2 give the same bytes) and independent of memory contents. x264 does not
  intersect the list with the CPU, so only what this CPU has is named.
  """
  import platform

  if platform.machine().lower() not in ("x86_64", "amd64"):
    return None
  try:
    from numpy._core._multiarray_umath import __cpu_features__ as features
  except ImportError:  # numpy moved it: x86-64's baseline, which every such CPU has
    features = {"SSE": True, "SSE2": True}
  return ",".join(x264 for x264, name in _X264_CPU_FLAGS if features.get(name))


def x264_options(crf: int = 18, gop: int | None = None) -> dict[str, str]:
  """libx264 options that make the file a function of the frames only (see `x264_cpu_flags`)."""
  params = []
  if gop:  # Fixed keyframe interval (no extra keyframes at scene cuts).
    params.append(f"keyint={gop}:min-keyint={gop}:scenecut=0")
  flags = x264_cpu_flags()
  if flags:
    params.append(f"asm={flags}")
  # One encoder thread: frame threads would make the output depend on timing.
  options = {"crf": str(crf), "preset": "veryfast", "threads": "1"}
  return {**options, "x264-params": ":".join(params)} if params else options


def write_mp4(path: str, frames: Iterable[np.ndarray], fps: int = 8, crf: int = 18, gop: int | None = None) -> int:
  """Encodes uint8 RGB frames (an array, or any iterable of (H, W, 3) frames, so a long video need not be held)
  as an H.264 mp4 with PyAV (even sizes required by yuv420p); the same frames give the same bytes on every run.
  Returns the number of frames written."""
  import itertools

  import av

  frames = iter(frames)
  first = next(frames, None)
  if first is None:
    raise ValueError(f"no frames to write to {path}")
  h, w = first.shape[:2]
  if h % 2 or w % 2:
    raise ValueError(f"H.264 with yuv420p needs even frame sizes, got {w}x{h}")
  written = 0
  with av.open(path, mode="w") as container:
    stream = container.add_stream("libx264", rate=fps)
    stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
    stream.options = x264_options(crf, gop)
    for f in itertools.chain([first], frames):
      for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
        container.mux(packet)
      written += 1
    for packet in stream.encode():
      container.mux(packet)
  return written


def _slug(name: str) -> str:
  return name.replace(" ", "_")


def generate(out: str, *, seed: int = 0, size: int = 64, frames: int = 16, fps: int = 8, train_per_class: int = 24,
             val_per_class: int = 8, zero_shot_per_class: int = 12, few_shot_train_per_class: int = 16,
             style: str = "textured", overwrite: bool = False, quiet: bool = False) -> dict:
  """Writes the dataset to `out` (atomically) and returns the manifest."""
  if size % 2 or size < 16:
    raise ValueError(f"--size must be even and >= 16 (H.264 yuv420p), got {size}")
  if frames < 2:
    raise ValueError(f"--frames must be >= 2, got {frames}")
  if style not in STYLES:
    raise ValueError(f"--style must be one of {STYLES}, got {style!r}")
  out = os.path.abspath(out)
  started = time.time()
  with atomic_io.atomic_directory(out, overwrite=overwrite) as staging:
    tmp = str(staging)
    names = tasks()
    plan = {
        "supervised": {"train": train_per_class, "val": val_per_class},
        "zero_shot": {"val": zero_shot_per_class},
        "few_shot": {"train": few_shot_train_per_class, "val": val_per_class},
    }
    composition = {class_name(s, m): (s, m) for s in range(len(SHAPES)) for m in range(len(MOTIONS))}
    counts = {}
    video_number = 0
    for task, splits in plan.items():
      os.makedirs(os.path.join(tmp, task))
      labels.write_class_names(names[task], os.path.join(tmp, task, "classes.csv"))
      for split, per_class in splits.items():
        folder = os.path.join("videos", task, split)
        os.makedirs(os.path.join(tmp, folder))
        lines = []
        for label, cname in enumerate(names[task]):
          for k in range(per_class):
            rng = np.random.default_rng([seed, video_number])
            video_number += 1
            rel = os.path.join(folder, f"{_slug(cname)}_{k:03d}.mp4")
            write_mp4(os.path.join(tmp, rel), render(*composition[cname], rng, size, frames, style), fps=fps)
            lines.append((rel, label))
        labels.write_label_list(lines, os.path.join(tmp, task, f"{split}.txt"))
        counts[f"{task}/{split}"] = len(lines)
    import av

    manifest = {
        "generator": "xclip_jax.data.synthetic", "seed": seed, "style": style, "size": size, "frames": frames,
        "fps": fps,
        "codec": "libx264 yuv420p crf 18", "per_class": plan, "classes": names, "counts": counts,
        "shapes": list(SHAPES), "motions": list(MOTIONS), "versions": {"av": av.__version__, "numpy": np.__version__},
        "seconds": round(time.time() - started, 2),
    }
    with open(os.path.join(tmp, "manifest.json"), "w", encoding="utf-8") as f:
      json.dump(manifest, f, indent=2)
  if not quiet:
    print(f"wrote {sum(counts.values())} videos ({', '.join(f'{k} {v}' for k, v in counts.items())}) to {out} "
          f"in {manifest['seconds']:.1f} s")
  return manifest


def main(argv: list[str] | None = None) -> int:
  p = cli.parser("python -m xclip_jax.data.synthetic", __doc__)
  p.add_argument("--out", required=True, help="output folder (must not exist or be empty, unless --overwrite)")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--size", type=int, default=64, help="frame width = height in pixels (even)")
  p.add_argument("--frames", type=int, default=16, help="frames per video")
  p.add_argument("--fps", type=int, default=8)
  p.add_argument("--train-per-class", type=int, default=24, help="supervised train videos per class")
  p.add_argument("--val-per-class", type=int, default=8, help="val videos per class (supervised, few-shot)")
  p.add_argument("--zero-shot-per-class", type=int, default=12)
  p.add_argument("--few-shot-train-per-class", type=int, default=16, help="few-shot train pool per class (K <= this)")
  p.add_argument("--style", choices=STYLES, default="textured",
                 help="textured: random textured backgrounds and orientations; plain: flat background, larger "
                      "upright shapes (what the demo trains on)")
  p.add_argument("--overwrite", action="store_true")
  a = p.parse_args(argv)
  generate(a.out, seed=a.seed, size=a.size, frames=a.frames, fps=a.fps, train_per_class=a.train_per_class,
           val_per_class=a.val_per_class, zero_shot_per_class=a.zero_shot_per_class,
           few_shot_train_per_class=a.few_shot_train_per_class, style=a.style, overwrite=a.overwrite)
  return 0


if __name__ == "__main__":
  cli.run(main, prog="xclip_jax.data.synthetic")

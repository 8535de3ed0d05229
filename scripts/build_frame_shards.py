"""Stores a video dataset once as JPEG frames in ArrayRecord shards, for training with data.source=frames.

    python scripts/build_frame_shards.py --list train.txt --root /data/k400 --classes kinetics_400 \
        --out /data/k400_frames/train
    python scripts/build_frame_shards.py --root my_videos/ --out my_frames/   # one sub-folder per class

Every video is decoded once (display rotation applied, a cut-off file as far as it decodes), scaled down so
that its short side is at most --short-side, resampled to at most --fps frames per second (0 keeps every
frame) and written as JPEG frames (--quality) into shards of --videos-per-shard videos, with `index.json`
(per video: its records, frame count, fps, label, path; the settings), `classes.csv` and `bad_videos.tsv`.
Layout and reading: xclip_jax/data/frame_shards.py; the build: xclip_jax/data/frame_build.py.

Runs on all cores (--workers) with a progress bar. A killed or interrupted (Ctrl-C) build continues where it
stopped when the same command runs again (its finished shards are in <out>.partial). An existing <out> is
replaced only with --overwrite, after the new build is complete. Bad videos are listed with their errors,
skipped and counted. With several hosts, host h trains on shards h, h + hosts, ...: use at least as many
shards as hosts.
"""

from __future__ import annotations

import os
import sys

from xclip_jax import cli
from xclip_jax.data import frame_build
from xclip_jax.data.frame_extract import FrameSettings


def _videos(root: str, label_list: str | None, class_csv: str | None) -> tuple[list[frame_build.VideoEntry], list[str]]:
  """The videos and class names of a label list, or of a folder with one sub-folder per class.

  Uses the evaluation code's folder walker (`labelled_videos.labelled_set`), which the predict and evaluate
  commands use too, so a folder means the same thing everywhere.
  """
  from xclip_jax.evaluation import labelled_videos

  dataset = labelled_videos.labelled_set(root or ".", label_list=label_list, class_csv=class_csv)
  entries = []
  for path, label in zip(dataset.videos, dataset.labels.tolist(), strict=True):
    path = os.fspath(path)
    name = os.path.relpath(path, root) if root and not os.path.relpath(path, root).startswith("..") else path
    entries.append(frame_build.VideoEntry(path=path, label=int(label), name=name))
  return entries, list(dataset.class_names)


def main(argv: list[str] | None = None) -> int:
  p = cli.parser(description=__doc__)
  p.add_argument("--list", default=None, help="label list: '<relative path> <label id>' per line (needs --classes); "
                                              "without it, --root is a folder with one sub-folder per class")
  p.add_argument("--root", default="", help="folder the list's paths are relative to, or the folder of class "
                                            "sub-folders")
  p.add_argument("--classes", default=None, help="class CSV (id,name) or a shipped list name, e.g. kinetics_400")
  p.add_argument("--out", required=True, help="output folder (local; copy it to gs:// afterwards if needed)")
  p.add_argument("--short-side", type=int, default=256, help="scale frames down to this short side (0: keep)")
  p.add_argument("--fps", type=float, default=10.0, help="at most this many frames per second (0: every frame)")
  p.add_argument("--quality", type=int, default=90, help="JPEG quality")
  p.add_argument("--chroma", choices=("420", "444"), default="420",
                 help="JPEG chroma subsampling: 420 (as videos store colour) or 444 (tiny frames, e.g. 32 px)")
  p.add_argument("--videos-per-shard", type=int, default=100, help="videos per shard (the unit of resuming)")
  p.add_argument("--num-shards", type=int, default=0, help="number of shards instead (0: from --videos-per-shard)")
  p.add_argument("--workers", type=int, default=0, help="worker processes (0: one per core)")
  p.add_argument("--overwrite", action="store_true", help="replace an existing --out (after the new one is built)")
  p.add_argument("--quiet", action="store_true", help="no progress bar")
  a = p.parse_args(argv)
  if a.list and not a.classes:
    p.error("--list needs --classes")
  try:
    videos, class_names = _videos(a.root, a.list, a.classes)
    settings = FrameSettings(short_side=a.short_side, fps=a.fps, quality=a.quality, chroma=a.chroma)
    summary = frame_build.build(
        videos, class_names, a.out, settings,
        videos_per_shard=a.videos_per_shard, num_shards=a.num_shards, workers=a.workers, overwrite=a.overwrite,
        progress=not a.quiet, source={"list": os.path.abspath(a.list) if a.list else "",
                                      "root": os.path.abspath(a.root) if a.root else ""})
  except (FileNotFoundError, FileExistsError, ValueError) as e:  # LabelFileError and VideoInputError too.
    print(f"error: {e}", file=sys.stderr)
    return 1
  except KeyboardInterrupt:
    print(f"\nbuild_frame_shards.py: stopped by Ctrl-C; the shards finished so far are kept in {a.out}.partial and "
          f"the same command continues from them", file=sys.stderr)
    return cli.INTERRUPTED
  print(f"wrote {summary['stored']} of {summary['videos']} videos ({summary['frames']} frames, "
        f"{summary['bytes'] / 2**20:.1f} MiB) to {a.out}; {summary['bad']} bad videos skipped"
        + (" (listed in bad_videos.tsv)" if summary["bad"] else "")
        + (f", {summary['cut_off']} cut off (kept the frames that decode)" if summary["cut_off"] else "")
        + f"; {summary['videos_per_cpu_second']} videos per CPU-second")
  return 0


if __name__ == "__main__":
  cli.run(main, prog="build_frame_shards.py")

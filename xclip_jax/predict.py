r"""Open-set video recognition: classify a video file against any class names.

  python -m xclip_jax.predict --checkpoint ckpt/xclip_b16_32f_zero --video cat.mp4 \
      --labels "playing piano,petting a cat,juggling balls"
  python -m xclip_jax.predict --checkpoint runs/demo/supervised --video v.mp4 --labels-file classes.txt

--checkpoint is a converted model directory, a training workdir (latest checkpoint), or an HF XCLIP
directory. Frames are sampled and cropped as the official test pipeline (segment sampling, short side
256/224 of the input size + centre crop, or 3 crops); probabilities are averaged over the views.
"""

from __future__ import annotations

import argparse
import csv
import json
import pathlib
import sys

import numpy as np

from xclip_jax.data import decode, sampling, transforms


def read_labels(labels: str | None, labels_file: str | None) -> list[str]:
  """Class names from a comma-separated string, or a file (one per line, or an `id,name` CSV)."""
  if (labels is None) == (labels_file is None):
    raise ValueError("give exactly one of --labels or --labels-file")
  if labels is not None:
    names = [name.strip() for name in labels.split(",")]
  else:
    path = pathlib.Path(labels_file)
    if not path.is_file():
      raise FileNotFoundError(f"--labels-file {path} does not exist")
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if lines and lines[0].strip().lower() == "id,name":
      names = [row[1].strip() for row in csv.reader(lines[1:])]
    else:
      names = [line.strip() for line in lines]
  empty = [i for i, name in enumerate(names) if not name]
  if empty or not names:
    raise ValueError(f"class names must be non-empty (empty entries at positions {empty})")
  return names


def video_views(path: str, *, frames: int, size: int, clips: int, crops: int) -> np.ndarray:
  """(views, T, size, size, 3) uint8 from a video file, as the official test pipeline samples it."""
  short = int(256 / 224 * size)
  frames_uint8, _, _ = decode.read_frames(
      path, lambda n: sampling.multiview_indices(n, frames, clips, mode="segment", multiview="uniform", rng=None),
      short_side=size if crops == 3 else short)
  return transforms.test_views(frames_uint8, clips=clips, crops=crops, input_size=size, short=short)


def predict(model, video_path: str, class_names: list[str], *, clips: int = 1, crops: int = 1) -> np.ndarray:
  """Probabilities (K,) of one video, averaged over clips x crops views."""
  import xclip_jax

  config = model.config
  views = video_views(video_path, frames=config.num_frames, size=config.image_size, clips=clips, crops=crops)
  probabilities = model.classify(xclip_jax.normalize_frames(views), class_names)
  return probabilities.mean(axis=0)


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--checkpoint", required=True, help="model dir, training workdir or HF XCLIP dir")
  parser.add_argument("--video", required=True, nargs="+", help="video file(s)")
  parser.add_argument("--labels", help='comma-separated class names, e.g. "archery,juggling balls"')
  parser.add_argument("--labels-file", help="class names, one per line or an id,name CSV")
  parser.add_argument("--top", type=int, default=5, help="how many classes to print (default 5)")
  parser.add_argument("--clips", type=int, default=1, help="temporal views (default 1)")
  parser.add_argument("--crops", type=int, default=1, choices=(1, 3), help="spatial views (1 or 3)")
  parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
  args = parser.parse_args(argv)
  try:
    class_names = read_labels(args.labels, args.labels_file)
    import xclip_jax

    model = xclip_jax.load_model(args.checkpoint)
    outputs = []
    for video in args.video:
      probabilities = predict(model, video, class_names, clips=args.clips, crops=args.crops)
      order = np.argsort(-probabilities)[: args.top]
      outputs.append({"video": video, "top": [{"label": class_names[i], "probability": float(probabilities[i])}
                                              for i in order]})
  except (ValueError, FileNotFoundError, decode.VideoDecodeError) as error:
    print(f"predict: error: {error}", file=sys.stderr)
    return 1
  if args.json:
    print(json.dumps(outputs, indent=2))
  else:
    for output in outputs:
      print(f"{output['video']}: top-{len(output['top'])} of {len(class_names)} classes")
      for rank, entry in enumerate(output["top"], start=1):
        print(f"  {rank}. {entry['label']:<40s} {100 * entry['probability']:6.2f}%")
  return 0


if __name__ == "__main__":
  sys.exit(main())

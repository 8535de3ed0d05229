r"""Open-set video recognition: classify video files against any class names.

  python -m xclip_jax.predict --checkpoint microsoft/xclip-base-patch16-zero-shot --video cat.mp4 \
      --labels "playing piano,petting a cat,juggling balls"
  python -m xclip_jax.predict --checkpoint k400_16_8 --video a.mp4 clips/ list.txt \
      --labels-file classes.csv --out predictions.csv
  python -m xclip_jax.predict --checkpoint runs/demo/supervised --video clip.mp4 --labels-file classes.csv

--checkpoint is a model name (`python -m xclip_jax.zoo list` shows them; fetched and converted into the cache
the first time) or anything else `xclip_jax.load_model` loads: a training workdir (its latest checkpoint, as
the third line), a converted model directory, an HF XCLIP directory, a .pth file.
--video takes files, folders (searched recursively for video files) and list files (.txt: one path per
line, or official `<path> <label id>` lines; relative to the list's folder or --root). Frames are sampled and
cropped as the official test pipeline, by the view builder main's evaluation uses (`xclip_jax.data.views`;
--multiview-sampling as data.multiview_sampling); probabilities are averaged over the clips x crops views.
Videos are decoded ahead on host threads and classified in batches on the device. A file that cannot be read
gets its error in its row (and on stderr) while the others are classified; the exit code is then 1. With
--out, rows go to a CSV or JSON-lines file (by its extension or --format), written to a temporary file and
renamed (or uploaded) at the end; without it, a table is printed. --timeline classifies every window of each
video instead (docs/search.md). Every path (--checkpoint, --video, --labels-file, --out) may be a gs:// URL
(docs/cloud.md). Ctrl-C stops after the videos being classified: the rows finished so far are written (a line
says how many of how many videos) and the exit status is 130; a second Ctrl-C stops at once and writes
nothing, leaving an older --out as it was.
"""

from __future__ import annotations

import contextlib
import csv
import json
import sys
from collections.abc import Iterator

import numpy as np

from xclip_jax import cli, interrupts, storage
from xclip_jax.data import decode, views
from xclip_jax.evaluation import video_files
from xclip_jax.evaluation.video_files import video_views  # noqa: F401 - public here since the first release.


def read_labels(labels: str | None, labels_file: str | None) -> list[str]:
  """Class names from a comma-separated string, or a file (one per line, or an `id,name` CSV)."""
  if (labels is None) == (labels_file is None):
    raise ValueError("give exactly one of --labels or --labels-file")
  if labels is not None:
    names = [name.strip() for name in labels.split(",")]
  else:
    path = storage.path(labels_file)
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


def predict(model, video_path: str, class_names: list[str], *, clips: int = 1, crops: int = 1,
            multiview_sampling: str = views.DEFAULT_MULTIVIEW_SAMPLING) -> np.ndarray:
  """Probabilities (K,) of one video, averaged over clips x crops views; raises `VideoDecodeError` if unreadable."""
  [result] = video_files.classify_videos(model, [video_path], class_names, clips=clips, crops=crops,
                                         multiview_sampling=multiview_sampling, batch_size=1, workers=1,
                                         progress=False)
  if result.error is not None:
    raise decode.VideoDecodeError(video_path, result.error)
  return result.probabilities


def _parser() -> cli.Parser:
  parser = cli.parser("python -m xclip_jax.predict", __doc__)
  parser.add_argument("--checkpoint", required=True,
                      help="a model name (python -m xclip_jax.zoo list), a training workdir, or anything else "
                           "xclip_jax.load_model loads")
  parser.add_argument("--video", required=True, nargs="+", help="video files, folders and list files (.txt)")
  parser.add_argument("--root", help="folder that relative paths in list files are relative to "
                                     "(default: the list file's folder)")
  parser.add_argument("--labels", help='comma-separated class names, e.g. "archery,juggling balls"')
  parser.add_argument("--labels-file", help="class names, one per line or an id,name CSV")
  parser.add_argument("--out", help="write one row per video to this .csv or .jsonl file (atomically)")
  parser.add_argument("--format", choices=video_files.OUTPUT_FORMATS, help="output format (default: --out's extension)")
  parser.add_argument("--top", type=int, default=5, help="how many classes per video (default 5)")
  parser.add_argument("--clips", type=int, default=1, help="temporal views (default 1)")
  parser.add_argument("--crops", type=int, default=1, choices=(1, 3), help="spatial views (1 or 3)")
  parser.add_argument("--multiview-sampling", choices=views.MULTIVIEW_SAMPLINGS,
                      default=views.DEFAULT_MULTIVIEW_SAMPLING,
                      help="placement of --clips > 1: official (X-CLIP's random segment samplings, seeded by the "
                           "file name; main's data.multiview_sampling default) or uniform (evenly shifted)")
  parser.add_argument("--batch-size", type=int, default=8, help="videos per device batch (default 8)")
  parser.add_argument("--workers", type=int, default=None, help="host threads decoding ahead (default: CPUs, <= 8)")
  parser.add_argument("--dtype", choices=("float32", "bfloat16"), help="compute dtype (default: the model's); bfloat16 "
                      "is faster on accelerators and on CPUs with AVX512-BF16 (docs/performance.md)")
  parser.add_argument("--no-progress", action="store_true", help="no progress bar")
  parser.add_argument("--json", action="store_true", help="print JSON to stdout instead of a table (without --out)")
  parser.add_argument("--timeline", action="store_true", help="classify every window of each video (any length): one "
                                                              "row per window, a .png beside --out (docs/search.md)")
  parser.add_argument("--window", type=float, help="with --timeline: window length in seconds (default 8)")
  parser.add_argument("--stride", type=float, help="with --timeline: seconds between window starts (default: half "
                                                   "a window)")
  return parser


def _report_problem(prediction: video_files.VideoPrediction) -> None:
  """One stderr line per failed file (and per warning), without breaking the progress bar."""
  from tqdm.auto import tqdm

  if prediction.error is not None:
    tqdm.write(f"predict: error: {prediction.path}: {prediction.error}", file=sys.stderr)
  elif prediction.warning:
    tqdm.write(f"predict: warning: {prediction.path}: {prediction.warning}", file=sys.stderr)


def _print_table(results: list[video_files.VideoPrediction], class_names: list[str], top: int) -> None:
  for result in results:
    if result.error is not None:
      print(f"{result.path}: error: {result.error}")
      continue
    best = result.top(class_names, top)
    note = f" (warning: {result.warning})" if result.warning else ""
    print(f"{result.path}: top-{len(best)} of {len(class_names)} classes{note}")
    for rank, (label, probability) in enumerate(best, start=1):
      print(f"  {rank}. {label:<40s} {100 * probability:6.2f}%")


def main(argv: list[str] | None = None) -> int:
  args = _parser().parse_args(argv)
  try:
    class_names = read_labels(args.labels, args.labels_file)
    videos = video_files.find_videos(args.video, root=args.root)
    if args.out:
      video_files.output_format(args.out, args.format)  # A bad --out fails now, not after the work.
      if storage.is_remote(args.out):  # so does a missing bucket or a missing permission
        storage.check_writable(storage.path(args.out).parent, name="--out location")
    if args.batch_size < 1 or args.top < 1 or args.clips < 1:
      raise ValueError("--batch-size, --top and --clips must be at least 1")
    import xclip_jax

    model = xclip_jax.load_model(args.checkpoint, dtype=args.dtype)
    if args.timeline:
      from xclip_jax.search import timeline

      return timeline.run(model, videos, class_names, out=args.out, top=args.top, window_s=args.window,
                          stride_s=args.stride, batch_size=args.batch_size, progress=not args.no_progress)
  except (ValueError, OSError) as error:  # OSError: missing files, zoo download failures
    print(f"predict: error: {error}", file=sys.stderr)
    return 1
  stop = interrupts.StopRequests(
      acknowledge="Ctrl-C: stopping after the videos being classified; the rows finished so far are kept "
                  "(Ctrl-C again stops at once, writing nothing)", at_once=None)
  try:
    with stop:
      results = _until_stopped(stop, video_files.iter_classify_videos(
          model, videos, class_names, clips=args.clips, crops=args.crops,
          multiview_sampling=args.multiview_sampling, batch_size=args.batch_size, workers=args.workers,
          progress=not args.no_progress))
      total, failed = _output(results, class_names, args)
  except KeyboardInterrupt:  # Ctrl-C twice, or before the first video: the output (and an older one) untouched
    where = f"; {args.out} was not written" if args.out else ""
    print(f"\npredict: stopped by Ctrl-C{where}", file=sys.stderr)
    return interrupts.EXIT_STATUS
  if stop.requested:
    how = "Ctrl-C" if stop.requested == "SIGINT" else stop.requested
    where = f" are in {args.out}" if args.out else " are above"
    print(f"predict: stopped by {how} after {total} of {len(videos)} videos; their rows{where}", file=sys.stderr)
  elif args.out:
    print(f"predict: wrote {total} rows to {args.out}", file=sys.stderr)
  if failed:
    print(f"predict: {failed} of {total} videos could not be read (see above)", file=sys.stderr)
  return interrupts.EXIT_STATUS if stop.requested else 1 if failed else 0


def _until_stopped(stop: interrupts.StopRequests, results: Iterator[video_files.VideoPrediction]
                   ) -> Iterator[video_files.VideoPrediction]:
  """The predictions until a stop is requested (then the iterator is closed: its decoding threads end). Asked
  before the first one, it raises KeyboardInterrupt: an output with no rows would replace an older one."""
  with contextlib.closing(results):
    for done, prediction in enumerate(results):
      if stop.requested:
        if not done:
          raise KeyboardInterrupt
        return
      yield prediction


def _output(results: Iterator[video_files.VideoPrediction], class_names: list[str], args) -> tuple[int, int]:
  """Writes --out (or prints the table or JSON); returns (videos, videos that failed)."""
  if args.out:
    failed = 0

    def on_row(prediction):
      nonlocal failed
      failed += not prediction.ok
      _report_problem(prediction)

    total = video_files.write_predictions(results, class_names, args.out, format=args.format, top=args.top,
                                          on_row=on_row)
    return total, failed
  collected = []
  for prediction in results:
    collected.append(prediction)
    _report_problem(prediction)
  if args.json:
    print(json.dumps([{"video": p.path, "status": p.status, "message": p.error or p.warning or "",
                       "top": [{"label": label, "probability": probability}
                               for label, probability in p.top(class_names, args.top)]} for p in collected],
                     indent=2))
  else:
    _print_table(collected, class_names, args.top)
  return len(collected), sum(not p.ok for p in collected)


if __name__ == "__main__":
  cli.run(main, prog="xclip_jax.predict")

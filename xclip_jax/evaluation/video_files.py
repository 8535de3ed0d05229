"""Classifying many video files with a loaded model, as users run it: folders, lists, broken files.

    videos = find_videos(["a.mp4", "clips/", "list.txt"])           # files, folders (recursive), list files
    results = classify_videos(model, videos, class_names, clips=4)   # [VideoPrediction], input order
    write_predictions(results, class_names, "predictions.csv")       # or .jsonl; written atomically

Views are built by the one view builder, `xclip_jax.data.views` (main's evaluation builds them there too):
the official test sampling (segment sampling; clips > 1 placed as `multiview_sampling` says, "official" by
default; short side 256/224 of the input size + centre crop, or 3 crops). Probabilities are the softmax
averaged over views, computed by the evaluator's own probability step (`eval_steps`). Videos are decoded
ahead on host threads (PyAV and PIL release the GIL) while the device runs the previous batch; batches keep
one shape (the last is padded), so the model compiles once. A file that cannot be read gets its error in its
result and the others are classified. `sampled_frames` returns the frames
a prediction looked at, for display. Videos that are not files (a TFDS split, ArrayRecord shards) are passed
as `SourceVideo(source, index)`. Files, folders, lists and the output may be in a bucket (gs://...).
"""

from __future__ import annotations

import collections
import concurrent.futures
import csv
import dataclasses
import functools
import json
import os
import pathlib
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np
from etils import epath

from xclip_jax import storage
from xclip_jax.data import decode, sources, video_source, views

# VIDEO_EXTENSIONS (what a folder is searched for) and VideoInputError (a path given is missing, an empty folder
# or a malformed list; the message names it) live with the folder walker, which the data pipeline shares.
from xclip_jax.data.folders import VIDEO_EXTENSIONS, VideoInputError

LIST_EXTENSIONS = (".txt", ".lst")  # A file with one of these is a list of videos, not a video.
OUTPUT_FORMATS = ("csv", "jsonl")


@dataclasses.dataclass
class VideoPrediction:
  """What became of one video file.

  Attributes:
    path: the file, as found.
    probabilities: (K,) float32 class probabilities averaged over views; None if the file failed.
    error: why the file could not be classified (None if it was).
    warning: a note on a classified file (e.g. cut off: classified from the frames that decode).
  """

  path: str
  probabilities: np.ndarray | None = None
  error: str | None = None
  warning: str | None = None

  @property
  def ok(self) -> bool:
    return self.error is None

  @property
  def status(self) -> str:
    """"ok", "warning" (classified, with a note) or "error"."""
    return "error" if self.error is not None else "warning" if self.warning else "ok"

  def top(self, class_names: Sequence[str], k: int = 5) -> list[tuple[str, float]]:
    """The k most probable (class name, probability), best first; [] for a failed file."""
    if self.probabilities is None:
      return []
    order = np.argsort(-self.probabilities, kind="stable")[:k]
    return [(class_names[i], float(self.probabilities[i])) for i in order]


# ---------------------------------------------------------------------------------------------------------
# Finding videos.


def _is_video(path: epath.Path, extensions: Sequence[str]) -> bool:
  """A listed file that counts as a video (bucket listings hold only objects: no request per file)."""
  named = path.suffix.lower() in extensions and not path.name.startswith(".")
  return named and (storage.is_remote(path) or path.is_file())


def read_video_list(list_path: str | os.PathLike, root: str | os.PathLike | None = None) -> list[str]:
  """Paths in a list file: one per line, or official label-list lines `<path> <label id>` (label ignored).

  Relative paths are joined with `root` (default: the list file's folder). Blank lines and `#` comments
  are skipped. Listed files are not checked here: a missing one fails alone when it is read.
  """
  list_path = storage.path(list_path)
  base = storage.path(root) if root is not None else list_path.parent
  paths = []
  for line in list_path.read_text(encoding="utf-8").splitlines():
    text = line.strip()
    if not text or text.startswith("#"):
      continue
    candidate = text
    parts = text.rsplit(maxsplit=1)
    # `<path> <label>` unless the whole line names an existing file (paths may contain spaces and digits).
    if len(parts) == 2 and re.fullmatch(r"-?\d+", parts[1]) and not (base / text).exists():
      candidate = parts[0]
    absolute = os.path.isabs(candidate) or storage.is_remote(candidate)
    paths.append(candidate if absolute else os.fspath(base / candidate))
  if not paths:
    raise VideoInputError(f"{list_path}: the list file names no videos")
  return paths


def find_videos(inputs: Iterable[str | os.PathLike], *, extensions: Sequence[str] = VIDEO_EXTENSIONS,
                root: str | os.PathLike | None = None) -> list[str]:
  """Video paths from a mix of files, folders and list files, in the order given, without repeats.

  Args:
    inputs: video files (any name), folders (searched recursively for `extensions`, sorted) and list
      files (`.txt`/`.lst`, see `read_video_list`).
    extensions: file name endings (lower case, with the dot) that count as videos in folders.
    root: folder that relative paths in list files are relative to (default: each list file's folder).

  Raises:
    VideoInputError: a path does not exist, a folder holds no videos, a list file names none.
  """
  extensions = tuple(e.lower() for e in extensions)
  found: dict[str, None] = {}
  for given in inputs:
    path = storage.path(given)
    if path.is_dir():
      videos = [p for p in storage.files_under(path) if _is_video(p, extensions)]
      if not videos:
        raise VideoInputError(f"{path}: no videos in this folder or below (looked for {', '.join(extensions)})")
      found.update((os.fspath(p), None) for p in videos)
    elif path.is_file() and path.suffix.lower() in LIST_EXTENSIONS:
      found.update((p, None) for p in read_video_list(path, root))
    elif path.is_file():
      found[os.fspath(path)] = None
    else:
      raise VideoInputError(f"{path}: no such file or folder")
  if not found:
    raise VideoInputError("no videos given")
  return list(found)


# ---------------------------------------------------------------------------------------------------------
# Frames.


@dataclasses.dataclass(frozen=True)
class SourceVideo:
  """Video `index` of a data source (`xclip_jax.data.sources`: TFDS, ArrayRecord shards, label lists).

  Everything here that takes a video path takes one of these too; the item is read (from disk, on a decoding
  thread) only when its frames are needed, so a whole TFDS split is never held in memory.
  """

  source: Any
  index: int

  def __str__(self) -> str:
    return self.source.name(self.index)


Video = str | os.PathLike | SourceVideo
_SOURCE_READS = threading.Lock()  # data sources are not documented as thread-safe: read items one at a time


def _readable(video: Video) -> video_source.EncodedVideo:
  """A path as a `VideoFile`; a `SourceVideo`'s item, read from its source (one at a time)."""
  if isinstance(video, SourceVideo):
    with _SOURCE_READS:
      return video.source[video.index]
  return sources.VideoFile.at(os.fspath(video))


def sampled_frames(video: Video, frames: int, *, clips: int = 1, short_side: int | None = None,
                   multiview_sampling: str = views.DEFAULT_MULTIVIEW_SAMPLING) -> np.ndarray:
  """(clips, frames, H, W, 3) uint8: the frames the classifier samples from `video`, uncropped, as displayed.

  `video` is a file path or a `SourceVideo`. `short_side` resizes them (aspect kept) for display; None keeps
  the video's size. Raises `decode.VideoDecodeError` naming the video if it cannot be read.
  """
  item = _readable(video)
  spec = views.ViewSpec(frames=frames, size=1, clips=clips, multiview_sampling=multiview_sampling)
  picked, _, _ = item.load_frames(lambda n: spec.frame_indices(n, item.name), short_side=short_side,
                                  on_warning=lambda message: None)
  return picked.reshape(clips, frames, *picked.shape[1:])


def video_views(video: Video, *, frames: int, size: int, clips: int = 1, crops: int = 1,
                multiview_sampling: str = views.DEFAULT_MULTIVIEW_SAMPLING,
                on_warning: Callable[[str], None] | None = None) -> np.ndarray:
  """(crops x clips, frames, size, size, 3) uint8: the model's input views of one video (`xclip_jax.data.views`)."""
  spec = views.ViewSpec(frames=frames, size=size, clips=clips, crops=crops, multiview_sampling=multiview_sampling)
  return views.read_views(_readable(video), spec, on_warning=on_warning)


# ---------------------------------------------------------------------------------------------------------
# Classifying.


def _load(video: Video, spec: views.ViewSpec) -> tuple[np.ndarray | None, str | None, str | None]:
  """(views, error, warning) of one video; never raises for a bad video (runs on a host thread)."""
  notes: list[str] = []
  try:
    picked = views.read_views(_readable(video), spec, on_warning=notes.append)
  except decode.VideoDecodeError as e:
    return None, e.reason, None
  except Exception as e:  # One unreadable file must not stop the others; its row says why.
    return None, f"{type(e).__name__}: {e}", None
  return picked, None, "; ".join(n.removeprefix(f"{video}: ") for n in notes) or None


@functools.lru_cache(maxsize=8)
def _probability_step(graphdef, dtype: str):
  """The evaluator's probability step (softmax averaged over views), jitted once per model structure, with the
  evaluator's compile options."""
  import jax

  from xclip_jax.evaluation import eval_steps
  from xclip_jax.models import layers

  return jax.jit(eval_steps.make_probability_step(graphdef),
                 compiler_options=layers.inference_compiler_options(dtype))


def iter_classify_videos(model, videos: Sequence[Video], class_names: Sequence[str], *, clips: int = 1,
                         crops: int = 1, multiview_sampling: str = views.DEFAULT_MULTIVIEW_SAMPLING,
                         batch_size: int = 8, workers: int | None = None,
                         progress: bool = True) -> Iterator[VideoPrediction]:
  """Yields a `VideoPrediction` per video, in input order, as batches finish (see `classify_videos`)."""
  import xclip_jax

  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}")
  if not class_names:
    raise ValueError("no class names")
  config = model.config
  spec = views.ViewSpec(frames=config.num_frames, size=config.image_size, clips=clips, crops=crops,
                        multiview_sampling=multiview_sampling)
  text = model.encode_text(xclip_jax.tokenize(list(class_names), context_length=config.context_length,
                                              truncate=True))
  step = _probability_step(model.graphdef, config.dtype)
  workers = workers or min(8, os.cpu_count() or 1)
  bar = _progress_bar(len(videos), progress)
  empty = spec.empty()

  def run(loaded):
    """Dispatches a batch (asynchronously): batch_size videos x their views -> probabilities on device."""
    if all(picked is None for _, (picked, _, _) in loaded):
      return None  # Every file failed: nothing to compute.
    stacked = np.stack([picked if picked is not None else empty for _, (picked, _, _) in loaded]
                       + [empty] * (batch_size - len(loaded)))  # Padded: one shape, one compilation.
    return step(model.state, stacked, text)

  def finish(pending) -> Iterator[VideoPrediction]:
    loaded, probabilities = pending
    if probabilities is not None:
      probabilities = np.asarray(probabilities, np.float32)
    for row, (path, (picked, error, warning)) in enumerate(loaded):
      bar.update(1)
      yield VideoPrediction(str(path), probabilities[row] if picked is not None else None, error, warning)

  with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
    # Decode ahead: at most two batches queued beyond the one being assembled, so memory stays bounded.
    queue: collections.deque = collections.deque()
    remaining = iter(videos)

    def fill():
      while len(queue) < 3 * batch_size:
        path = next(remaining, None)
        if path is None:
          return
        queue.append((path, pool.submit(_load, path, spec)))

    pending = None
    try:
      fill()
      while queue:
        loaded = []
        while queue and len(loaded) < batch_size:
          path, future = queue.popleft()
          loaded.append((path, future.result()))
          fill()
        dispatched = (loaded, run(loaded))
        if pending is not None:  # Results of the previous batch while this one runs on the device.
          yield from finish(pending)
        pending = dispatched
      if pending is not None:
        yield from finish(pending)
    finally:
      for _, future in queue:
        future.cancel()
      bar.close()


def classify_videos(model, videos: Sequence[Video], class_names: Sequence[str], *, clips: int = 1, crops: int = 1,
                    multiview_sampling: str = views.DEFAULT_MULTIVIEW_SAMPLING, batch_size: int = 8,
                    workers: int | None = None, progress: bool = True) -> list[VideoPrediction]:
  """Classifies video files against any class names, batched on the device.

  Args:
    model: an `xclip_jax.InferenceModel` (`xclip_jax.load_model`).
    videos: file paths (see `find_videos`) or `SourceVideo`s.
    class_names: the classes to choose from (open set: any names).
    clips, crops: views per video (clips x crops; crops 1 or 3).
    multiview_sampling: placement of clips > 1, "official" (seeded random, as X-CLIP) or "uniform"
      (`xclip_jax.data.views`; main's `data.multiview_sampling`).
    batch_size: videos per device batch (each with clips x crops views).
    workers: host threads decoding ahead (default: the CPU count, at most 8).
    progress: show a progress bar with ETA (stderr; notebook widget in notebooks).

  Returns:
    One `VideoPrediction` per video, in input order; failed files carry their error.
  """
  return list(iter_classify_videos(model, videos, class_names, clips=clips, crops=crops,
                                   multiview_sampling=multiview_sampling, batch_size=batch_size, workers=workers,
                                   progress=progress))


def _progress_bar(total: int, enabled: bool):
  from tqdm.auto import tqdm

  return tqdm(total=total, unit="video", disable=not enabled, dynamic_ncols=True)


# ---------------------------------------------------------------------------------------------------------
# Writing.


def output_format(out: str | os.PathLike, format: str | None = None) -> str:
  """"csv" or "jsonl": `format` if given, else from the extension of `out` (.csv, .jsonl/.json/.ndjson)."""
  if format is not None:
    if format not in OUTPUT_FORMATS:
      raise ValueError(f"unknown output format {format!r}; choose one of {OUTPUT_FORMATS}")
    return format
  suffix = pathlib.Path(out).suffix.lower()
  if suffix == ".csv":
    return "csv"
  if suffix in (".jsonl", ".json", ".ndjson"):
    return "jsonl"
  raise ValueError(f"{out}: cannot tell the output format from the extension {suffix or '(none)'}; name it "
                   f".csv or .jsonl, or pass the format (--format csv|jsonl)")


def csv_header(top: int) -> list[str]:
  """path, status (ok | warning | error), message, then label_i, probability_i for i = 1..top."""
  return ["path", "status", "message"] + [f"{c}_{i}" for i in range(1, top + 1) for c in ("label", "probability")]


def write_predictions(predictions: Iterable[VideoPrediction], class_names: Sequence[str], out: str | os.PathLike,
                      *, format: str | None = None, top: int = 5,
                      on_row: Callable[[VideoPrediction], None] | None = None,
                      true_labels: Sequence[str] | None = None) -> int:
  """Writes one row per prediction (CSV or JSON lines) to `out` atomically; returns the number of rows.

  Rows are streamed into a temporary file (next to `out`, or local for a gs:// `out`), which replaces `out`
  (renamed, or uploaded as one object) only once every row is written: an existing `out` is never lost or
  half-overwritten, even if the run is interrupted.
  `on_row` is called after each row (the command line prints errors as they happen). `true_labels` (a
  labelled set's true class names, one per prediction) adds a last column / key `true_label`.
  """
  kind = output_format(out, format)
  top = max(1, min(int(top), len(class_names)))
  rows = 0
  with storage.staged_file(out) as staging, open(staging, "w", newline="", encoding="utf-8") as f:
    writer = csv.writer(f, lineterminator="\n") if kind == "csv" else None
    if writer is not None:
      writer.writerow(csv_header(top) + (["true_label"] if true_labels is not None else []))
    for p in predictions:
      best = p.top(class_names, top)
      message = p.error or p.warning or ""
      truth = [] if true_labels is None else [true_labels[rows]]
      if writer is not None:
        cells = [c for label, probability in best for c in (label, f"{probability:.6f}")]
        writer.writerow([p.path, p.status, message] + cells + [""] * (2 * top - len(cells)) + truth)
      else:
        record = {"path": p.path, "status": p.status, "message": message,
                  "top": [{"label": label, "probability": round(probability, 6)} for label, probability in best],
                  **({"true_label": truth[0]} if truth else {})}
        f.write(json.dumps(record, ensure_ascii=False) + "\n")
      rows += 1
      if on_row is not None:
        on_row(p)
  return rows

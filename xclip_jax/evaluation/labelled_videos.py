"""Evaluating a model on a labelled folder of videos: accuracy, per-class accuracy, confusion, worst videos.

    dataset = labelled_set("/data/ucf101", label_list="/data/ucf101/test.txt", class_csv="ucf_101")
    dataset = labelled_set("my_videos/")           # or: one sub-folder per class (folder name = class name)
    dataset = tfds_labelled_set("ucf101/ucf101_1_256", "test", readable_names=True)   # or a TFDS split
    dataset = open_set("sample:ucf101-subset/test", readable_names=True)   # any of these from one string
    report = evaluate_labelled_set(model, dataset.subset(200), clips=4, crops=3)
    report.top1, report.per_class_accuracy, report.confusion, report.worst(8)

Every video of the set is in the denominator: a file that cannot be read counts as an error (listed in
`failures`, counted per class in `failed_per_class`), as in the training pipeline's evaluation. Views and
batching are those of `video_files.classify_videos` (the one view builder, `xclip_jax.data.views`), the
metrics those of every evaluation (`scoring`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from xclip_jax import storage
from xclip_jax.data import folders, labels
from xclip_jax.data import views as views_lib
from xclip_jax.evaluation import scoring, video_files


@dataclasses.dataclass
class LabelledSet:
  """Videos with their true class: `videos[i]` is of class `class_names[labels[i]]`.

  A video is a file path or a `video_files.SourceVideo` (an item of a TFDS split, read when classified).
  """

  class_names: list[str]
  videos: list[video_files.Video]
  labels: np.ndarray  # (N,) int64

  def __len__(self) -> int:
    return len(self.videos)

  def subset(self, max_videos: int | None) -> LabelledSet:
    """At most `max_videos` videos, taken from every class in turn (first of each class, then second, ...).

    Keeps the set's order among the chosen ones, so a smaller evaluation still covers every class.
    """
    if max_videos is None or max_videos >= len(self.videos):
      return self
    if max_videos < 1:
      raise ValueError(f"max_videos must be >= 1 (or None for all), got {max_videos}")
    chosen = labels.spread_positions(self.labels, max_videos)
    return LabelledSet(list(self.class_names), [self.videos[i] for i in chosen], self.labels[chosen])

  def readable(self) -> LabelledSet:
    """The same set with class names as words (`labels.readable_class_name`: "ApplyEyeMakeup" -> "apply eye makeup")."""
    names = [labels.readable_class_name(n) for n in self.class_names]
    if len(set(names)) != len(names):
      clashes = sorted({n for n in names if names.count(n) > 1})
      raise labels.LabelFileError(f"readable class names would clash: {clashes}")
    return LabelledSet(names, list(self.videos), self.labels)


def labelled_set(root: str | os.PathLike, *, label_list: str | os.PathLike | None = None,
                 class_csv: str | None = None, readable_names: bool = False,
                 extensions: Sequence[str] = video_files.VIDEO_EXTENSIONS) -> LabelledSet:
  """A labelled set from an official label list, or from one sub-folder per class.

  Args:
    root: the folder the videos are in.
    label_list: official `<relative path> <label id>` list (paths relative to `root`); needs `class_csv`.
    class_csv: `id,name` CSV or a shipped list name (`kinetics_400`, `ucf_101`, ...). Without a label list
      it is optional: sub-folders are then matched to its names ignoring case, spaces and underscores.
    readable_names: give the model the class names as words ("ApplyEyeMakeup" -> "apply eye makeup", see
      `labels.readable_class_name`) instead of as written in the CSV or folder names.
    extensions: what counts as a video in the sub-folders.

  Without `label_list`, every sub-folder of `root` is a class (its videos searched recursively), named after
  the folder with underscores as spaces, in sorted order: `xclip_jax.data.folders.class_folders`, the walker
  training with `data.source="folders"` uses too. Videos outside any class folder, an empty class folder or
  a folder holding train/ val/ test/ are errors naming the folder.
  """
  root = storage.path(root)
  if not root.is_dir():
    raise video_files.VideoInputError(f"{root}: no such folder")
  if label_list is not None:
    if class_csv is None:
      raise ValueError("a label list needs the class names: pass class_csv (an id,name CSV or a shipped list name)")
    names = labels.read_class_names(class_csv)
    records = labels.read_label_list(str(label_list), str(root), num_classes=len(names))
    dataset = LabelledSet(names, [r.path for r in records], np.array([r.label for r in records], np.int64))
    return dataset.readable() if readable_names else dataset
  per_class = folders.class_folders(root, extensions=extensions)
  if class_csv is not None:
    names = labels.read_class_names(class_csv)
    table = {_key(n): i for i, n in enumerate(names)}
    unknown = [f for f in per_class if _key(f) not in table]
    if unknown:
      raise labels.LabelFileError(f"{root}: sub-folders {unknown[:5]} match no class of {class_csv}")
    ids = {f: table[_key(f)] for f in per_class}
  else:
    names = [folders.class_name(f) for f in per_class]
    ids = {f: i for i, f in enumerate(per_class)}
  videos = [v for f in per_class for v in per_class[f]]
  label_ids = [ids[f] for f in per_class for _ in per_class[f]]
  dataset = LabelledSet(names, videos, np.array(label_ids, np.int64))
  return dataset.readable() if readable_names else dataset


def tfds_labelled_set(name: str, split: str, *, data_dir: str | None = None, class_csv: str | None = None,
                      readable_names: bool = False) -> LabelledSet:
  """A TFDS video split (e.g. "ucf101/ucf101_1_256", "test") as a labelled set, read through `tfds.data_source`.

  The videos are `SourceVideo`s: their frames stay JPEG-encoded on disk until classified. With `class_csv`
  the TFDS labels are matched to its names (as in training: for ucf101 and the shipped `ucf_101` list the
  ids agree); otherwise the TFDS class names are used. Needs tensorflow-datasets and the prepared split
  (`data_dir`, default ~/tensorflow_datasets).
  """
  from xclip_jax.data import sources

  source = sources.TfdsSource(name, split, data_dir, labels.read_class_names(class_csv) if class_csv else None)
  dataset = LabelledSet(list(source.class_names), [video_files.SourceVideo(source, i) for i in range(len(source))],
                        source.labels())
  return dataset.readable() if readable_names else dataset


def open_set(spec: str | os.PathLike, *, label_list: str | os.PathLike | None = None, class_csv: str | None = None,
             readable_names: bool = False, tfds_data_dir: str | None = None,
             max_videos: int | None = None) -> LabelledSet:
  """A labelled set from one string, as a notebook parameter gives it.

  Args:
    spec: a folder (see `labelled_set`: one sub-folder per class, or with `label_list` + `class_csv`);
      "tfds:<name>:<split>" (see `tfds_labelled_set`), e.g. "tfds:ucf101/ucf101_1_256:test"; or
      "sample:<name>[/<sub-folder>]", a downloadable sample set (`xclip_jax.zoo.SAMPLE_DATASETS`), e.g.
      "sample:ucf101-subset/test".
    label_list, class_csv, readable_names: as for `labelled_set` (class_csv and readable_names for TFDS too).
    tfds_data_dir: where TFDS keeps its prepared data sets.
    max_videos: evaluate at most this many, spread over the classes (`LabelledSet.subset`).
  """
  text = os.fspath(spec)
  if text.startswith("tfds:"):
    name, _, split = text.removeprefix("tfds:").partition(":")
    if not name or not split:
      raise ValueError(f"{text!r}: a TFDS split is written tfds:<name>:<split>, e.g. tfds:ucf101/ucf101_1_256:test")
    dataset = tfds_labelled_set(name, split, data_dir=tfds_data_dir, class_csv=class_csv,
                                readable_names=readable_names)
  else:
    if text.startswith("sample:"):
      from xclip_jax import zoo

      name, _, sub_folder = text.removeprefix("sample:").partition("/")
      root = zoo.sample_dataset(name) / sub_folder
    else:
      root = storage.path(text)
    dataset = labelled_set(root, label_list=label_list, class_csv=class_csv, readable_names=readable_names)
  return dataset.subset(max_videos)


def _key(name: str) -> str:
  return "".join(name.replace("_", " ").split()).lower()


@dataclasses.dataclass
class SetEvaluation:
  """Predictions and metrics of a labelled set. Percentages; every video counts (failures as errors).

  Attributes:
    class_names: the K classes.
    predictions: one `VideoPrediction` per video, in the set's order.
    labels: (N,) true class ids.
    top1, top5: accuracy in percent over all N videos.
    per_class_accuracy: (K,) top-1 percent per true class (NaN for a class without videos: "not evaluated").
    confusion: (K, K) counts, row = true class, column = top-1 prediction, over videos that decoded.
    failed_per_class: (K,) videos per true class that could not be read (not in `confusion`).
    failures: (path, error) of every video that could not be read.
    views: "clips x crops".
    videos: the videos evaluated (paths or `SourceVideo`s), for showing their frames; `worst` rows index it.
  """

  class_names: list[str]
  predictions: list[video_files.VideoPrediction]
  labels: np.ndarray
  top1: float
  top5: float
  per_class_accuracy: np.ndarray
  confusion: np.ndarray
  failed_per_class: np.ndarray
  failures: list[tuple[str, str]]
  views: str
  videos: list[video_files.Video] | None = None
  videos_in_split: int | None = None  # all of the split (more than evaluated when the evaluation was shrunk)

  @property
  def chance(self) -> float:
    return 100.0 / len(self.class_names)

  @property
  def not_evaluated(self) -> list[str]:
    """Classes without a video in this evaluation (a shrunk one): no accuracy, never 0%."""
    return [name for name, accuracy in zip(self.class_names, self.per_class_accuracy, strict=True)
            if np.isnan(accuracy)]

  def describe_size(self) -> str:
    """"80 videos, 4x3 views", or for a shrunk evaluation "16 of 80 videos in 4 of 16 classes, 1x1 views"."""
    n = len(self.predictions)
    videos = f"{n} of {self.videos_in_split} videos" if (self.videos_in_split or 0) > n else f"{n} videos"
    if self.not_evaluated:
      k = len(self.class_names)
      videos += f" in {k - len(self.not_evaluated)} of {k} classes"
    return f"{videos}, {self.views} views"

  def worst(self, n: int = 10) -> list[dict[str, Any]]:
    """The n decoded videos whose true class got the lowest probability, worst first.

    Each: index (in `predictions` and `videos`), path, true (class name), p_true, predicted (top-3 as
    (name, probability)), correct (top-1).
    """
    rows = []
    for index, (p, label) in enumerate(zip(self.predictions, self.labels, strict=True)):
      if p.probabilities is None:
        continue
      top3 = p.top(self.class_names, 3)
      rows.append({"index": index, "path": p.path, "true": self.class_names[int(label)],
                   "p_true": float(p.probabilities[label]), "predicted": top3,
                   "correct": top3[0][0] == self.class_names[int(label)]})
    return sorted(rows, key=lambda r: r["p_true"])[:n]

  def to_dict(self) -> dict[str, Any]:
    """JSON-ready summary (no per-video probabilities)."""
    return {"top1": self.top1, "top5": self.top5, "chance": self.chance, "videos": len(self.predictions),
            "videos_in_split": self.videos_in_split or len(self.predictions),
            "classes_evaluated": len(self.class_names) - len(self.not_evaluated),
            "classes_not_evaluated": self.not_evaluated,
            "decode_failures": len(self.failures), "views": self.views, "class_names": self.class_names,
            "per_class_accuracy": [None if np.isnan(a) else float(a) for a in self.per_class_accuracy],
            "confusion": self.confusion.tolist(), "failed_per_class": self.failed_per_class.tolist(),
            "failures": [list(f) for f in self.failures], "worst": self.worst(10)}


def metrics(predictions: Sequence[video_files.VideoPrediction], true_labels: np.ndarray,
            class_names: Sequence[str], views: str = "1x1",
            videos: Sequence[video_files.Video] | None = None) -> SetEvaluation:
  """Metrics of predictions against true labels (`scoring.score`; failed predictions count as errors)."""
  true_labels = np.asarray(true_labels, np.int64)
  k, n = len(class_names), len(predictions)
  if len(true_labels) != n:
    raise ValueError(f"{n} predictions but {len(true_labels)} labels")
  decoded = np.array([p.probabilities is not None for p in predictions], bool)
  probabilities = np.zeros((n, k), np.float32)
  for row, p in enumerate(predictions):
    if p.probabilities is not None:
      probabilities[row] = p.probabilities
  scores = scoring.score(probabilities, true_labels, decoded, k)
  return SetEvaluation(
      class_names=list(class_names), predictions=list(predictions), labels=true_labels, top1=scores.top1,
      top5=scores.top5, per_class_accuracy=scores.per_class_accuracy, confusion=scores.confusion,
      failed_per_class=scores.failed_per_class,
      failures=[(p.path, p.error) for p in predictions if p.probabilities is None], views=views,
      videos=list(videos) if videos is not None else [p.path for p in predictions])


def evaluate_labelled_set(model, dataset: LabelledSet, *, clips: int = 1, crops: int = 1,
                          multiview_sampling: str = views_lib.DEFAULT_MULTIVIEW_SAMPLING, batch_size: int = 8,
                          workers: int | None = None, progress: bool = True) -> SetEvaluation:
  """Classifies every video of `dataset` against its class names and measures the result."""
  predictions = video_files.classify_videos(model, dataset.videos, dataset.class_names, clips=clips, crops=crops,
                                            multiview_sampling=multiview_sampling, batch_size=batch_size,
                                            workers=workers, progress=progress)
  return metrics(predictions, dataset.labels, dataset.class_names, views=f"{clips}x{crops}", videos=dataset.videos)

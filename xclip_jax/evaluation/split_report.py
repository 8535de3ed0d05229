"""What the notebook shows, for a split a run evaluates: top-1/top-5, per-class accuracy, confusion matrix,
the worst videos with their frames, and one CSV row per video.

    result, evaluation = evaluate_split(evaluator, state, data_cfg, split="test", clips=4, crops=3)
    files = write_report(evaluation, workdir / "report", title="my_videos/test")
    print(describe(evaluation, files, where="my_videos/test"))

The numbers are the run's own evaluation of the split (the training pipeline's views and sampling, through
`Evaluator.predict`), kept per video: `labelled_videos.metrics` turns them into the notebook's
`SetEvaluation`, `plots` draws it (no plotting code here), and `video_files.write_predictions` writes
predictions.csv in `python -m xclip_jax.predict`'s format plus a `true_label` column. A video that cannot be
read counts as an error, as everywhere, and its row names it with the reason. Runs in one process.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from etils import epath

from xclip_jax import storage
from xclip_jax.evaluation import labelled_videos, plots, video_files
from xclip_jax.evaluation.evaluator import EvalResult

WORST_VIDEOS = 6


def evaluate_split(evaluator, state: Any, data_cfg: Any, *, split: str, clips: int = 1, crops: int = 1,
                   context_length: int = 77, max_videos: int = -1
                   ) -> tuple[EvalResult, labelled_videos.SetEvaluation]:
  """The split's `EvalResult` (as `Evaluator.evaluate` gives it) and its per-video `SetEvaluation`."""
  predictions = evaluator.predict(state, data_cfg, split=split, clips=clips, crops=crops,
                                  context_length=context_length, max_videos=max_videos, keep_frames=False)
  per_video = [video_files.VideoPrediction(name, probabilities if label >= 0 else None,
                                           None if label >= 0 else predictions.errors.get(name, "failed to decode"))
               for name, probabilities, label in zip(predictions.names, predictions.probabilities,
                                                     predictions.labels, strict=True)]
  views = f"{clips}x{crops}"
  evaluation = labelled_videos.metrics(per_video, predictions.true_labels, predictions.class_names, views=views)
  evaluation.videos_in_split = predictions.videos_in_split
  result = EvalResult(top1=evaluation.top1, top5=evaluation.top5, videos=len(per_video),
                      decode_failures=len(evaluation.failures), num_classes=len(predictions.class_names), views=views,
                      failed_videos=[path for path, _ in evaluation.failures],
                      videos_in_split=predictions.videos_in_split,
                      classes_evaluated=len(predictions.class_names) - len(evaluation.not_evaluated))
  return result, evaluation


def _save(figure, path: epath.Path) -> None:
  with storage.staged_file(path) as staging:
    figure.savefig(staging, format="png", dpi=100)


def write_report(evaluation: labelled_videos.SetEvaluation, out_dir: str | os.PathLike, *, title: str = "",
                 worst: int = WORST_VIDEOS) -> dict[str, epath.Path]:
  """Writes predictions.csv and the figures (PNG) into `out_dir`, each file atomically; returns their paths."""
  out_dir = storage.mkdir(out_dir)
  names = evaluation.class_names
  files = {"predictions": out_dir / "predictions.csv"}
  video_files.write_predictions(evaluation.predictions, names, files["predictions"], top=min(5, len(names)),
                                true_labels=[names[int(label)] for label in evaluation.labels])
  where = f" of {title}" if title else ""
  videos = evaluation.describe_size()
  files["per_class_accuracy"] = out_dir / "per_class_accuracy.png"
  _save(plots.per_class_accuracy(evaluation, title=f"per-class accuracy{where} ({videos})"),
        files["per_class_accuracy"])
  files["confusion_matrix"] = out_dir / "confusion_matrix.png"
  _save(plots.confusion_matrix(evaluation, title=f"confusion matrix{where} (top-1 {evaluation.top1:.1f}%)"),
        files["confusion_matrix"])
  figure = plots.worst_videos(evaluation, n=worst)
  if figure is not None:  # None: no video could be read
    files["worst_videos"] = out_dir / "worst_videos.png"
    _save(figure, files["worst_videos"])
  return files


def describe(evaluation: labelled_videos.SetEvaluation, files: dict[str, epath.Path], *, where: str) -> str:
  """The console lines: accuracy, the unreadable videos by name, and where each file of the report is."""
  labels = {"per_class_accuracy": "per-class accuracy", "confusion_matrix": "confusion matrix",
            "worst_videos": f"the {min(WORST_VIDEOS, len(evaluation.worst(WORST_VIDEOS)))} worst videos",
            "predictions": "predictions (one row per video)"}
  accuracy = evaluation.per_class_accuracy
  line = (f"{where}: top-1 {evaluation.top1:.2f}%, top-5 {evaluation.top5:.2f}% (chance {evaluation.chance:.2f}%; "
          f"{evaluation.describe_size()})")
  if not np.isnan(accuracy).all():
    weakest = int(np.nanargmin(accuracy))
    line += f"; weakest class {evaluation.class_names[weakest]!r} {accuracy[weakest]:.1f}%"
  missing = evaluation.not_evaluated
  if missing:
    more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
    shown = ", ".join(repr(name) for name in missing[:3]) + more
    line += f"; not evaluated (no video in this evaluation): {shown}"
  lines = [line]
  lines += [f"  unreadable (counted as errors): {path}: {error}" for path, error in evaluation.failures]
  width = max(len(labels[k]) for k in files)
  lines += [f"  {labels[key] + ':':<{width + 1}} {path}" for key, path in files.items()]
  return "\n".join(lines)

"""Figures of what a model sees and predicts: frame grids, probability bars, per-class accuracy, confusion.

    fig = frame_grid(video_files.sampled_frames("video.mp4", frames=8), title="video.mp4")
    fig = probability_bars(class_names, prediction.probabilities)
    fig = per_class_accuracy(report); fig = confusion_matrix(report); fig = worst_videos(report, n=4)
    fig.savefig("figure.png")         # or, in a notebook, leave it as a cell's last expression to show it

Each function returns a `matplotlib.figure.Figure` built without pyplot, so nothing opens a window or
stays in pyplot's figure list; notebooks display it as a PNG (IPython's inline backend, Colab's default).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from xclip_jax.evaluation import video_files
from xclip_jax.evaluation.labelled_videos import SetEvaluation


def _short(name: str, width: int = 28) -> str:
  return name if len(name) <= width else name[:width - 1] + "…"


def _centre_crop(frames: np.ndarray, height: int, width: int) -> np.ndarray:
  top, left = (frames.shape[1] - height) // 2, (frames.shape[2] - width) // 2
  return frames[:, top:top + height, left:left + width]


def frame_grid(frames: np.ndarray, *, title: str | None = None, row_titles: Sequence[str] | None = None,
               frame_inches: float = 1.6) -> Figure:
  """Frames (T, H, W, 3) or (rows, T, H, W, 3) uint8 as a grid, one row per clip (or per video)."""
  frames = np.asarray(frames)
  if frames.ndim == 4:
    frames = frames[None]
  if frames.ndim != 5 or frames.shape[-1] != 3:
    raise ValueError(f"frames must be (T, H, W, 3) or (rows, T, H, W, 3), got shape {frames.shape}")
  rows, columns, height, width = frames.shape[:4]
  row_inches = frame_inches * height / width + (0.3 if row_titles is not None else 0.05)
  figure = Figure(figsize=(frame_inches * columns, row_inches * rows + (0.4 if title else 0)), layout="constrained")
  for r, row_figure in enumerate(np.atleast_1d(figure.subfigures(rows, 1))):
    axes = np.atleast_1d(row_figure.subplots(1, columns))
    for c, ax in enumerate(axes):
      ax.imshow(frames[r, c])
      ax.set_xticks([])
      ax.set_yticks([])
    if row_titles is not None:
      row_figure.suptitle(row_titles[r], x=0.0, ha="left", fontsize=9)
  if title:
    figure.suptitle(title, fontsize=10)
  return figure


def probability_bars(class_names: Sequence[str], probabilities: np.ndarray, *, top: int = 10,
                     title: str | None = None) -> Figure:
  """The `top` most probable classes as horizontal bars, best on top, each labelled with its probability."""
  probabilities = np.asarray(probabilities, np.float64)
  if probabilities.shape != (len(class_names),):
    raise ValueError(f"{len(class_names)} class names but probabilities of shape {probabilities.shape}")
  order = np.argsort(-probabilities, kind="stable")[:top]
  figure = Figure(figsize=(6.5, 0.45 * len(order) + 0.9), layout="constrained")
  ax = figure.subplots()
  ax.barh(range(len(order)), probabilities[order], color="tab:blue")
  ax.set_yticks(range(len(order)), [_short(class_names[i], 40) for i in order])
  ax.invert_yaxis()
  ax.set_xlim(0, 1.08)
  ax.set_xlabel("probability")
  for row, i in enumerate(order):
    ax.text(probabilities[i] + 0.01, row, f"{probabilities[i]:.3f}", va="center", fontsize=8)
  ax.set_title(title or "zero-shot class probabilities", fontsize=10)
  return figure


def per_class_accuracy(report: SetEvaluation, *, title: str | None = None) -> Figure:
  """Top-1 accuracy of each class (sorted), with the overall top-1 and chance as lines. A class without videos
  in this evaluation has no bar: its row says "not evaluated" (never a 0% bar)."""
  accuracy = report.per_class_accuracy
  missing = np.isnan(accuracy)
  order = np.concatenate([np.flatnonzero(missing), np.argsort(np.where(missing, -1.0, accuracy),
                                                               kind="stable")[int(missing.sum()):]])
  k = len(order)
  figure = Figure(figsize=(7, min(0.28 * k + 1.2, 30)), layout="constrained")
  ax = figure.subplots()
  ax.barh(range(k), np.nan_to_num(accuracy[order], nan=0.0), color="tab:green")
  for row, i in enumerate(order):
    if missing[i]:
      ax.text(1, row, "not evaluated (no video)", va="center", fontsize=7, color="grey", style="italic")
  ax.set_yticks(range(k), [_short(report.class_names[i]) for i in order], fontsize=8 if k <= 40 else 5)
  ax.axvline(report.top1, color="black", linestyle="--", linewidth=1, label=f"top-1 {report.top1:.1f}%")
  ax.axvline(report.chance, color="tab:red", linestyle=":", linewidth=1, label=f"chance {report.chance:.1f}%")
  ax.set_xlim(0, 100)
  ax.set_xlabel("top-1 accuracy (%)")
  ax.legend(loc="lower right", fontsize=8)
  ax.set_title(title or f"per-class accuracy ({report.describe_size()})", fontsize=10)
  return figure


def confusion_matrix(report: SetEvaluation, *, normalize: bool = True, title: str | None = None) -> Figure:
  """Rows: true class, columns: top-1 prediction; row-normalised to fractions unless `normalize=False`."""
  counts = report.confusion.astype(np.float64)
  k = len(report.class_names)
  values = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1) if normalize else counts
  side = min(max(4.5, 0.32 * k + 2.5), 24)
  figure = Figure(figsize=(side + 1, side), layout="constrained")
  ax = figure.subplots()
  image = ax.imshow(values, cmap="Blues", vmin=0, vmax=1 if normalize else max(values.max(), 1))
  figure.colorbar(image, ax=ax, shrink=0.8, label="fraction of the true class" if normalize else "videos")
  if k <= 50:
    names = [_short(n, 24) for n in report.class_names]
    ax.set_xticks(range(k), names, rotation=90, fontsize=7 if k > 15 else 8)
    ax.set_yticks(range(k), names, fontsize=7 if k > 15 else 8)
  if k <= 15:
    for (row, column), count in np.ndenumerate(counts):
      if count:
        ax.text(column, row, int(count), ha="center", va="center", fontsize=7,
                color="white" if values[row, column] > 0.5 * values.max() else "black")
  ax.set_xlabel("predicted")
  ax.set_ylabel("true")
  ax.set_title(title or f"confusion matrix (top-1 {report.top1:.1f}%)", fontsize=10)
  return figure


def worst_videos(report: SetEvaluation, *, n: int = 4, frames: int = 8, short_side: int = 112) -> Figure | None:
  """The `n` videos whose true class got the lowest probability: their frames, true class and predictions.

  None if no video was classified.
  """
  rows = report.worst(n)
  if not rows:
    return None
  grids, titles = [], []
  for row in rows:
    video = report.videos[row["index"]] if report.videos else row["path"]
    grids.append(video_files.sampled_frames(video, frames, short_side=short_side)[0])
    predicted = ", ".join(f"{_short(name, 24)} {p:.2f}" for name, p in row["predicted"])
    titles.append(f"{_short(str(row['path']).rsplit('/', 1)[-1], 40)} | true: {row['true']} ({row['p_true']:.2f}) | "
                  f"predicted: {predicted}")
  height, width = min(g.shape[1] for g in grids), min(g.shape[2] for g in grids)
  grid = np.stack([_centre_crop(g, height, width) for g in grids])  # one size for the grid
  return frame_grid(grid, row_titles=titles, title=f"the {len(rows)} worst-classified videos")

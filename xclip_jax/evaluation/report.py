"""The demo's picture: example validation videos with the model's top-3 classes, and the training curves.

`write_report(path, rows, panels)` draws, from the top: the training curves (e.g. loss and single-view val
top-1 by step, read from the TensorBoard event files the trainer writes: `read_scalars`), then one row per
example video: its sampled frames as the model saw them, the true class and the top-3 predicted classes
with their probabilities (green when the first is right). The layout is fixed in pixels (`Layout`), so the
picture's size follows from the number of rows.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import tempfile
from collections.abc import Sequence

import numpy as np
from etils import epath

from xclip_jax import storage
from xclip_jax.evaluation.evaluator import Predictions


@dataclasses.dataclass
class ExampleRow:
  section: str  # which evaluation the video comes from, e.g. "zero-shot"
  name: str  # the video's name in its source
  frames: np.ndarray  # (T, H, W, 3) uint8
  true_class: str
  top: list[tuple[str, float]]  # the top-3 (class, probability), best first

  @property
  def correct(self) -> bool:
    return bool(self.top) and self.top[0][0] == self.true_class

  def to_dict(self) -> dict:
    return {"section": self.section, "video": self.name, "true": self.true_class,
            "top3": [[c, round(float(p), 4)] for c, p in self.top], "correct": self.correct}


@dataclasses.dataclass
class Curve:
  label: str
  steps: np.ndarray
  values: np.ndarray


@dataclasses.dataclass
class Panel:
  """One plot of the curves row."""

  title: str
  ylabel: str
  curves: Sequence[Curve]
  ylim: tuple[float, float] | None = None
  log_y: bool = False  # losses span orders of magnitude


@dataclasses.dataclass(frozen=True)
class Layout:
  """Pixel layout of the report (figures are saved at 100 dpi, so 1 inch = 100 px)."""

  width: int = 1300
  curves_height: int = 300
  row_height: int = 92
  frame_size: int = 80
  text_width: int = 260
  bars_width: int = 300
  margin: int = 10

  def size(self, rows: int) -> tuple[int, int]:
    """(width, height) in pixels of a report with `rows` example rows (frames shrink to fit the width)."""
    return self.width, self.curves_height + rows * self.row_height + self.margin

  def frame_box(self, row: int, frame: int, frames: int) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) pixels of a row's frame, counted from the top-left corner."""
    room = self.width - self.text_width - self.bars_width - 3 * self.margin
    side = min(self.frame_size, room // frames - 2)
    left = self.text_width + self.margin + frame * (side + 2)
    top = self.curves_height + row * self.row_height + (self.row_height - side) // 2
    return left, top, left + side, top + side


def pick_examples(predictions: Predictions, section: str, count: int) -> list[ExampleRow]:
  """`count` videos of distinct classes spread over the class list, up to half of them mistakes (if the
  model makes any), so the picture also shows where it fails; then other videos if classes run out."""
  probabilities, labels, names = predictions.probabilities, predictions.labels, predictions.class_names
  predicted = probabilities.argmax(-1)
  chosen: list[int] = []
  for i in range(len(labels)):  # mistakes first, one per class
    if predicted[i] != labels[i] and labels[i] not in labels[chosen] and len(chosen) < count // 2:
      chosen.append(i)
  remaining = count - len(chosen)
  for target in np.linspace(0, len(names) - 1, num=max(remaining, 1)):
    unseen = [i for i in range(len(labels)) if labels[i] not in labels[chosen]]
    if unseen and len(chosen) < count:
      chosen.append(min(unseen, key=lambda i: (abs(labels[i] - target), labels[i], i)))
  chosen += [i for i in range(len(labels)) if i not in chosen][:count - len(chosen)]
  rows = []
  for i in sorted(chosen, key=lambda i: (labels[i], i)):
    top = np.argsort(-probabilities[i], kind="stable")[:3]
    true = names[labels[i]] if labels[i] >= 0 else "(failed to decode)"
    rows.append(ExampleRow(section, os.path.basename(predictions.names[i]), predictions.frames[i], true,
                           [(names[k], float(probabilities[i, k])) for k in top]))
  return rows


@contextlib.contextmanager
def _local_events(logdir: str | os.PathLike):
  """`logdir` itself, or a local folder with the event files of a bucket logdir (not its checkpoints)."""
  if not storage.is_remote(logdir):
    yield logdir
    return
  with tempfile.TemporaryDirectory(prefix="xclip_jax_events-") as folder:
    for event_file in storage.path(logdir).glob("events.out.tfevents.*"):
      (pathlib.Path(folder) / event_file.name).write_bytes(event_file.read_bytes())
    yield folder


def read_scalars(logdir: str | os.PathLike, tags: Sequence[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """(steps, values) of scalar `tags` from the TensorBoard event files in `logdir` (missing tags: empty).

  A bucket logdir is read from a local copy of its event files (TensorBoard's reader would use TF's gfile).
  """
  from tensorboard.backend.event_processing import event_accumulator
  from tensorboard.util import tensor_util

  with _local_events(logdir) as local:
    accumulator = event_accumulator.EventAccumulator(os.fspath(local), size_guidance={"tensors": 0, "scalars": 0})
    accumulator.Reload()
  available = accumulator.Tags()
  out = {}
  for tag in tags:
    if tag in available.get("tensors", []):
      events = [(e.step, float(tensor_util.make_ndarray(e.tensor_proto))) for e in accumulator.Tensors(tag)]
    elif tag in available.get("scalars", []):
      events = [(e.step, float(e.value)) for e in accumulator.Scalars(tag)]
    else:
      events = []
    events = sorted(dict(events).items())  # one value per step (a resumed run may repeat steps)
    out[tag] = (np.array([s for s, _ in events], np.int64), np.array([v for _, v in events], np.float64))
  return out


def write_report(path: str | os.PathLike, rows: Sequence[ExampleRow], panels: Sequence[Panel], *, title: str,
                 layout: Layout = Layout()) -> epath.Path:
  """Draws the report (see the module docstring) as a PNG, written atomically; returns its path."""
  from matplotlib.figure import Figure  # no pyplot: no global backend or figure state is touched

  frames = max((len(r.frames) for r in rows), default=1)
  width, height = layout.size(len(rows))
  figure = Figure(figsize=(width / 100, height / 100), dpi=100)

  def axes(left: float, top: float, w: float, h: float):
    """Axes placed in pixels from the top-left corner."""
    return figure.add_axes((left / width, 1 - (top + h) / height, w / width, h / height))

  figure.text(layout.margin / width, 1 - 8 / height, title, fontsize=12, weight="bold", va="top")
  gap = 80
  panel_w = (width - 2 * layout.margin - gap * len(panels)) / max(len(panels), 1)
  for k, panel in enumerate(panels):
    ax = axes(layout.margin + gap + k * (panel_w + gap), 60, panel_w, layout.curves_height - 115)
    for curve in panel.curves:
      if len(curve.steps):
        style = "o-" if len(curve.steps) < 30 else "-"
        ax.plot(curve.steps, curve.values, style, label=curve.label, markersize=4, linewidth=1.2)
    ax.set_title(panel.title, fontsize=10)
    ax.set_xlabel("step", fontsize=9)
    ax.set_ylabel(panel.ylabel, fontsize=9)
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.3)
    if panel.log_y and any(len(c.values) and (c.values > 0).all() for c in panel.curves):
      ax.set_yscale("log")
    if panel.ylim:
      ax.set_ylim(*panel.ylim)
    if sum(1 for c in panel.curves if len(c.steps)) > 1:
      ax.legend(fontsize=8, loc="lower right")

  for i, row in enumerate(rows):
    top = layout.curves_height + i * layout.row_height
    colour = "#1a7f37" if row.correct else "#cf222e"
    figure.text(layout.margin / width, 1 - (top + 14) / height,
                f"{row.section}\ntrue: {row.true_class}\n{row.name}", fontsize=8, va="top", linespacing=1.4)
    for j, frame in enumerate(row.frames):
      left, box_top, right, _ = layout.frame_box(i, j, frames)
      ax = axes(left, box_top, right - left, right - left)
      ax.imshow(frame, interpolation="nearest")
      ax.set_axis_off()
    bars = axes(width - layout.bars_width - layout.margin + 150, top + 12, layout.bars_width - 160,
                layout.row_height - 24)
    labels = [c for c, _ in row.top][::-1]
    values = [p for _, p in row.top][::-1]
    colours = ["#8c959f"] * (len(values) - 1) + [colour]
    bars.barh(range(len(values)), values, color=colours, height=0.7)
    bars.set_yticks(range(len(values)), labels, fontsize=8)
    bars.set_xlim(0, 1)
    bars.tick_params(axis="x", labelsize=7)
    for y, p in enumerate(values):
      bars.text(min(p, 0.75) + 0.02, y, f"{p:.0%}", va="center", fontsize=7)
  path = storage.path(path)
  storage.mkdir(path.parent)
  with storage.staged_file(path, suffix=".png") as staging:  # renamed, or uploaded as one object
    figure.savefig(staging, dpi=100)
  return path

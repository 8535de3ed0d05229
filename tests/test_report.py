"""The demo's report: TensorBoard curves read back, example choice, and the picture's layout in pixels."""

from __future__ import annotations

import numpy as np
from PIL import Image

from xclip_jax.evaluation import report
from xclip_jax.evaluation.evaluator import Predictions
from xclip_jax.training import metrics


def test_read_scalars_returns_what_the_trainer_writer_wrote(tmp_path):
  writer = metrics.create_writer(tmp_path)
  for step in (5, 10, 15):
    writer.write_scalars(step, {"loss": 3.0 / step, "lr/new": 1e-3})
  writer.write_scalars(10, {"eval/top1": 42.5})
  writer.flush()
  curves = report.read_scalars(tmp_path, ("loss", "eval/top1", "missing"))
  np.testing.assert_array_equal(curves["loss"][0], [5, 10, 15])
  np.testing.assert_allclose(curves["loss"][1], [0.6, 0.3, 0.2], rtol=1e-6)
  np.testing.assert_array_equal(curves["eval/top1"][0], [10])
  np.testing.assert_allclose(curves["eval/top1"][1], [42.5])
  assert len(curves["missing"][0]) == 0


def _predictions(probabilities: np.ndarray, labels: np.ndarray) -> Predictions:
  n, k = probabilities.shape
  frames = np.zeros((n, 2, 4, 4, 3), np.uint8)
  return Predictions(probabilities, labels, frames, [f"/data/v{i}.mp4" for i in range(n)], [f"c{j}" for j in range(k)])


def test_pick_examples_shows_mistakes_first_then_spread_distinct_classes():
  labels = np.repeat(np.arange(8), 2)  # 16 videos, 8 classes
  probabilities = np.eye(8)[labels] * 0.9 + 0.1 / 8
  probabilities[5] = np.eye(8)[0] * 0.9 + 0.1 / 8  # video 5 (class 2) predicted as class 0: a mistake
  rows = report.pick_examples(_predictions(probabilities, labels), "supervised", 4)
  assert [r.true_class for r in rows] == ["c0", "c2", "c3", "c7"]  # the mistake's class, then 0, 3.5, 7
  assert [r.correct for r in rows] == [True, False, True, True]
  assert [r.name for r in rows] == ["v0.mp4", "v5.mp4", "v6.mp4", "v14.mp4"]
  wrong = rows[1]
  assert wrong.top[0][0] == "c0" and wrong.top[0][1] > wrong.top[1][1] >= wrong.top[2][1]
  # Fewer videos than rows: every video once.
  assert len(report.pick_examples(_predictions(probabilities[:3], labels[:3]), "zero-shot", 6)) == 3


def test_report_layout_rows_and_frames_in_their_pixel_boxes(tmp_path):
  rng = np.random.default_rng(0)
  rows = []
  for i in range(5):  # each frame one flat colour, so the box it lands in can be checked exactly
    colours = rng.integers(0, 256, (8, 3))
    frames = np.broadcast_to(colours[:, None, None, :], (8, 32, 32, 3)).astype(np.uint8)
    rows.append(report.ExampleRow("supervised" if i < 3 else "zero-shot", f"v{i}.mp4", frames, "square moving up",
                                  [("square moving up", 0.7), ("square moving down", 0.2), ("circle growing", 0.1)]))
  curve = report.Curve("loss", np.arange(1, 11), np.linspace(3, 1, 10))
  layout = report.Layout()
  path = report.write_report(tmp_path / "r.png", rows, [report.Panel("training", "loss", [curve])], title="t",
                             layout=layout)
  image = np.asarray(Image.open(path).convert("RGB"))
  assert (image.shape[1], image.shape[0]) == layout.size(len(rows))
  assert layout.size(6)[1] - layout.size(5)[1] == layout.row_height
  for i, row in enumerate(rows):
    for j in range(8):
      left, top, right, bottom = layout.frame_box(i, j, 8)
      inner = image[top + 2:bottom - 2, left + 2:right - 2].reshape(-1, 3).astype(int)
      np.testing.assert_allclose(inner.mean(0), row.frames[j, 0, 0], atol=2, err_msg=f"row {i} frame {j}")
  assert not list(tmp_path.glob(".*tmp*"))  # written through a temporary file, then renamed

"""The notebook's library pieces outside it: throughput timing, device description and the figures."""

from __future__ import annotations

import io

import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

import xclip_jax
from tests import data_fixtures
from xclip_jax.evaluation import labelled_videos, plots, throughput, video_files
from xclip_jax.models.config import variant_config
from xclip_jax.models.xclip import create_model


@pytest.fixture(scope="module")
def model():
  return xclip_jax.InferenceModel(create_model(variant_config("tiny", frames=4, vision_layers=1, text_layers=1)))


def _png(figure: Figure) -> Image.Image:
  buffer = io.BytesIO()
  figure.savefig(buffer, format="png", dpi=50)
  return Image.open(io.BytesIO(buffer.getvalue()))


def test_measure_throughput(model):
  result = throughput.measure_throughput(model, batch_size=3, repetitions=4, warmup=1, classes=5)
  assert len(result.seconds) == 4 and all(s > 0 for s in result.seconds) and result.first_call_seconds > 0
  assert result.clips_per_second == pytest.approx(3 / np.median(result.seconds))
  low, high = result.clips_per_second_range
  assert low <= result.clips_per_second <= high
  assert (result.batch_size, result.frames, result.image_size, result.classes) == (3, 4, 32, 5)
  assert result.device == "cpu" and "clips/s" in str(result) and "4 calls" in str(result)
  with pytest.raises(ValueError, match="batch_size, repetitions, classes >= 1"):
    throughput.measure_throughput(model, batch_size=0)


def test_describe_devices():
  rows = throughput.describe_devices()
  assert len(rows) == 8 and {r["platform"] for r in rows} == {"cpu"}  # conftest's 8 simulated devices
  assert throughput.format_devices(rows).splitlines()[0] == "8 device(s), platform cpu:"


@pytest.fixture(scope="module")
def report(model, tmp_path_factory):
  root = tmp_path_factory.mktemp("plots")
  rng = np.random.default_rng(0)
  for name in ("circle growing", "square shrinking", "cross moving up"):
    for k in range(2):
      data_fixtures.write_video(str(root / name.replace(" ", "_") / f"{k}.mp4"),
                                rng.integers(0, 256, (8, 36, 48, 3), np.uint8))
  data_fixtures.write_corrupt(str(root / "circle_growing" / "broken.mp4"))
  dataset = labelled_videos.labelled_set(root)
  return labelled_videos.evaluate_labelled_set(model, dataset, progress=False)


def test_figures(report):
  frames = video_files.sampled_frames(report.videos[0], 6, clips=2, short_side=40)
  assert _png(plots.frame_grid(frames)).size[0] > _png(plots.frame_grid(frames[:, :3])).size[0]
  assert _png(plots.frame_grid(frames[0], title="one clip")).size[1] < _png(plots.frame_grid(frames)).size[1]
  bars = plots.probability_bars(report.class_names, report.predictions[1].probabilities, top=2)
  assert len(bars.axes[0].patches) == 2
  assert len(plots.per_class_accuracy(report).axes[0].patches) == 3
  confusion = plots.confusion_matrix(report)
  assert np.array_equal(confusion.axes[0].images[0].get_array().sum(axis=1), [1, 1, 1])  # rows: fractions
  assert np.array_equal(plots.confusion_matrix(report, normalize=False).axes[0].images[0].get_array(),
                        report.confusion)
  worst = plots.worst_videos(report, n=2, frames=5)
  assert len(worst.subfigs) == 2 and all(len(s.axes) == 5 for s in worst.subfigs)
  for figure in (bars, confusion, worst):
    assert _png(figure).size[0] > 100


def test_figure_input_errors(report):
  with pytest.raises(ValueError, match=r"frames must be \(T, H, W, 3\) or \(rows, T, H, W, 3\)"):
    plots.frame_grid(np.zeros((4, 8, 8), np.uint8))
  with pytest.raises(ValueError, match="3 class names but probabilities of shape"):
    plots.probability_bars(report.class_names, np.ones(4) / 4)
  failed = labelled_videos.metrics([video_files.VideoPrediction("x.mp4", error="cannot open")], np.array([0]), ["a"])
  assert plots.worst_videos(failed) is None

"""Labelled sets as the notebook opens them: readable class names, subsets over classes, one-string specs, and
a TFDS split (tfds.testing.mock_data) evaluated like a folder, with its videos read only when classified."""

from __future__ import annotations

import numpy as np
import pytest

import xclip_jax
from tests import data_fixtures
from xclip_jax.data import labels, sources
from xclip_jax.evaluation import labelled_videos, video_files
from xclip_jax.models.config import variant_config
from xclip_jax.models.xclip import create_model


@pytest.fixture(scope="module")
def model():
  config = variant_config("tiny", frames=4, vision_layers=1, text_layers=1)
  return xclip_jax.InferenceModel(create_model(config, seed=0))


@pytest.mark.parametrize("name, words", [
    ("ApplyEyeMakeup", "apply eye makeup"), ("YoYo", "yo yo"), ("HandstandPushups", "handstand pushups"),
    ("playing_guitar", "playing guitar"), ("HTTPServer", "http server"), ("archery", "archery"),
    ("passing American football (in game)", "passing American football (in game)"), ("kick_ball ", "kick ball"),
])
def test_readable_class_name(name, words):
  assert labels.readable_class_name(name) == words


def test_readable_names_of_the_shipped_lists():
  """UCF-101's CamelCase names become lower-case words of the same letters; word lists stay as they are."""
  ucf = labels.read_class_names("ucf_101")
  readable = [labels.readable_class_name(n) for n in ucf]
  assert len(set(readable)) == 101
  for name, words in zip(ucf, readable, strict=True):
    assert words.replace(" ", "") == name.lower() and words == words.lower() and "  " not in words
    assert len(words.split()) == sum(c.isupper() for c in name)  # one word per capital: no acronyms in UCF-101
  for shipped in ("kinetics_400", "kinetics_600", "hmdb_51"):
    names = labels.read_class_names(shipped)
    assert [labels.readable_class_name(n) for n in names] == names


def _folder_set(root, per_class):
  rng = np.random.default_rng(0)
  for name, count in per_class.items():
    for k in range(count):
      data_fixtures.write_video(str(root / name / f"{k}.mp4"), rng.integers(0, 256, (8, 32, 32, 3), np.uint8))
  return root


def test_folder_set_with_readable_names_and_subsets(tmp_path):
  root = _folder_set(tmp_path / "set", {"ApplyEyeMakeup": 3, "BabyCrawling": 1, "Archery": 2})
  plain = labelled_videos.labelled_set(root)
  assert plain.class_names == ["ApplyEyeMakeup", "Archery", "BabyCrawling"]
  readable = labelled_videos.labelled_set(root, readable_names=True)
  assert readable.class_names == ["apply eye makeup", "archery", "baby crawling"]
  assert readable.videos == plain.videos and readable.labels.tolist() == [0, 0, 0, 1, 1, 2]
  # Matched to the shipped list by spelling, then made readable: ids are the list's.
  official = labelled_videos.labelled_set(root, class_csv="ucf_101", readable_names=True)
  assert len(official.class_names) == 101 and official.class_names[3] == "baby crawling"
  assert official.labels.tolist() == [0, 0, 0, 2, 2, 3]
  # Subsets take every class in turn, keeping the set's order.
  assert readable.subset(3).labels.tolist() == [0, 1, 2]
  assert readable.subset(4).videos == [plain.videos[i] for i in (0, 1, 3, 5)]
  assert readable.subset(None) is readable and readable.subset(100) is readable
  with pytest.raises(ValueError, match="max_videos must be >= 1"):
    readable.subset(0)


def test_readable_names_that_clash_are_an_error(tmp_path):
  root = _folder_set(tmp_path / "set", {"TaiChi": 1, "tai_chi": 1})
  with pytest.raises(labels.LabelFileError, match=r"readable class names would clash: \['tai chi'\]"):
    labelled_videos.labelled_set(root, readable_names=True)


def test_open_set_specs(tmp_path):
  root = _folder_set(tmp_path / "set", {"a": 2, "b": 2})
  assert labelled_videos.open_set(root, max_videos=2).labels.tolist() == [0, 1]
  assert len(labelled_videos.open_set(str(root))) == 4
  with pytest.raises(ValueError, match="tfds:<name>:<split>"):
    labelled_videos.open_set("tfds:ucf101")
  with pytest.raises(video_files.VideoInputError, match="nowhere: no such folder"):
    labelled_videos.open_set(tmp_path / "nowhere")


def test_tfds_split_evaluates_like_a_folder(model):
  import tensorflow_datasets as tfds

  with tfds.testing.mock_data(num_examples=5, policy=tfds.testing.MockPolicy.USE_CODE):
    dataset = labelled_videos.open_set("tfds:ucf101/ucf101_1_256:test", readable_names=True)
    raw = sources.TfdsSource("ucf101/ucf101_1_256", "test")
    assert dataset.class_names[:2] == ["apply eye makeup", "apply lipstick"] and len(dataset.class_names) == 101
    assert dataset.labels.tolist() == [raw[i].label for i in range(5)]  # labels read without the frames
    assert [str(v) for v in dataset.videos] == [f"ucf101/ucf101_1_256[test]#{i}" for i in range(5)]
    frames = video_files.sampled_frames(dataset.videos[1], 4, clips=2, short_side=64)
    assert frames.shape == (2, 4, 64, 64, 3) and frames.dtype == np.uint8
    report = labelled_videos.evaluate_labelled_set(model, dataset, clips=2, crops=3, batch_size=2, workers=2,
                                                   progress=False)
  assert report.failures == [] and report.views == "2x3" and len(report.predictions) == 5
  best = np.array([np.argmax(p.probabilities) for p in report.predictions])
  assert report.top1 == pytest.approx(100 * np.mean(best == dataset.labels))
  assert report.confusion.sum() == 5 and report.videos == dataset.videos
  assert [row["path"] for row in report.worst(5)] == [str(dataset.videos[row["index"]]) for row in report.worst(5)]


def test_tfds_ucf101_ids_agree_with_the_shipped_ucf_list():
  import tensorflow_datasets as tfds

  with tfds.testing.mock_data(num_examples=3, policy=tfds.testing.MockPolicy.USE_CODE):
    tfds_names = labelled_videos.tfds_labelled_set("ucf101/ucf101_1_256", "train")
    official = labelled_videos.tfds_labelled_set("ucf101/ucf101_1_256", "train", class_csv="ucf_101")
  assert tfds_names.class_names == official.class_names == labels.read_class_names("ucf_101")
  assert tfds_names.labels.tolist() == official.labels.tolist()

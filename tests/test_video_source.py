"""The data-source interface (xclip_jax.data.video_source): a registry of kinds that the pipeline reads any
registered source through, and one K-shot wrapper for every source, TFDS included."""

from __future__ import annotations

import numpy as np
import pytest

from tests import data_fixtures
from xclip_jax.data import config, labels, pipeline, sources, video_source


class ListedVideos(video_source.VideoSource):
  """A source of one's own: video files named in a Python list (what a user registers)."""

  def __init__(self, paths, class_ids, class_names):
    self.paths, self.class_ids, self.class_names = list(paths), list(class_ids), list(class_names)

  def __len__(self):
    return len(self.paths)

  def __getitem__(self, i):
    return sources.VideoFile(label=self.class_ids[i], index=int(i), name=self.paths[i], path=self.paths[i])

  def name(self, i):
    return self.paths[i]

  def labels(self):
    return np.asarray(self.class_ids, np.int64)


def test_a_registered_source_is_read_by_the_pipeline_and_k_shot_draws_from_it(tmp_path):
  paths = [data_fixtures.write_index_video(str(tmp_path / f"v{i}.mp4"), 12, height=32, width=32) for i in range(6)]
  seen = []

  def factory(cfg, split):
    seen.append(split)
    return ListedVideos(paths, [0, 1, 0, 1, 0, 1], ["even", "odd"])

  video_source.register_source("listed", factory)
  try:
    with pytest.raises(ValueError, match="kind 'listed' is registered already"):
      video_source.register_source("listed", factory)
    cfg = config.data_config(source="listed", num_frames=4, input_size=32, batch_size=2, eval_batch_size=3,
                             num_workers=0)
    batch = next(pipeline.make_eval_iterator(cfg, process_index=0, process_count=1))
    assert batch["video"].shape == (3, 1, 4, 32, 32, 3) and batch["label"].tolist() == [0, 1, 0]
    cfg.k_shot, cfg.k_shot_seed = 2, 5
    drawn = video_source.make_source(cfg, "train")
    assert isinstance(drawn, video_source.SubsetSource) and np.bincount(drawn.labels()).tolist() == [2, 2]
    want = labels.k_shot_subset([labels.VideoRecord(p, c, i) for i, (p, c) in enumerate(zip(
        paths, [0, 1, 0, 1, 0, 1], strict=True))], 2, 5)
    assert [drawn.name(i) for i in range(4)] == [r.path for r in want]
    assert [drawn[i].index for i in range(4)] == [0, 1, 2, 3]  # re-indexed, as the pipeline counts them
    assert [set(drawn.host_indices(p, 2).tolist()) for p in range(2)] == [{0, 2}, {1, 3}]  # strided anew
    train = next(pipeline.make_train_iterator(cfg, process_index=0, process_count=1))
    assert train["video"].shape == (2, 4, 32, 32, 3)
    assert seen == ["val", "train", "train"]
    cfg.k_shot = 4
    with pytest.raises(ValueError, match="data.k_shot=4: class 0 has 3 videos, fewer than k=4"):
      video_source.make_source(cfg, "train")
  finally:
    video_source.unregister_source("listed")
  with pytest.raises(ValueError, match="data.source must be one of .*'frames'.*, got 'listed'"):
    config.data_config(source="listed")


def test_k_shot_works_for_tfds():
  import tensorflow_datasets as tfds

  with tfds.testing.mock_data(num_examples=12, policy=tfds.testing.MockPolicy.USE_CODE):
    cfg = config.data_config(source="tfds", tfds_name="ucf101/ucf101_1_256", class_names="ucf_101", num_frames=4,
                             input_size=32, batch_size=2, num_workers=0, k_shot=1, k_shot_seed=7)
    full = sources.TfdsSource("ucf101/ucf101_1_256", "train", class_names=labels.read_class_names("ucf_101"))
    drawn = video_source.make_source(cfg, "train")
    classes = np.unique(full.labels())
    assert len(drawn) == len(classes) and sorted(drawn.labels().tolist()) == classes.tolist()
    expected = labels.k_shot_positions(full.labels(), 1, 7)
    assert [drawn.name(i) for i in range(len(drawn))] == [full.name(int(p)) for p in expected]
    assert drawn[0].label == full[int(expected[0])].label and drawn[0].index == 0
    batch = next(pipeline.make_train_iterator(cfg, process_index=0, process_count=1))
    assert batch["video"].shape == (2, 4, 32, 32, 3) and set(batch["label"].tolist()) <= set(classes.tolist())

"""The one view builder (xclip_jax.data.views): which frames, seeded by the file name, resize and crops; the
same views from a path, from a data source's item and from main's evaluation pipeline."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from tests import data_fixtures
from xclip_jax.data import config, pipeline, sampling, sources, transforms, views


@pytest.fixture(scope="module")
def index_videos(tmp_path_factory):
  """Two 40-frame videos whose frames encode their index, in a label list, and a copy of one elsewhere."""
  root = tmp_path_factory.mktemp("views")
  for name in ("a.mp4", "b.mp4"):
    data_fixtures.write_index_video(str(root / "clips" / name), 40, height=48, width=64)
  (root / "list.txt").write_text("clips/a.mp4 0\nclips/b.mp4 1\n")
  (root / "classes.csv").write_text("id,name\n0,first\n1,second\n")
  os.makedirs(root / "elsewhere")
  shutil.copy(root / "clips" / "a.mp4", root / "elsewhere" / "a.mp4")
  return root


def test_clips_are_a_function_of_the_file_name_and_the_sampling():
  spec = views.ViewSpec(frames=8, size=32, clips=4)
  here, there = spec.frame_indices(100, "/data/x/v_Archery_g01.avi"), spec.frame_indices(100, "v_Archery_g01.avi")
  np.testing.assert_array_equal(here, there)  # the last path component seeds the clips
  assert not np.array_equal(here, spec.frame_indices(100, "v_Archery_g02.avi"))
  assert here.shape == (4, 8) and (np.diff(here, axis=1) > 0).all()  # official: one frame per segment, per clip
  uniform = views.ViewSpec(frames=8, size=32, clips=4, multiview_sampling="uniform")
  np.testing.assert_array_equal(uniform.frame_indices(100, "a.mp4"), uniform.frame_indices(100, "b.mp4"))
  np.testing.assert_array_equal(uniform.frame_indices(100, "a.mp4"), sampling.multiview_indices(
      100, 8, 4, mode="segment", multiview="uniform", rng=None))
  one = views.ViewSpec(frames=8, size=32)
  np.testing.assert_array_equal(one.frame_indices(100, "a.mp4")[0], sampling.segment_test(100, 8))
  assert spec.count == 4 and views.ViewSpec(frames=8, size=224, crops=3).decode_short_side == 224
  assert one.short_side == transforms.official_short_side(32) == 36
  for bad, field in (({"crops": 2}, "crops=2"), ({"clips": 0}, "clips=0"), ({"multiview_sampling": "random"},
                                                                            "'random'")):
    with pytest.raises(ValueError, match=f"views: .*{field}"):
      views.ViewSpec(frames=8, size=32, **bad)


def test_a_path_an_item_and_main_pipeline_give_the_same_views(index_videos):
  spec = views.ViewSpec(frames=4, size=32, clips=3, crops=3)
  path = str(index_videos / "clips" / "a.mp4")
  from_path = views.read_views(path, spec)
  assert from_path.shape == (9, 4, 32, 32, 3) and from_path.dtype == np.uint8
  want = spec.frame_indices(40, "a.mp4")
  for clip in range(3):  # crop-major: views 0..2 are the clips of the first crop
    assert [data_fixtures.decoded_index(f) for f in from_path[clip]] == want[clip].tolist()
  np.testing.assert_array_equal(views.read_views(str(index_videos / "elsewhere" / "a.mp4"), spec), from_path)
  source = sources.FileSource.from_list(str(index_videos / "list.txt"), str(index_videos),
                                        str(index_videos / "classes.csv"))
  np.testing.assert_array_equal(views.read_views(source[0], spec), from_path)
  cfg = config.data_config(source="files", root=str(index_videos), train_list=str(index_videos / "list.txt"),
                           val_list=str(index_videos / "list.txt"), class_names=str(index_videos / "classes.csv"),
                           num_frames=4, input_size=32, eval_batch_size=2, num_workers=0)
  batch = next(pipeline.make_eval_iterator(cfg, clips=3, crops=3, process_index=0, process_count=1))
  np.testing.assert_array_equal(batch["video"][0], from_path)
  np.testing.assert_array_equal(batch["video"][1], views.read_views(str(index_videos / "clips" / "b.mp4"), spec))
  chosen = np.array([[0, 10, 20, 30], [1, 2, 3, 4], [39, 38, 37, 36]])
  given = views.read_views(path, spec, indices=chosen)
  assert [[data_fixtures.decoded_index(f) for f in clip] for clip in given[:3]] == chosen.tolist()
  frames = np.stack([data_fixtures.index_frame(i, 48, 64) for i in chosen.reshape(-1)])
  assert spec.views(frames).shape == (9, 4, 32, 32, 3)  # frames from elsewhere (any size) -> views
  with pytest.raises(ValueError, match="views: 4 frames given, 3 clips x 4 wanted"):
    spec.views(frames[:4])

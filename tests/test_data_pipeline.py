"""grain pipelines on real files: shapes, determinism, resume, bad videos, evaluation views, ArrayRecord, TFDS."""

import multiprocessing
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from tests import data_fixtures as F
from xclip_jax.data import bad_videos, config, labels, pipeline, sources, synthetic, video_source

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def syn_dir(tmp_path_factory):
  d = str(tmp_path_factory.mktemp("syn") / "data")
  synthetic.generate(d, seed=1, size=32, frames=8, train_per_class=3, val_per_class=1, zero_shot_per_class=1,
                     few_shot_train_per_class=2, quiet=True)
  return d


def _cfg(syn_dir, **kw):
  base = dict(source="synthetic", synthetic_dir=syn_dir, num_frames=4, input_size=32, resize_short=32,
              batch_size=8, eval_batch_size=6, num_workers=0, seed=5)
  base.update(kw)
  return config.data_config(**base)


def _take(it, n):
  return [next(it) for _ in range(n)]


def test_train_batches_shapes_and_dtypes(syn_dir):
  it = pipeline.make_train_iterator(_cfg(syn_dir), process_index=0, process_count=1)
  b = next(it)
  assert set(b) == {"video", "label", "index"}
  assert b["video"].shape == (8, 4, 32, 32, 3) and b["video"].dtype == np.uint8
  assert b["label"].dtype == np.int32 and b["index"].dtype == np.int32
  src = it.source
  for label, index in zip(b["label"], b["index"], strict=True):
    assert src.records[index].label == label


def test_same_order_for_same_seed_with_worker_processes(syn_dir):
  # 48 training videos, batch 8: 12 batches = 2 epochs.
  a = _take(pipeline.make_train_iterator(_cfg(syn_dir, num_workers=2), process_index=0, process_count=1), 12)
  b = _take(pipeline.make_train_iterator(_cfg(syn_dir, num_workers=0), process_index=0, process_count=1), 12)
  for x, y in zip(a, b, strict=True):  # Same seed: same videos, same augmentation, whatever the number of workers.
    np.testing.assert_array_equal(x["index"], y["index"])
    np.testing.assert_array_equal(x["video"], y["video"])
  epoch1 = np.concatenate([x["index"] for x in a[:6]])
  epoch2 = np.concatenate([x["index"] for x in a[6:]])
  assert sorted(epoch1) == sorted(epoch2) == list(range(48))  # Every video once per epoch ...
  assert not np.array_equal(epoch1, epoch2)  # ... re-shuffled each epoch.
  c = _take(pipeline.make_train_iterator(_cfg(syn_dir, seed=6), process_index=0, process_count=1), 2)
  assert not np.array_equal(np.concatenate([x["index"] for x in c]), epoch1[:16])


def test_iterator_state_gives_exact_resume(syn_dir):
  # In-process decoding keeps this fast; the state is grain's index state either way (workers: see above).
  cfg = _cfg(syn_dir, num_workers=0)
  it = pipeline.make_train_iterator(cfg, process_index=0, process_count=1)
  _take(it, 3)
  state = it.get_state()
  expected = _take(it, 3)
  fresh = pipeline.make_train_iterator(cfg, process_index=0, process_count=1)
  fresh.set_state(state)
  for x, y in zip(expected, _take(fresh, 3), strict=True):
    np.testing.assert_array_equal(x["index"], y["index"])
    np.testing.assert_array_equal(x["video"], y["video"])


def test_orbax_checkpoint_of_the_iterator(syn_dir, tmp_path):
  import grain
  import orbax.checkpoint as ocp

  cfg = _cfg(syn_dir)
  it = pipeline.make_train_iterator(cfg, process_index=0, process_count=1)
  _take(it, 2)
  with ocp.CheckpointManager(str(tmp_path / "ckpt"), item_names=("data",)) as mngr:
    mngr.save(2, args=ocp.args.Composite(data=grain.checkpoint.CheckpointSave(it)))
    mngr.wait_until_finished()
    expected = next(it)
    fresh = pipeline.make_train_iterator(cfg, process_index=0, process_count=1)
    mngr.restore(2, args=ocp.args.Composite(data=grain.checkpoint.CheckpointRestore(fresh)))
  np.testing.assert_array_equal(next(fresh)["index"], expected["index"])


def _bad_dataset(root):
  list_path, csv_path, records = F.make_file_dataset(root, num_classes=2, per_class=4, num_frames=10)
  F.write_corrupt(records[1].path)
  F.write_truncated(records[6].path, records[6].path + ".tmp", keep=0.3)
  os.replace(records[6].path + ".tmp", records[6].path)
  os.remove(records[3].path)
  return list_path, csv_path, {records[1].index, records[3].index, records[6].index}


def test_bad_videos_are_replaced_counted_and_logged(tmp_path, caplog):
  list_path, csv_path, bad = _bad_dataset(str(tmp_path / "d"))
  log_file = str(tmp_path / "bad.tsv")
  cfg = config.data_config(source="files", root=str(tmp_path / "d"), train_list=list_path, val_list=list_path,
                           class_names=csv_path, num_frames=4, input_size=32, batch_size=4, num_workers=0,
                           bad_video_log=log_file, seed=0)
  it = pipeline.make_train_iterator(cfg, process_index=0, process_count=1)
  batches = _take(it, 6)  # 3 epochs of 8 videos.
  seen = set(np.concatenate([b["index"] for b in batches]).tolist())
  assert not seen & bad  # Never yielded ...
  assert it.bad_videos >= 6  # ... but counted (each epoch meets them again).
  rows = bad_videos.read_log(log_file)  # One row per file, its count and error.
  missing = os.path.join(str(tmp_path / "d"), "videos/c0/v3.mp4")
  assert len(rows) == 3 and rows[missing][1] == "file not found"
  assert sum(count for count, _ in rows.values()) == it.bad_videos
  assert {name for _, name in it.recent_bad} >= {missing}
  assert it.get_state()["bad_videos"] == it.bad_videos


_ONE_LINE_PER_FILE = """
import sys
from absl import app
from xclip_jax.data import config, pipeline

def main(argv):
  root, list_path, csv_path, log_file, steps = argv[1:]
  cfg = config.data_config(source="files", root=root, train_list=list_path, val_list=list_path, class_names=csv_path,
                           num_frames=4, input_size=32, batch_size=4, eval_batch_size=4, num_workers=1,
                           bad_video_log=log_file, seed=0)
  it = pipeline.make_train_iterator(cfg, process_index=0, process_count=1)
  for _ in range(int(steps)):
    next(it)
  it.close()
  evaluation = pipeline.make_eval_iterator(cfg, process_index=0, process_count=1)
  list(evaluation)
  evaluation.close()
  print("BAD_VIDEOS", it.bad_videos, len(evaluation.decode_failures))

if __name__ == "__main__":
  app.run(main)
"""


def test_one_console_line_and_one_log_row_per_file(tmp_path):
  # The real set-up of `xclip_jax.main`: absl logging, decoding in a grain worker process, then evaluation.
  root = str(tmp_path / "d")
  list_path, csv_path, bad = _bad_dataset(root)
  records = labels.read_label_list(list_path, root)
  cut = records[5].path  # A download cut off after its header: used, from the frames that decode.
  F.write_video(cut, np.stack([F.index_frame(i, 48, 64) for i in range(60)]), faststart=True, bframes=False)
  F.write_truncated(cut, cut + ".tmp", keep=0.8)
  os.replace(cut + ".tmp", cut)
  script = tmp_path / "run.py"
  script.write_text(_ONE_LINE_PER_FILE)
  log_file = str(tmp_path / "bad.tsv")
  env = dict(os.environ, PYTHONPATH=REPO)
  counts = []
  for _ in range(2):  # The second run (a resumed one) counts on in the same rows.
    proc = subprocess.run([sys.executable, str(script), root, list_path, csv_path, log_file, "6"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    replaced, failed = map(int, proc.stdout.split("BAD_VIDEOS")[1].split())
    assert failed == 3 and replaced >= 6
    for path in [records[i].path for i in bad] + [cut]:
      lines = [line for line in proc.stderr.splitlines() if path in line]
      assert len(lines) == 1, (path, lines)  # Once, though met in every epoch and again in evaluation.
    rows = bad_videos.read_log(log_file)
    assert sorted(rows) == sorted([records[i].path for i in bad] + [cut])
    assert rows[cut][1].startswith("cut off: container says 60 frames, only the first")
    counts.append(sum(rows[records[i].path][0] for i in bad))
    assert counts[-1] == sum(counts[:-1]) + replaced + failed
  with open(log_file) as f:
    assert f.readline() == "path\tcount\terror\n"


def test_eval_counts_every_video_once_and_reports_failures(tmp_path):
  list_path, csv_path, bad = _bad_dataset(str(tmp_path / "d"))
  cfg = config.data_config(source="files", root=str(tmp_path / "d"), train_list=list_path, val_list=list_path,
                           class_names=csv_path, num_frames=4, input_size=32, eval_batch_size=3, num_workers=2)
  it = pipeline.make_eval_iterator(cfg, clips=2, crops=3, process_index=0, process_count=1)
  batches = list(it)
  assert len(batches) == len(it) == 3  # 8 videos in batches of 3: the last batch has one padding row.
  b = batches[0]
  assert b["video"].shape == (3, 6, 4, 32, 32, 3) and b["valid"].dtype == bool and b["decode_ok"].dtype == bool
  valid = np.concatenate([x["valid"] for x in batches])
  index = np.concatenate([x["index"] for x in batches])
  ok = np.concatenate([x["decode_ok"] for x in batches])
  assert valid.sum() == 8 and sorted(index[valid]) == list(range(8))
  assert set(index[valid & ~ok]) == bad  # Failed videos stay in the denominator, flagged.
  assert sorted(i for i, _ in it.decode_failures) == sorted(bad)
  # Views of a good video: T frames from an index video are increasing, same frames across the 3 crops.
  good = int(np.flatnonzero(valid & ok)[0])
  video = np.concatenate([x["video"] for x in batches])[good]
  for crop in range(3):
    np.testing.assert_array_equal(video[crop * 2], video[0])  # Crops of a flat frame are identical.


def test_evaluation_batches_are_the_same_in_workers_and_a_one_batch_pass_starts_none(syn_dir):
  """Passes of several batches are built in worker processes, a pass of one in this process (a worker would
  build that one batch alone after seconds of start-up): the batches are the same either way."""
  def pass_of(**kw):
    it = pipeline.make_eval_iterator(_cfg(syn_dir, **kw), clips=2, process_index=0, process_count=1)
    first = next(it)
    workers = len(multiprocessing.active_children())
    rest = list(it)
    it.close()
    return [first, *rest], workers

  in_workers, workers = pass_of(num_workers=2)  # 16 val videos, batches of 6: 3 batches
  in_process, _ = pass_of(num_workers=0)
  assert len(in_workers) == len(in_process) == 3 and workers == 2
  one_batch, workers = pass_of(num_workers=2, eval_batch_size=16)
  assert len(one_batch) == 1 and workers == 0
  for name in one_batch[0]:
    stacked = np.concatenate([b[name] for b in in_workers])
    np.testing.assert_array_equal(stacked, np.concatenate([b[name] for b in in_process]))
    np.testing.assert_array_equal(stacked[:16], one_batch[0][name][:16])


def test_global_batch_on_a_mesh(syn_dir):
  it = pipeline.make_train_iterator(_cfg(syn_dir), process_index=0, process_count=1)
  mesh = jax.make_mesh((4, 2), ("data", "model"), axis_types=(jax.sharding.AxisType.Auto,) * 2)
  g = pipeline.global_batch(next(it), mesh)
  assert g["video"].shape == (8, 4, 32, 32, 3) and g["video"].dtype == np.uint8
  assert g["video"].sharding.spec[0] in ("data", ("data",))
  assert len(g["label"].addressable_shards) == 8


def test_arrayrecord_round_trip(syn_dir, tmp_path):
  out = str(tmp_path / "ar")
  cmd = [sys.executable, os.path.join(REPO, "scripts", "build_arrayrecord.py"), "--list",
         os.path.join(syn_dir, "supervised", "val.txt"), "--root", syn_dir, "--classes",
         os.path.join(syn_dir, "supervised", "classes.csv"), "--out", out, "--prefix", "val", "--num-shards", "3"]
  done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
  assert done.returncode == 0, done.stderr
  again = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
  assert again.returncode == 1 and "not empty" in again.stderr  # Refuses to overwrite.
  ar_src = sources.ArrayRecordSource.from_pattern(os.path.join(out, "val-*.array_record"))
  file_src = video_source.make_source(_cfg(syn_dir), "val")
  assert len(ar_src) == len(file_src) == 16 and ar_src.class_names == file_src.class_names
  for i in (0, 7, 15):
    a, b = ar_src[i], file_src[i]
    assert (a.label, a.index) == (b.label, b.index) and a.name == os.path.relpath(b.name, syn_dir)
    with open(b.path, "rb") as f:
      assert a.data == f.read()  # Bytes unchanged.
  cfg = _cfg(syn_dir, source="arrayrecord", arrayrecord={"val": os.path.join(out, "val-*.array_record")},
             num_workers=2, eval_batch_size=16)
  ar = next(pipeline.make_eval_iterator(cfg, process_index=0, process_count=1))
  fl = next(pipeline.make_eval_iterator(_cfg(syn_dir, eval_batch_size=16), process_index=0, process_count=1))
  np.testing.assert_array_equal(ar["video"], fl["video"])
  np.testing.assert_array_equal(ar["label"], fl["label"])
  # Shard-level host split: disjoint and complete.
  parts = [set(ar_src.host_indices(p, 2).tolist()) for p in range(2)]
  assert not parts[0] & parts[1] and parts[0] | parts[1] == set(range(16))


def test_tfds_mock_ucf101_through_grain(tmp_path):
  import tensorflow_datasets as tfds

  with tfds.testing.mock_data(num_examples=6, policy=tfds.testing.MockPolicy.USE_CODE):
    for split in ("train", "test"):
      src = sources.TfdsSource("ucf101/ucf101_1_256", split)
      assert len(src) == 6 and len(src.class_names) == 101
    cfg = config.data_config(source="tfds", tfds_name="ucf101/ucf101_1_256", class_names="ucf_101", num_frames=4,
                             input_size=64, batch_size=3, eval_batch_size=4, num_workers=0)
    b = next(pipeline.make_train_iterator(cfg, process_index=0, process_count=1))
    assert b["video"].shape == (3, 4, 64, 64, 3) and b["video"].dtype == np.uint8
    assert ((b["label"] >= 0) & (b["label"] < 101)).all()
    ev = list(pipeline.make_eval_iterator(cfg, process_index=0, process_count=1))
    assert sum(int(x["valid"].sum()) for x in ev) == 6 and all(x["decode_ok"][x["valid"]].all() for x in ev)
    # Label ids follow the class CSV, matched by name: identity for the shipped UCF list (same order as
    # TFDS), a permutation for a CSV in another order.
    names = labels.read_class_names("ucf_101")
    assert sources.TfdsSource("ucf101/ucf101_1_256", "train", class_names=names)._remap.tolist() == list(range(101))
    reordered = sources.TfdsSource("ucf101/ucf101_1_256", "train", class_names=names[::-1])
    assert reordered._remap.tolist() == list(range(100, -1, -1))
    raw, mapped = sources.TfdsSource("ucf101/ucf101_1_256", "train"), reordered
    assert [mapped[i].label for i in range(6)] == [100 - raw[i].label for i in range(6)]


def test_a_shrunk_pass_spreads_over_the_classes():
  """The first video of every class (in list order), then the second of every class, ...: the same each time;
  evenly spaced where the labels would mean reading the videos (ArrayRecord)."""
  records = [labels.VideoRecord(f"v{i}.mp4", label, i) for i, label in enumerate([0, 0, 0, 1, 1, 2, 2, 2, 2])]
  source = sources.FileSource(records, ["a", "b", "c"])

  def chosen(count: int) -> list[str]:
    spread = video_source.spread_over_classes(source, count)
    return [spread.name(i) for i in range(len(spread))]

  assert chosen(3) == ["v0.mp4", "v3.mp4", "v5.mp4"]
  assert chosen(5) == ["v0.mp4", "v1.mp4", "v3.mp4", "v4.mp4", "v5.mp4"]
  assert chosen(2) == ["v0.mp4", "v3.mp4"]
  assert video_source.spread_over_classes(source, -1) is source
  assert video_source.spread_over_classes(source, 9) is source
  source.labels_read_videos = True
  assert chosen(3) == ["v0.mp4", "v4.mp4", "v8.mp4"]

"""Label lists, class CSVs (shipped and user), protocol helpers, official split readers."""

import os

import pytest

from xclip_jax.data import labels


@pytest.mark.parametrize("name,count,first", [("kinetics_400", 400, "abseiling"), ("kinetics_600", 600, "abseiling"),
                                              ("hmdb_51", 51, "brush hair"), ("ucf_101", 101, "ApplyEyeMakeup")])
def test_shipped_class_csvs(name, count, first):
  names = labels.read_class_names(name)
  assert len(names) == count and len(set(names)) == count
  assert names[0] == first
  with open(labels.builtin_class_csv(name), encoding="utf-8") as f:
    assert f.readline().strip() == "id,name"


def test_shipped_orders_follow_the_official_files():
  # Official K400/K600 lists are sorted; UCF-101 is case-insensitively sorted (classInd order), unlike TFDS.
  for name in ("kinetics_400", "kinetics_600"):
    names = labels.read_class_names(name)
    assert names == sorted(names)
  ucf = labels.read_class_names("ucf_101")
  assert ucf == sorted(ucf, key=str.lower) and ucf.index("Hammering") < ucf.index("HammerThrow")
  hmdb = labels.read_class_names("hmdb_51")
  assert hmdb.index("kick ball") == hmdb.index("kick") - 1


def test_kinetics600_new_classes_220_and_the_ambiguous_221st():
  new = labels.kinetics600_new_classes()
  with_ambiguous = labels.kinetics600_new_classes(include_ambiguous=True)
  assert len(new) == 220 and len(with_ambiguous) == 221
  assert set(with_ambiguous) - set(new) == {"skiing mono"}
  k400 = {n.lower() for n in labels.read_class_names("kinetics_400")}
  assert not any(n.lower() in k400 for n in new)
  # Renamed K400 classes are not "new"; case-only differences are not either.
  assert "dyeing hair" not in new and "passing american football (not in game)" not in new
  subsets = labels.kinetics600_zero_shot_subsets(seed=7)
  assert [len(s) for s in subsets] == [160, 160, 160]
  assert all(set(s) <= set(new) for s in subsets) and subsets[0] != subsets[1]
  assert subsets == labels.kinetics600_zero_shot_subsets(seed=7)


def _write(path, text):
  with open(path, "w", encoding="utf-8") as f:
    f.write(text)
  return str(path)


def test_read_label_list_and_errors_name_file_and_line(tmp_path):
  good = _write(tmp_path / "ok.txt", "a/x 1.mp4 0\n\nb/y.mp4 2\n")
  recs = labels.read_label_list(good, "/root", num_classes=3)
  assert [(r.path, r.label, r.index) for r in recs] == [("/root/a/x 1.mp4", 0, 0), ("/root/b/y.mp4", 2, 1)]
  bad_label = _write(tmp_path / "bad.txt", "a.mp4 0\nb.mp4 five\n")
  with pytest.raises(labels.LabelFileError, match=r"bad.txt:2: label 'five'"):
    labels.read_label_list(bad_label)
  out_of_range = _write(tmp_path / "range.txt", "a.mp4 0\nb.mp4 3\n")
  with pytest.raises(labels.LabelFileError, match=r"range.txt:2: label id 3 outside the class list \[0, 3\)"):
    labels.read_label_list(out_of_range, num_classes=3)
  one_field = _write(tmp_path / "one.txt", "lonely\n")
  with pytest.raises(labels.LabelFileError, match=r"one.txt:1: expected '<relative path> <label id>'"):
    labels.read_label_list(one_field)
  with pytest.raises(labels.LabelFileError, match="not found"):
    labels.read_label_list(str(tmp_path / "missing.txt"))


def test_class_csv_errors(tmp_path):
  assert labels.read_class_names(_write(tmp_path / "c.csv", 'id,name\n0,a\n1,"b, c"\n')) == ["a", "b, c"]
  with pytest.raises(labels.LabelFileError, match=r"h.csv:1: expected the header"):
    labels.read_class_names(_write(tmp_path / "h.csv", "0,a\n"))
  with pytest.raises(labels.LabelFileError, match=r"gap.csv:3: id 2 should be 1"):
    labels.read_class_names(_write(tmp_path / "gap.csv", "id,name\n0,a\n2,b\n"))
  with pytest.raises(labels.LabelFileError, match="duplicate"):
    labels.read_class_names(_write(tmp_path / "dup.csv", "id,name\n0,a\n1,a\n"))


def test_k_shot_subset_is_seeded_and_balanced():
  recs = [labels.VideoRecord(f"v{i}", i % 3, i) for i in range(30)]
  a = labels.k_shot_subset(recs, 4, seed=1)
  assert len(a) == 12 and sorted(r.label for r in a) == [0] * 4 + [1] * 4 + [2] * 4
  assert [r.index for r in a] == list(range(12))  # Re-indexed.
  assert [r.path for r in a] == [r.path for r in labels.k_shot_subset(recs, 4, seed=1)]
  assert [r.path for r in a] != [r.path for r in labels.k_shot_subset(recs, 4, seed=2)]
  with pytest.raises(ValueError, match="fewer than k=11"):
    labels.k_shot_subset(recs, 11, seed=0)


def test_ucf101_split_reader(tmp_path):
  _write(tmp_path / "trainlist01.txt", "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\n"
         "HandstandPushups/v_HandStandPushups_g08_c01.avi 37\n")
  _write(tmp_path / "testlist01.txt", "YoYo/v_YoYo_g01_c01.avi\n")
  train = labels.ucf101_split(str(tmp_path), 1, "train", root="/ucf")
  names = labels.read_class_names("ucf_101")
  assert [names[r.label] for r in train] == ["ApplyEyeMakeup", "HandstandPushups"]
  assert train[0].path == "/ucf/ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi"
  assert [names[r.label] for r in labels.ucf101_split(str(tmp_path), 1, "test")] == ["YoYo"]
  _write(tmp_path / "testlist02.txt", "NotAClass/v_x.avi\n")
  with pytest.raises(labels.LabelFileError, match=r"testlist02.txt:1: class 'NotAClass'"):
    labels.ucf101_split(str(tmp_path), 2, "test")


def test_hmdb51_split_reader(tmp_path):
  names = labels.read_class_names("hmdb_51")
  for n in names:
    folder = n.replace(" ", "_")
    _write(tmp_path / f"{folder}_test_split2.txt", f"{folder}_a.avi 1 \n{folder}_b.avi 2 \n{folder}_c.avi 0 \n")
  train = labels.hmdb51_split(str(tmp_path), 2, "train")
  test = labels.hmdb51_split(str(tmp_path), 2, "test", root="/h")
  assert len(train) == len(test) == 51
  assert {names[r.label] for r in test} == set(names)
  kick = [r for r in test if names[r.label] == "kick ball"][0]
  assert kick.path == os.path.join("/h", "kick_ball", "kick_ball_b.avi")
  _write(tmp_path / "brush_hair_test_split2.txt", "x.avi 7\n")
  with pytest.raises(labels.LabelFileError, match=r"brush_hair_test_split2.txt:1"):
    labels.hmdb51_split(str(tmp_path), 2, "train")

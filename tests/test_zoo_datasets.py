"""Sample data sets by name (xclip_jax.zoo.sample_dataset): an archive in an HF dataset repo, offline from
huggingface_hub's cache (its own layout, HF_HUB_OFFLINE=1), extracted once and atomically, unsafe members
refused.

The by-name calls run in fresh interpreters because huggingface_hub reads HF_HOME and HF_HUB_OFFLINE when it
is imported.
"""

from __future__ import annotations

import io
import os
import pathlib
import subprocess
import sys
import tarfile

import numpy as np
import pytest

from tests import data_fixtures
from tests.zoo_fixtures import REPO_ROOT, add_hf_repo, files_under, run_python
from xclip_jax.zoo import cache, datasets
from xclip_jax.zoo.errors import ZooError

COMMIT = "e" * 40
CLASSES = ("ApplyEyeMakeup", "ApplyLipstick", "Archery")  # UCF-101's folder spelling


def _ucf_like_archive(root: pathlib.Path) -> bytes:
  """UCF101_subset/{train,test}/<Class>/*.avi, as the real archive is laid out, tar.gz-compressed."""
  tree = root / "tree"
  rng = np.random.default_rng(0)
  for split, per_class in (("train", 1), ("test", 2)):
    for name in CLASSES:
      for k in range(per_class):
        data_fixtures.write_video(str(tree / "UCF101_subset" / split / name / f"v_{name}_g0{k}_c01.avi"),
                                  rng.integers(0, 256, (10, 32, 40, 3), np.uint8))
  buffer = io.BytesIO()
  with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
    archive.add(tree / "UCF101_subset", arcname="UCF101_subset")
  return buffer.getvalue()


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
  root = tmp_path_factory.mktemp("datasets")
  archive = _ucf_like_archive(root)
  add_hf_repo(root / "hf" / "hub", "sayakpaul/ucf101-subset", {COMMIT: {"UCF101_subset.tar.gz": archive}},
              {"main": COMMIT}, repo_type="dataset")
  return {"root": root, "archive": archive,
          "env": {"HF_HOME": str(root / "hf"), "HF_HUB_OFFLINE": "1", cache.CACHE_VARIABLE: str(root / "cache")}}


def test_sample_dataset_downloads_extracts_once_and_evaluates_as_a_labelled_set(hub):
  code = """
import json, os, pathlib
from xclip_jax import zoo
from xclip_jax.evaluation import labelled_videos
first = zoo.sample_dataset("ucf101-subset", progress=False)
marker = first / "test" / "ApplyEyeMakeup" / "kept.txt"
marker.write_text("extracted once")
second = zoo.sample_dataset("ucf101-subset", progress=False)   # not extracted again: the marker stays
readable = labelled_videos.open_set("sample:ucf101-subset/test", readable_names=True)
official = labelled_videos.open_set("sample:ucf101-subset/test", class_csv="ucf_101", max_videos=3)
print(json.dumps({"first": str(first), "second": str(second), "marker": marker.exists(),
                  "readable": readable.class_names, "labels": readable.labels.tolist(), "videos": len(readable),
                  "official_names": len(official.class_names), "official_labels": official.labels.tolist(),
                  "official_videos": [pathlib.Path(v).name for v in official.videos]}))
"""
  out = run_python(code, hub["env"])
  expected = pathlib.Path(hub["env"][cache.CACHE_VARIABLE]) / "datasets" / f"ucf101-subset-{COMMIT[:12]}" / \
      "UCF101_subset"
  assert out["first"] == out["second"] == str(expected) and out["marker"]
  assert out["readable"] == ["apply eye makeup", "apply lipstick", "archery"]
  assert out["labels"] == [0, 0, 1, 1, 2, 2] and out["videos"] == 6
  # The folders' spelling is the shipped ucf_101 list's: they match its ids (101 names to choose from), and
  # a limit takes one video of each class first.
  assert out["official_names"] == 101 and out["official_labels"] == [0, 1, 2]
  assert out["official_videos"] == [f"v_{name}_g00_c01.avi" for name in CLASSES]
  assert [p.name for p in expected.parent.parent.iterdir()] == [expected.parent.name]  # no staging left over


def test_missing_from_the_offline_cache_says_how_to_bring_it(tmp_path):
  env = {"HF_HOME": str(tmp_path / "empty"), "HF_HUB_OFFLINE": "1", cache.CACHE_VARIABLE: str(tmp_path / "cache")}
  code = """
import json
from xclip_jax import zoo
try:
  zoo.sample_dataset("ucf101-subset", progress=False)
except zoo.ZooError as error:
  print(json.dumps({"type": type(error).__name__, "message": str(error)}))
"""
  out = run_python(code, env)
  assert out["type"] == "DownloadError"
  assert "sayakpaul/ucf101-subset" in out["message"] and "HF_HUB_OFFLINE is set" in out["message"]
  assert "hf download sayakpaul/ucf101-subset --repo-type dataset" in out["message"]
  assert files_under(tmp_path / "cache") == []


def test_unknown_sample_dataset_lists_the_names():
  with pytest.raises(ZooError, match="Unknown sample data set 'ucf-101'; choose one of ucf101-subset"):
    datasets.sample_dataset("ucf-101")


def _tar(members: dict[str, bytes], *, link: tuple[str, str] | None = None) -> bytes:
  buffer = io.BytesIO()
  with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
    for name, data in members.items():
      info = tarfile.TarInfo(name)
      info.size = len(data)
      archive.addfile(info, io.BytesIO(data))
    if link is not None:
      info = tarfile.TarInfo(link[0])
      info.type, info.linkname = tarfile.SYMTYPE, link[1]
      archive.addfile(info)
  return buffer.getvalue()


@pytest.mark.parametrize("members, link, refused", [
    ({"data/a.txt": b"a", "../escaped.txt": b"x"}, None, "../escaped.txt"),
    ({"data/a.txt": b"a"}, ("data/link", "../../outside"), "data/link"),
])
def test_members_outside_the_folder_are_refused_and_nothing_is_left(tmp_path, members, link, refused):
  archive = tmp_path / "evil.tar.gz"
  archive.write_bytes(_tar(members, link=link))
  output = tmp_path / "out" / "data-set"
  with pytest.raises(ZooError, match=f"evil.tar.gz: refusing to extract member '{refused}'"):
    datasets.extract_archive(archive, output, progress=False)
  assert files_under(tmp_path / "out") == [] and not (tmp_path / "escaped.txt").exists()


def test_absolute_member_paths_stay_inside_the_folder(tmp_path):
  target = tmp_path / "absolute.txt"
  archive = tmp_path / "absolute.tar.gz"
  archive.write_bytes(_tar({"data/a.txt": b"a", str(target): b"x"}))
  output = tmp_path / "out"
  datasets.extract_archive(archive, output, progress=False)
  assert not target.exists() and (output / str(target).lstrip("/")).read_bytes() == b"x"


def test_a_corrupt_archive_is_an_error_naming_it_and_nothing_is_left(tmp_path):
  good = _tar({f"data/{i}.bin": bytes(np.random.default_rng(i).integers(0, 256, 5000, np.uint8)) for i in range(4)})
  archive = tmp_path / "cut.tar.gz"
  archive.write_bytes(good[: len(good) // 2])  # an interrupted download
  output = tmp_path / "out" / "data-set"
  with pytest.raises(ZooError, match="cut.tar.gz: cannot extract it .* may be corrupt"):
    datasets.extract_archive(archive, output, progress=False)
  assert files_under(tmp_path / "out") == []
  (tmp_path / "whole.tar.gz").write_bytes(good)
  assert datasets.extract_archive(tmp_path / "whole.tar.gz", output, progress=False) == output
  assert files_under(output) == [f"data/{i}.bin" for i in range(4)]



def test_dataset_command_copies_the_set_to_a_folder(hub, tmp_path):
  """`python -m xclip_jax.zoo dataset ucf101-subset --out my_videos`: the quick start's first command."""
  env = {**os.environ, "JAX_PLATFORMS": "cpu", **hub["env"]}
  command = [sys.executable, "-m", "xclip_jax.zoo", "dataset", "ucf101-subset", "--quiet"]
  out = tmp_path / "my_videos"
  first = subprocess.run([*command, "--out", str(out)], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                         timeout=120, check=False)
  assert first.returncode == 0, first.stderr
  assert f"ucf101-subset: {out} (a copy of " in first.stdout
  assert "train/: 3 videos in 3 class folders" in first.stdout and "test/: 6 videos in 3 class folders" in first.stdout
  assert sorted(p.name for p in (out / "test").iterdir()) == list(CLASSES)
  assert (out / "train" / "Archery" / "v_Archery_g00_c01.avi").stat().st_size > 0
  again = subprocess.run([*command, "--out", str(out)], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                         timeout=120, check=False)
  assert again.returncode == 1 and f"--out: {out} already exists and is not empty" in again.stderr
  where = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
  assert where.returncode == 0 and f"ucf101-subset-{COMMIT[:12]}/UCF101_subset" in where.stdout

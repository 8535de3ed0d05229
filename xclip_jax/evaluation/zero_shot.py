"""Evaluation rounds of the zero-shot protocols (paper §4.3) and the few-shot split (paper §4.4).

Each round is a data block that evaluates one split or class subset:
- HMDB-51 / UCF-101: the three official test splits (label lists written from the official split files, or
  TFDS's ucf101_{1,2,3}_256 configs); report mean ± std of top-1.
- Kinetics-600: 3 seeded draws of 160 of the 220 classes new to Kinetics-400, each evaluated with only its
  160 class names; report mean ± std of top-1 and top-5.
"""

from __future__ import annotations

import os

import ml_collections

from xclip_jax import storage
from xclip_jax.data import labels
from xclip_jax.run_config import ConfigError

DATASETS = ("hmdb51", "ucf101", "k600")
CLASS_LISTS = {"hmdb51": "hmdb_51", "ucf101": "ucf_101", "k600": "kinetics_600"}


def _split_records(dataset: str, split_dir: str, split: int, subset: str) -> list[labels.VideoRecord]:
  reader = {"hmdb51": labels.hmdb51_split, "ucf101": labels.ucf101_split}[dataset]
  return reader(split_dir, split, subset)


def _files_block(data: ml_collections.ConfigDict, val_list: str, class_names: str) -> ml_collections.ConfigDict:
  block = data.copy_and_resolve_references()
  block.source, block.val_list, block.class_names, block.k_shot = "files", val_list, class_names, 0
  return block


def zero_shot_rounds(config: ml_collections.ConfigDict, workdir: str | os.PathLike
                     ) -> list[tuple[str, ml_collections.ConfigDict]]:
  """(name, data block) per evaluation round; writes the label lists it needs under workdir/zero_shot."""
  zs = config.zero_shot
  if zs.dataset not in DATASETS:
    raise ConfigError(f"config.zero_shot.dataset must be one of {DATASETS}, got {zs.dataset!r}")
  out = storage.mkdir(storage.path(workdir) / "zero_shot")
  rounds = []
  if zs.dataset == "k600":
    if not zs.k600_val_list:
      raise ConfigError("config.zero_shot.k600_val_list: the Kinetics-600 validation list (official format, "
                        "K600 label ids) is required for the K600 zero-shot protocol.")
    all_names = labels.read_class_names(CLASS_LISTS["k600"])
    records = labels.read_label_list(zs.k600_val_list, num_classes=len(all_names))
    subsets = labels.kinetics600_zero_shot_subsets(int(zs.seed), num_rounds=int(zs.rounds),
                                                   num_classes=int(zs.k600_classes))
    for index, names in enumerate(subsets, start=1):
      csv_path, list_path = out / f"k600_round{index}_classes.csv", out / f"k600_round{index}.txt"
      labels.write_class_names(names, str(csv_path))
      labels.write_label_list(labels.restrict_to_classes(records, all_names, names), str(list_path))
      rounds.append((f"k600 round {index} ({len(names)} classes)", _files_block(config.data, str(list_path),
                                                                                 str(csv_path))))
    return rounds
  for split in zs.splits:
    if zs.source == "tfds":
      if zs.dataset != "ucf101":
        raise ConfigError("TFDS has UCF-101 but not HMDB-51; use config.zero_shot.source='files' for hmdb51.")
      block = config.data.copy_and_resolve_references()
      block.source, block.tfds_name, block.class_names = "tfds", f"ucf101/ucf101_{split}_256", CLASS_LISTS["ucf101"]
      block.tfds_split = ml_collections.ConfigDict({"train": "train", "val": "test"})
    else:
      if not zs.split_dir:
        raise ConfigError(f"config.zero_shot.split_dir: the folder of the official {zs.dataset} split files is "
                          f"required (or use source='tfds' for ucf101).")
      list_path = out / f"{zs.dataset}_split{split}_test.txt"
      labels.write_label_list(_split_records(zs.dataset, zs.split_dir, int(split), "test"), str(list_path))
      block = _files_block(config.data, str(list_path), CLASS_LISTS[zs.dataset])
    rounds.append((f"{zs.dataset} split {split}", block))
  return rounds


def few_shot_lists(config: ml_collections.ConfigDict, workdir: str | os.PathLike) -> ml_collections.ConfigDict:
  """The data block of the few-shot protocol: train/test lists of split 1 from the official split files
  (folders: data.k_shot videos per class of data.root/train, see `xclip_jax.data.folders`)."""
  data = config.data.copy_and_resolve_references()
  if data.source == "folders":
    if int(data.k_shot) <= 0:
      raise ConfigError("the few_shot protocol over folders needs data.k_shot > 0 (videos per class of train/)")
    return data
  fs = config.few_shot
  if not fs.split_dir:
    return data  # the config names train_list / val_list itself
  out = storage.mkdir(storage.path(workdir) / "few_shot")
  for subset, key in (("train", "train_list"), ("test", "val_list")):
    path = out / f"{fs.dataset}_split{fs.split}_{subset}.txt"
    labels.write_label_list(_split_records(fs.dataset, fs.split_dir, int(fs.split), subset), str(path))
    data[key] = str(path)
  data.source, data.class_names = "files", CLASS_LISTS[fs.dataset]
  return data

"""Folders of class sub-folders, the layout video tutorials use: the one walker for training and evaluation.

    my_videos/train/<class>/*.mp4     layout = read_layout("my_videos", readable_names=True)
    my_videos/val/<class>/*.mp4       layout.class_names   # union of the splits' classes, sorted by folder name
    my_videos/test/<class>/*.mp4      layout.records("train"), layout.has("val"), layout.classes_without("train")
    class_folders("my_videos/test")   # one folder of classes: {folder name: [video paths]}

The training source (`data.source="folders"`, built by `folder_source`) and the evaluation side's
`labelled_videos.labelled_set` both read folders through `class_folders`, so a folder means the same set of
videos and classes to both. A class is a sub-folder holding videos (searched recursively); its name is the
folder's, with underscores as spaces, or as words with `readable_names` ("ApplyEyeMakeup" -> "apply eye
makeup", `labels.readable_class_name`), which a text encoder reads better. A root without train/ val/ test/
can be split per class with a seeded ratio (`split_ratio="0.7,0.15,0.15"`).

Bad layouts are errors naming the folder or file: videos outside any class folder, an empty class folder,
no class folders at all, two folders that would give one class name. Hidden entries (".*", "__MACOSX") are
not classes or videos; other files that are not videos by their extension are listed in `ignored`.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Sequence

import numpy as np
from etils import epath

from xclip_jax import storage
from xclip_jax.data import labels, sources

# Extensions a folder is searched for (lower case); files named explicitly are read whatever their name.
VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".mts", ".m2ts",
                    ".flv", ".wmv", ".3gp", ".ogv", ".gif")
SPLITS = ("train", "val", "test")
_HIDDEN = ("__MACOSX",)


class VideoInputError(ValueError):
  """A folder or file given as input is missing, empty or laid out wrongly; the message names it."""


def _hidden(name: str) -> bool:
  return name.startswith(".") or name in _HIDDEN


def is_video_name(name: str, extensions: Sequence[str] = VIDEO_EXTENSIONS) -> bool:
  """Whether a file name counts as a video in a folder (by its extension; hidden files never)."""
  return not _hidden(name) and any(name.lower().endswith(e) for e in extensions)


def class_name(folder_name: str, readable: bool = False) -> str:
  """The class name of a class folder: underscores as spaces, or as words (`labels.readable_class_name`)."""
  return labels.readable_class_name(folder_name) if readable else folder_name.replace("_", " ").strip()


def _videos_below(folder: epath.Path, extensions: Sequence[str], ignored: list[str]) -> list[str]:
  found = []
  for directory, subfolders, files in folder.walk():
    subfolders[:] = [d for d in subfolders if not _hidden(d)]
    for name in files:
      if is_video_name(name, extensions):
        found.append(str(directory / name))
      elif not _hidden(name):
        ignored.append(str(directory / name))
  return sorted(found)


def class_folders(root: str | epath.PathLike, *, extensions: Sequence[str] = VIDEO_EXTENSIONS,
                  ignored: list[str] | None = None) -> dict[str, list[str]]:
  """{class folder name: its videos (sorted paths, searched recursively)} of a folder of classes, sorted by name.

  Args:
    root: a folder with one sub-folder per class.
    extensions: what counts as a video (lower case, with the dot).
    ignored: if given, files that are not videos by their extension are appended to it.

  Raises:
    VideoInputError: `root` is missing; videos lie directly in `root` (in no class folder); a class folder
      holds no videos; `root` has no class folders; `root` holds train/ val/ test/ instead of classes.
  """
  root = storage.path(root)
  if not root.is_dir():
    raise VideoInputError(f"{root}: no such folder")
  extensions = tuple(e.lower() for e in extensions)
  entries = sorted(root.iterdir(), key=lambda p: p.name)
  loose = [p.name for p in entries if is_video_name(p.name, extensions) and p.is_file()]
  if loose:
    raise VideoInputError(f"{root}: videos {loose[:3]}{' ...' if len(loose) > 3 else ''} are in no class "
                          f"sub-folder (one sub-folder per class expected: {root}/<class name>/<video>)")
  folders = [p for p in entries if not _hidden(p.name) and p.is_dir()]
  if folders and {p.name for p in folders} <= set(SPLITS):
    raise VideoInputError(f"{root}: holds the splits {[p.name for p in folders]}, not class folders; give one "
                          f"split, e.g. {root / folders[-1].name}")
  skipped = [] if ignored is None else ignored
  per_class = {p.name: _videos_below(p, extensions, skipped) for p in folders}
  if not any(per_class.values()):
    raise VideoInputError(f"{root}: no sub-folders with videos (one sub-folder per class expected, holding "
                          f"{', '.join(extensions[:6])}, ... files)")
  empty = [name for name, videos in per_class.items() if not videos]
  if empty:
    raise VideoInputError(f"{root / empty[0]}: empty class folder (no videos in it or below"
                          f"{f'; also empty: {empty[1:4]}' if len(empty) > 1 else ''}); add videos or remove it")
  return per_class


def parse_split_ratio(text: str) -> tuple[float, float, float] | None:
  """'0.7,0.15,0.15' -> fractions of train, val, test (summing to 1); '' -> None."""
  if not str(text).strip():
    return None
  try:
    parts = tuple(float(x) for x in str(text).split(","))
  except ValueError:
    parts = ()
  if len(parts) != 3 or min(parts) < 0 or abs(sum(parts) - 1) > 1e-6:
    raise ValueError(f"data.split_ratio={text!r}: expected three fractions train,val,test that sum to 1, "
                     f"e.g. 0.7,0.15,0.15")
  return parts


def _split_by_ratio(per_class: dict[str, list[str]], ratio: tuple[float, float, float],
                    seed: int) -> dict[str, dict[str, list[str]]]:
  """Each class's videos shuffled (seeded by `seed` and the folder name, so adding a class moves no other
  class's videos) and cut at the cumulative fractions; splits no video falls in are left out."""
  out: dict[str, dict[str, list[str]]] = {s: {} for s in SPLITS}
  for name, videos in per_class.items():
    order = np.random.default_rng([seed, zlib.crc32(name.encode("utf-8"))]).permutation(len(videos))
    cuts = np.round(np.cumsum(ratio)[:2] * len(videos)).astype(int)
    for split, part in zip(SPLITS, np.split(order, cuts), strict=True):
      if len(part):
        out[split][name] = sorted(videos[i] for i in part)
  return {s: classes for s, classes in out.items() if classes}


@dataclasses.dataclass(frozen=True)
class FolderLayout:
  """A root's splits of class folders, with one class list for all splits.

  Attributes:
    root: the folder given.
    folder_names: the class folders (union over splits), sorted; class id = position.
    class_names: the names the model reads, same order (see `class_name`).
    videos: {split: {folder name: video paths}} of the splits present.
    by_ratio: the splits were drawn with a seeded ratio (no train/ val/ test/ folders).
    ignored: files in class folders that are not videos by their extension.
  """

  root: str
  folder_names: list[str]
  class_names: list[str]
  videos: dict[str, dict[str, list[str]]]
  by_ratio: bool = False
  ignored: tuple[str, ...] = ()

  def has(self, split: str) -> bool:
    return split in self.videos

  def folder(self, split: str, folder_name: str | None = None) -> str:
    """Where a split (or one of its class folders) is, or would be, for messages."""
    path = storage.path(self.root) / split if not self.by_ratio else storage.path(self.root)
    return str(path / folder_name) if folder_name else str(path)

  def records(self, split: str) -> list[labels.VideoRecord]:
    """The split's videos with class ids, class by class in class order."""
    if split not in SPLITS:
      raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if not self.has(split):
      where = (f"{self.root}: data.split_ratio gives the {split} split no videos" if self.by_ratio
               else f"{self.folder(split)}: no such folder (the {split} split)")
      raise VideoInputError(where)
    ids = {name: i for i, name in enumerate(self.folder_names)}
    paths = [(path, ids[name]) for name, videos in sorted(self.videos[split].items()) for path in videos]
    return [labels.VideoRecord(path, label, index) for index, (path, label) in enumerate(paths)]

  def classes_without(self, split: str) -> list[str]:
    """Class folders with no videos in `split` (all of them if the split is missing)."""
    have = self.videos.get(split, {})
    return [name for name in self.folder_names if name not in have]


def read_layout(root: str | epath.PathLike, *, readable_names: bool = False, split_ratio: str = "",
                split_seed: int = 0, extensions: Sequence[str] = VIDEO_EXTENSIONS) -> FolderLayout:
  """The splits of `root`: its train/ val/ test/ folders of classes (any may be missing), or, with
  `split_ratio`, its class folders split per class with `split_seed`.

  Raises:
    VideoInputError: a layout problem (see `class_folders`), or neither split folders nor a ratio.
    labels.LabelFileError: two class folders would give the same class name.
  """
  root = storage.path(root)
  if not root.is_dir():
    raise VideoInputError(f"{root}: no such folder")
  ratio = parse_split_ratio(split_ratio)
  present = [s for s in SPLITS if (root / s).is_dir()]
  ignored: list[str] = []
  if present and ratio:
    raise VideoInputError(f"{root}: has {'/, '.join(present)}/ folders, so data.split_ratio={split_ratio!r} has "
                          f"nothing to split; leave it empty to use them")
  if present:
    beside = [p.name for p in sorted(root.iterdir(), key=lambda p: p.name) if not _hidden(p.name)
              and p.name not in SPLITS and (p.is_dir() or is_video_name(p.name, extensions))]
    if beside:
      raise VideoInputError(f"{root / beside[0]}: beside the split folders {'/, '.join(present)}/; class folders "
                            f"and videos go inside them ({root}/train/<class name>/<video>), move or remove "
                            f"{beside[:3]}")
    videos = {s: class_folders(root / s, extensions=extensions, ignored=ignored) for s in present}
  elif ratio:
    videos = _split_by_ratio(class_folders(root, extensions=extensions, ignored=ignored), ratio, split_seed)
  else:
    raise VideoInputError(f"{root}: no train/, val/ or test/ sub-folders. Put the class folders in them "
                          f"({root}/train/<class name>/<video>, ...), or split the class folders of {root} per "
                          f"class with --config.data.split_ratio=0.7,0.15,0.15 (seeded by data.split_seed)")
  folder_names = sorted({name for classes in videos.values() for name in classes})
  names = [class_name(n, readable_names) for n in folder_names]
  if len(set(names)) != len(names):
    clashes = sorted({f"{a} / {b} -> {na!r}" for a, na in zip(folder_names, names, strict=True)
                      for b, nb in zip(folder_names, names, strict=True) if a < b and na == nb})
    raise labels.LabelFileError(f"{root}: class folders that would give the same class name: {clashes}")
  return FolderLayout(str(root), folder_names, names, videos, by_ratio=not present, ignored=tuple(ignored))


def layout_from_config(cfg) -> FolderLayout:
  """The layout a data config block (`data.source="folders"`) describes."""
  if not cfg.root:
    raise ValueError("data.root is empty (source 'folders'): give the folder holding train/, val/, test/")
  return read_layout(cfg.root, readable_names=bool(cfg.readable_names), split_ratio=cfg.split_ratio,
                     split_seed=int(cfg.split_seed))


def folder_source(cfg, split: str):
  """data.source="folders": the `sources.FileSource` of one split of `data.root` (registered in
  `video_source`; K per class with data.k_shot is drawn there, after the check here that names short folders)."""
  layout = layout_from_config(cfg)
  records = layout.records(split)
  if split == "train" and cfg.k_shot > 0:
    short = [(name, len(v)) for name, v in layout.videos["train"].items() if len(v) < cfg.k_shot]
    if short:
      name, count = short[0]
      raise VideoInputError(f"{layout.folder('train', name)}: {count} videos, fewer than data.k_shot={cfg.k_shot}"
                            f"{f' (also short: {[n for n, _ in short[1:4]]})' if len(short) > 1 else ''}")
  return sources.FileSource(records, layout.class_names)

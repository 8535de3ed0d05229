"""The sources of encoded videos: label lists of files on disk, TFDS, ArrayRecord shards, the synthetic set.

Each is a `video_source.VideoSource` (the interface, the registry and the K-shot wrapper are there) and is
registered under its `data.source` kind: "files", "synthetic", "tfds", "arrayrecord" (the factories at the
end). Their items are `VideoFile` (a path), `VideoBytes` (an encoded video file's bytes) and `JpegFrames` (a
video's frames as JPEGs, TFDS). Paths may be gs:// URLs (`xclip_jax.storage`): videos are then read as bytes,
shards by array_record's own GCS reader.

ArrayRecord record layout (written by scripts/build_arrayrecord.py): b"XCLIPV1\\n", a 4-byte little-endian
header length, a UTF-8 JSON header {"label", "index", "path"}, then the video file's bytes unchanged.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import re
from collections.abc import Sequence

import numpy as np

from xclip_jax import storage
from xclip_jax.data import decode, labels
from xclip_jax.data.video_source import EncodedVideo, VideoSource

RECORD_MAGIC = b"XCLIPV1\n"


@dataclasses.dataclass
class VideoFile(EncodedVideo):
  """A video file (a local path or a gs:// URL)."""

  path: str = ""

  @classmethod
  def at(cls, path: str) -> VideoFile:
    """A file that is not an item of a source (no label): what `predict` reads."""
    return cls(label=-1, index=-1, name=path, path=path)

  def load_frames(self, pick, *, backend="pyav", threads=1, short_side=None, min_frames=1, on_warning=None):
    return decode.read_frames(self.path, pick, backend=backend, threads=threads, short_side=short_side,
                              name=self.name, min_frames=min_frames, on_warning=on_warning)


@dataclasses.dataclass
class VideoBytes(EncodedVideo):
  """An encoded video file's bytes (an ArrayRecord record)."""

  data: bytes = b""

  def load_frames(self, pick, *, backend="pyav", threads=1, short_side=None, min_frames=1, on_warning=None):
    return decode.read_frames(self.data, pick, backend=backend, threads=threads, short_side=short_side,
                              name=self.name, min_frames=min_frames, on_warning=on_warning)


@dataclasses.dataclass
class JpegFrames(EncodedVideo):
  """A video as its frames' JPEG bytes (TFDS video features); only the picked frames are decoded."""

  jpegs: list[bytes] = dataclasses.field(default_factory=list)

  def load_frames(self, pick, *, backend="pyav", threads=1, short_side=None, min_frames=1, on_warning=None):
    del backend, threads, on_warning  # PIL decodes JPEGs; a list of frames cannot be cut off
    from PIL import Image

    if len(self.jpegs) < max(min_frames, 1):
      raise decode.VideoDecodeError(self.name, f"too short: {len(self.jpegs)} frames")
    indices = np.asarray(pick(len(self.jpegs)), dtype=np.int64).reshape(-1)
    cache = {}
    try:
      for i in np.unique(indices):
        img = Image.open(io.BytesIO(self.jpegs[int(i)])).convert("RGB")
        if short_side and min(img.size) != short_side:
          scale = short_side / min(img.size)
          img = img.resize((int(img.width * scale + 0.5), int(img.height * scale + 0.5)), Image.BILINEAR)
        cache[int(i)] = np.asarray(img)
    except (OSError, ValueError) as e:
      raise decode.VideoDecodeError(self.name, f"corrupt JPEG frame: {e}") from e
    return np.stack([cache[int(i)] for i in indices]), indices, len(self.jpegs)


def _check_split(split: str, kind: str) -> None:
  if split not in ("train", "val"):
    raise ValueError(f"split must be 'train' or 'val' for data.source={kind!r} (a 'test' split is read from "
                     f"data.source='folders'), got {split!r}")


# ---------------------------------------------------------------------------------------------------------
# Files on disk (official label lists) and the synthetic dataset.


class FileSource(VideoSource):
  """Videos listed in an official label list (`<relative path> <label>`), read from disk by path."""

  def __init__(self, records: Sequence[labels.VideoRecord], class_names: Sequence[str]):
    self.records = list(records)
    self.class_names = list(class_names)

  @classmethod
  def from_list(cls, list_path: str, root: str, class_csv: str) -> FileSource:
    names = labels.read_class_names(class_csv)
    return cls(labels.read_label_list(list_path, root, num_classes=len(names)), names)

  def __len__(self) -> int:
    return len(self.records)

  def __getitem__(self, i: int) -> VideoFile:
    r = self.records[int(i)]
    return VideoFile(label=r.label, index=int(i), name=r.path, path=r.path)

  def name(self, i: int) -> str:
    return self.records[int(i)].path

  def labels(self) -> np.ndarray:
    return np.array([r.label for r in self.records], np.int64)


def synthetic_paths(directory: str, task: str, split: str) -> tuple[str, str]:
  """(label list, class CSV) of a task of the synthetic dataset (layout: see `xclip_jax.data.synthetic`)."""
  lst = os.path.join(directory, task, f"{split}.txt")
  if not storage.path(lst).exists():
    have = sorted(os.path.basename(p) for p in storage.glob(os.path.join(directory, task, "*.txt")))
    raise FileNotFoundError(f"{lst} not found (task {task!r} has {have or 'nothing'}; generate the data with "
                            f"`python -m xclip_jax.data.synthetic --out {directory}`)")
  return lst, os.path.join(directory, task, "classes.csv")


# ---------------------------------------------------------------------------------------------------------
# TFDS (e.g. ucf101), read through tfds.data_source with frames left JPEG-encoded.


def _norm(name: str) -> str:
  return re.sub(r"[\s_]", "", name).lower()


class TfdsSource(VideoSource):
  """A TFDS video dataset through `tfds.data_source` (needs ArrayRecord files, as TFDS >= 4.9 writes).

  Frames stay JPEG bytes (`SkipDecoding`) so only the sampled ones are decoded. If `class_names` is given,
  TFDS label ids are remapped by name to positions in it (for ucf101 with the shipped `ucf_101` CSV the
  mapping is the identity: TFDS uses classInd order too); otherwise the TFDS names and ids are used.
  """

  def __init__(self, name: str, split: str, data_dir: str | None = None, class_names: Sequence[str] | None = None,
               video_key: str = "video", label_key: str = "label"):
    import tensorflow_datasets as tfds

    self._ds = tfds.data_source(name, split=split, data_dir=data_dir,
                                decoders={video_key: tfds.decode.SkipDecoding()})
    self._args = (name, split, data_dir)
    self._video_key, self._label_key = video_key, label_key
    tfds_names = list(self._ds.dataset_info.features[label_key].names)
    self.dataset = f"{name}[{split}]"
    if class_names:
      table = {_norm(n): i for i, n in enumerate(class_names)}
      missing = [n for n in tfds_names if _norm(n) not in table]
      if missing:
        raise labels.LabelFileError(f"TFDS {name} labels not in the class list: {missing[:5]}")
      self._remap = np.array([table[_norm(n)] for n in tfds_names], dtype=np.int64)
      self.class_names = list(class_names)
    else:
      self._remap = np.arange(len(tfds_names), dtype=np.int64)
      self.class_names = tfds_names

  def __len__(self) -> int:
    return len(self._ds)

  def __getitem__(self, i: int) -> JpegFrames:
    ex = self._ds[int(i)]
    return JpegFrames(label=int(self._remap[int(ex[self._label_key])]), index=int(i), name=self.name(i),
                      jpegs=list(ex[self._video_key]))

  def name(self, i: int) -> str:
    return f"{self.dataset}#{int(i)}"

  def labels(self) -> np.ndarray:
    """(N,) label ids of every example (remapped as `[i].label`), parsing only the label feature."""
    import tensorflow_datasets as tfds

    name, split, data_dir = self._args
    only_labels = tfds.data_source(name, split=split, data_dir=data_dir,
                                   decoders=tfds.decode.PartialDecoding({self._label_key: True}))
    return np.array([self._remap[int(only_labels[i][self._label_key])] for i in range(len(only_labels))], np.int64)


# ---------------------------------------------------------------------------------------------------------
# ArrayRecord shards of encoded videos.


def encode_record(video: bytes, label: int, index: int, path: str) -> bytes:
  """Serialises one video for an ArrayRecord shard (layout in the module docstring)."""
  header = json.dumps({"label": int(label), "index": int(index), "path": path}).encode("utf-8")
  return RECORD_MAGIC + len(header).to_bytes(4, "little") + header + video


def decode_record(record: bytes, where: str = "record") -> tuple[dict, bytes]:
  """Inverse of `encode_record`: (header dict, video bytes)."""
  if not record.startswith(RECORD_MAGIC):
    raise ValueError(f"{where}: not an xclip_jax video record (bad magic)")
  n = int.from_bytes(record[len(RECORD_MAGIC):len(RECORD_MAGIC) + 4], "little")
  start = len(RECORD_MAGIC) + 4
  header = json.loads(record[start:start + n].decode("utf-8"))
  return header, record[start + n:]


def shard_paths(pattern: str) -> list[str]:
  """Sorted shard files of a glob pattern (or a comma-separated list of paths)."""
  paths = [p for part in pattern.split(",") for p in storage.glob(part.strip())]
  if not paths:
    raise FileNotFoundError(f"no ArrayRecord shards match {pattern!r}")
  return paths


class ArrayRecordSource(VideoSource):
  """Videos in ArrayRecord shards; hosts read disjoint whole shards (shard k -> host k % process_count)."""

  labels_read_videos = True  # each label is in its record's header

  def __init__(self, paths: Sequence[str], class_names: Sequence[str]):
    from array_record.python import array_record_module

    self.paths = list(paths)
    self.class_names = list(class_names)
    lengths = []
    for p in self.paths:
      reader = array_record_module.ArrayRecordReader(p)
      lengths.append(reader.num_records())
      reader.close()
    self.offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    self._ds = None  # Opened lazily (per process) to keep the object cheap to pickle.

  @classmethod
  def from_pattern(cls, pattern: str, class_csv: str = "") -> ArrayRecordSource:
    paths = shard_paths(pattern)
    if not class_csv:  # build_arrayrecord.py writes the class list next to the shards.
      class_csv = os.path.join(os.path.dirname(paths[0]), "classes.csv")
    return cls(paths, labels.read_class_names(class_csv))

  def __getstate__(self):
    state = dict(self.__dict__)
    state["_ds"] = None
    return state

  def _reader(self):
    if self._ds is None:
      import grain

      self._ds = grain.sources.ArrayRecordDataSource(self.paths)
    return self._ds

  def __len__(self) -> int:
    return int(self.offsets[-1])

  def __getitem__(self, i: int) -> VideoBytes:
    where = self.name(i)
    try:
      header, video = decode_record(self._reader()[int(i)], where)
    except (ValueError, KeyError) as e:
      raise decode.VideoDecodeError(where, f"unreadable record: {e}") from e
    label = int(header["label"])
    if not 0 <= label < len(self.class_names):
      raise labels.LabelFileError(f"{where}: label id {label} outside the class list [0, {len(self.class_names)})")
    return VideoBytes(label=label, index=int(i), name=header.get("path") or where, data=video)

  def name(self, i: int) -> str:
    shard = int(np.searchsorted(self.offsets, int(i), side="right") - 1)
    return f"{self.paths[shard]}#{int(i) - int(self.offsets[shard])}"

  def labels(self) -> np.ndarray:
    """Every record's label, from its header (this reads every record once, videos included)."""
    return np.array([decode_record(self._reader()[i], self.name(i))[0]["label"] for i in range(len(self))], np.int64)

  def shard_of(self) -> tuple[np.ndarray, int, str]:
    shard = np.repeat(np.arange(len(self.paths)), np.diff(self.offsets))
    return shard, len(self.paths), "ArrayRecord shards"


# ---------------------------------------------------------------------------------------------------------


def file_list_source(cfg, split: str) -> FileSource:
  """data.source="files": the official label list of `split` (data.train_list / val_list), paths relative to
  data.root, class names from data.class_names."""
  _check_split(split, "files")
  list_path = cfg.train_list if split == "train" else cfg.val_list
  if not list_path:
    raise ValueError(f"data.{split}_list is empty (source 'files')")
  if not cfg.class_names:
    raise ValueError("data.class_names is empty (source 'files'): give a CSV or a shipped list name")
  return FileSource.from_list(list_path, cfg.root, cfg.class_names)


def synthetic_source(cfg, split: str) -> FileSource:
  """data.source="synthetic": a task of the generated dataset in data.synthetic_dir."""
  _check_split(split, "synthetic")
  list_path, class_csv = synthetic_paths(cfg.synthetic_dir, cfg.synthetic_task, split)
  return FileSource.from_list(list_path, cfg.synthetic_dir, cfg.class_names or class_csv)


def tfds_source(cfg, split: str) -> TfdsSource:
  """data.source="tfds": the TFDS split data.tfds_split[split] of data.tfds_name."""
  _check_split(split, "tfds")
  names = labels.read_class_names(cfg.class_names) if cfg.class_names else None
  return TfdsSource(cfg.tfds_name, cfg.tfds_split[split], cfg.tfds_data_dir or None, names)


def arrayrecord_source(cfg, split: str) -> ArrayRecordSource:
  """data.source="arrayrecord": the shards data.arrayrecord[split] (a glob)."""
  _check_split(split, "arrayrecord")
  pattern = cfg.arrayrecord[split]
  if not pattern:
    raise ValueError(f"data.arrayrecord.{split} is empty (source 'arrayrecord')")
  return ArrayRecordSource.from_pattern(pattern, cfg.class_names)

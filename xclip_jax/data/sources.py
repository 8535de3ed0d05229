"""Random-access sources of encoded videos: files on disk, TFDS, ArrayRecord shards, the synthetic set.

A source is a light, picklable object (it goes to grain worker processes) with:
  `len(src)`, `src[i] -> EncodedVideo` (nothing decoded yet), `src.class_names`, `src.name(i)`,
  `src.host_indices(process_index, process_count)` -> the global indices this host reads (disjoint over
  hosts, together complete: strided records for files/TFDS, whole shards for ArrayRecord).
`load_frames(encoded, pick, ...)` decodes only the sampled frames of any source's item. Paths may be
gs:// URLs (`xclip_jax.storage`): videos are then read as bytes, shards by array_record's own GCS reader.

ArrayRecord record layout (written by scripts/build_arrayrecord.py): b"XCLIPV1\\n", a 4-byte little-endian
header length, a UTF-8 JSON header {"label", "index", "path"}, then the video file's bytes unchanged.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import re
from collections.abc import Callable, Sequence

import numpy as np

from xclip_jax import storage
from xclip_jax.data import decode, labels

RECORD_MAGIC = b"XCLIPV1\n"


@dataclasses.dataclass
class EncodedVideo:
  """One item of a source: how to get its frames, and its label.

  kind: "file" (data = path), "bytes" (data = encoded video file), "jpegs" (data = list of JPEG frames) or
  "frames" (data = where a `frame_shards.FrameShardSource` keeps the video's JPEG frames).
  """

  kind: str
  data: str | bytes | list[bytes]
  label: int
  index: int
  name: str


def load_frames(item: EncodedVideo, pick: Callable[[int], np.ndarray], *, backend: str = "pyav", threads: int = 1,
                short_side: int | None = None, min_frames: int = 1,
                on_warning: Callable[[str], None] | None = None) -> tuple[np.ndarray, np.ndarray, int]:
  """Decodes the frames `pick(num_frames)` chooses; raises `decode.VideoDecodeError` naming the video.

  `on_warning` is told when a cut-off file was sampled from its decodable part (see `decode.read_frames`).
  """
  if item.kind in ("file", "bytes"):
    return decode.read_frames(item.data, pick, backend=backend, threads=threads, short_side=short_side,
                              name=item.name, min_frames=min_frames, on_warning=on_warning)
  if item.kind == "frames":
    from xclip_jax.data import frame_shards

    return frame_shards.load_frames(item, pick, short_side=short_side, min_frames=min_frames)
  if item.kind == "jpegs":
    from PIL import Image

    jpegs = item.data
    if len(jpegs) < max(min_frames, 1):
      raise decode.VideoDecodeError(item.name, f"too short: {len(jpegs)} frames")
    indices = np.asarray(pick(len(jpegs)), dtype=np.int64).reshape(-1)
    cache = {}
    try:
      for i in np.unique(indices):
        img = Image.open(io.BytesIO(jpegs[int(i)])).convert("RGB")
        if short_side and min(img.size) != short_side:
          scale = short_side / min(img.size)
          img = img.resize((int(img.width * scale + 0.5), int(img.height * scale + 0.5)), Image.BILINEAR)
        cache[int(i)] = np.asarray(img)
    except (OSError, ValueError) as e:
      raise decode.VideoDecodeError(item.name, f"corrupt JPEG frame: {e}") from e
    return np.stack([cache[int(i)] for i in indices]), indices, len(jpegs)
  raise ValueError(f"unknown encoded video kind {item.kind!r}")


def _strided(n: int, process_index: int, process_count: int) -> np.ndarray:
  return np.arange(process_index, n, process_count, dtype=np.int64)


# ---------------------------------------------------------------------------------------------------------
# Files on disk (official label lists) and the synthetic dataset.


class FileSource:
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

  def __getitem__(self, i: int) -> EncodedVideo:
    r = self.records[int(i)]
    return EncodedVideo("file", r.path, r.label, int(i), r.path)

  def name(self, i: int) -> str:
    return self.records[int(i)].path

  def host_indices(self, process_index: int, process_count: int) -> np.ndarray:
    return _strided(len(self), process_index, process_count)


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


class TfdsSource:
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

  def __getitem__(self, i: int) -> EncodedVideo:
    ex = self._ds[int(i)]
    frames = ex[self._video_key]
    return EncodedVideo("jpegs", list(frames), int(self._remap[int(ex[self._label_key])]), int(i), self.name(i))

  def name(self, i: int) -> str:
    return f"{self.dataset}#{int(i)}"

  def labels(self) -> np.ndarray:
    """(N,) label ids of every example (remapped as `[i].label`), parsing only the label feature."""
    import tensorflow_datasets as tfds

    name, split, data_dir = self._args
    only_labels = tfds.data_source(name, split=split, data_dir=data_dir,
                                   decoders=tfds.decode.PartialDecoding({self._label_key: True}))
    return np.array([self._remap[int(only_labels[i][self._label_key])] for i in range(len(only_labels))], np.int64)

  def host_indices(self, process_index: int, process_count: int) -> np.ndarray:
    return _strided(len(self), process_index, process_count)


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


class ArrayRecordSource:
  """Videos in ArrayRecord shards; hosts read disjoint whole shards (shard k -> host k % process_count)."""

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

  def __getitem__(self, i: int) -> EncodedVideo:
    where = self.name(i)
    try:
      header, video = decode_record(self._reader()[int(i)], where)
    except (ValueError, KeyError) as e:
      raise decode.VideoDecodeError(where, f"unreadable record: {e}") from e
    label = int(header["label"])
    if not 0 <= label < len(self.class_names):
      raise labels.LabelFileError(f"{where}: label id {label} outside the class list [0, {len(self.class_names)})")
    return EncodedVideo("bytes", video, label, int(i), header.get("path") or where)

  def name(self, i: int) -> str:
    shard = int(np.searchsorted(self.offsets, int(i), side="right") - 1)
    return f"{self.paths[shard]}#{int(i) - int(self.offsets[shard])}"

  def host_indices(self, process_index: int, process_count: int) -> np.ndarray:
    if len(self.paths) < process_count:
      raise ValueError(f"{len(self.paths)} ArrayRecord shards cannot be split over {process_count} processes; "
                       "rebuild with --num-shards >= the number of hosts")
    mine = range(process_index, len(self.paths), process_count)
    return np.concatenate([np.arange(self.offsets[s], self.offsets[s + 1]) for s in mine]).astype(np.int64)


# ---------------------------------------------------------------------------------------------------------


def make_source(cfg, split: str):
  """Builds the source of `split` ("train", "val"; "test" for folders) described by a data config block."""
  if cfg.source == "folders":  # data.root/{train,val,test}/<class>/<videos>
    from xclip_jax.data import folders

    return folders.make_folder_source(cfg, split)
  if split not in ("train", "val"):
    raise ValueError(f"split must be 'train' or 'val' (or 'test' with data.source='folders'), got {split!r}")
  if cfg.source in ("files", "synthetic"):
    if cfg.source == "files":
      list_path = cfg.train_list if split == "train" else cfg.val_list
      if not list_path:
        raise ValueError(f"data.{split}_list is empty (source 'files')")
      root, class_csv = cfg.root, cfg.class_names
      if not class_csv:
        raise ValueError("data.class_names is empty (source 'files'): give a CSV or a shipped list name")
    else:
      list_path, class_csv = synthetic_paths(cfg.synthetic_dir, cfg.synthetic_task, split)
      root = cfg.synthetic_dir
      class_csv = cfg.class_names or class_csv
    src = FileSource.from_list(list_path, root, class_csv)
    if split == "train" and cfg.k_shot > 0:
      src = FileSource(labels.k_shot_subset(src.records, cfg.k_shot, cfg.k_shot_seed), src.class_names)
    return src
  if cfg.source == "frames":
    from xclip_jax.data import frame_shards

    return frame_shards.make_source(cfg, split)
  if cfg.k_shot > 0:
    raise ValueError("data.k_shot is supported for label-list sources ('files', 'synthetic') and 'frames'; write "
                     "the K-shot list with xclip_jax.data.labels.k_shot_subset + write_label_list first")
  if cfg.source == "tfds":
    names = labels.read_class_names(cfg.class_names) if cfg.class_names else None
    return TfdsSource(cfg.tfds_name, cfg.tfds_split[split], cfg.tfds_data_dir or None, names)
  if cfg.source == "arrayrecord":
    pattern = cfg.arrayrecord[split]
    if not pattern:
      raise ValueError(f"data.arrayrecord.{split} is empty (source 'arrayrecord')")
    return ArrayRecordSource.from_pattern(pattern, cfg.class_names)
  raise ValueError(f"unknown data.source {cfg.source!r}")

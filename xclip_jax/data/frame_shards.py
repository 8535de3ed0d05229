"""Frame shards: every video stored once as its JPEG frames in ArrayRecord files, read one sampled clip at a time.

The layout (written by `xclip_jax.data.frame_build`, `scripts/build_frame_shards.py`), in one folder:

* `shard-NNNNN-of-MMMMM.array_record`: one record per frame, the JPEG bytes unchanged (so any JPEG decoder,
  a GPU one included, can read them); the frames of a video are consecutive records of one shard.
* `index.json`: {"format", "version", "settings" (short_side, fps, quality, chroma: how the frames were built),
  "classes", "shards" [{"file", "records", "bytes", "videos"}], "videos" (columns: "path", "label",
  "list_index", "shard", "first", "frames", "fps", "height", "width"), "bad" [{"path", "error"}], "cut_off",
  "build"}. Video i's frames are records first[i] .. first[i] + frames[i] - 1 of shard shard[i].
* `classes.csv` (the class list, as the other sources have it) and `bad_videos.tsv` (what the build skipped).

`FrameShardSource` is a source (`xclip_jax.data.video_source`, kind "frames"): a clip reads only its sampled frames (one
batched ArrayRecord read) and decodes them (`jpeg.decode`, at reduced DCT scale where the frames are larger
than needed). Host h of H reads shards h, h + H, ... (whole shards, disjoint, together complete).
"""

from __future__ import annotations

import collections
import dataclasses
import json
from collections.abc import Callable, Sequence

import numpy as np
from etils import epath

from xclip_jax.data import decode, jpeg, labels, transforms
from xclip_jax.data.video_source import EncodedVideo, VideoSource

FORMAT = "xclip_jax frame shards"
VERSION = 1
INDEX_NAME = "index.json"
VIDEO_COLUMNS = ("path", "label", "list_index", "shard", "first", "frames", "fps", "height", "width")
# Random access: no read-ahead, no thread pool per read (each grain worker is one core already).
READER_OPTIONS = "readahead_buffer_size:0,max_parallelism:0"


class FrameShardError(ValueError):
  """Frame shards or their index are missing, damaged or built otherwise than asked; names the file."""


def shard_name(number: int, count: int) -> str:
  return f"shard-{number:05d}-of-{count:05d}.array_record"


class FrameIndex:
  """The parsed `index.json` of a frame-shard folder (numpy columns, video paths kept as one compact blob)."""

  def __init__(self, folder: epath.PathLike, raw: dict):
    self.folder = epath.Path(folder)
    where = str(self.folder / INDEX_NAME)
    if raw.get("format") != FORMAT or raw.get("version") != VERSION:
      raise FrameShardError(f"{where}: not a frame-shard index (format {raw.get('format')!r} version "
                            f"{raw.get('version')!r}; expected {FORMAT!r} version {VERSION})")
    try:
      self.settings = dict(raw["settings"])
      self.class_names = [str(n) for n in raw["classes"]]
      self.shards = [dict(file=str(s["file"]), records=int(s["records"]), bytes=int(s["bytes"]),
                          videos=int(s["videos"])) for s in raw["shards"]]
      videos = raw["videos"]
      columns = {k: videos[k] for k in VIDEO_COLUMNS}
    except (KeyError, TypeError, ValueError) as e:
      raise FrameShardError(f"{where}: missing or malformed field {e}") from e
    lengths = {k: len(v) for k, v in columns.items()}
    if len(set(lengths.values())) != 1:
      raise FrameShardError(f"{where}: video columns of different lengths {lengths}")
    self.label = np.asarray(columns["label"], np.int64)
    self.list_index = np.asarray(columns["list_index"], np.int64)
    self.shard = np.asarray(columns["shard"], np.int64)
    self.first = np.asarray(columns["first"], np.int64)
    self.frames = np.asarray(columns["frames"], np.int64)
    self.fps = np.asarray(columns["fps"], np.float64)
    self.height = np.asarray(columns["height"], np.int64)
    self.width = np.asarray(columns["width"], np.int64)
    encoded = [str(p).encode("utf-8") for p in columns["path"]]
    self._paths = b"".join(encoded)
    self._path_ends = np.cumsum([len(p) for p in encoded], dtype=np.int64)
    self.bad = list(raw.get("bad", []))
    self.cut_off = list(raw.get("cut_off", []))
    self.build = dict(raw.get("build", {}))
    self._check(where)

  def _check(self, where: str) -> None:
    """Every video's records lie inside its shard; labels are class ids; no frame-less video."""
    bad_shard = (self.shard < 0) | (self.shard >= len(self.shards))
    if bad_shard.any():
      i = int(np.argmax(bad_shard))
      raise FrameShardError(f"{where}: video {i} ({self.path(i)}): shard {self.shard[i]} not in the "
                            f"{len(self.shards)} shards")
    sizes = np.asarray([s["records"] for s in self.shards], np.int64)
    outside = (self.frames < 1) | (self.first < 0) | (self.first + self.frames > sizes[self.shard])
    if outside.any():
      i = int(np.argmax(outside))
      s = self.shards[int(self.shard[i])]
      raise FrameShardError(f"{where}: video {i} ({self.path(i)}): records {self.first[i]}.."
                            f"{self.first[i] + self.frames[i] - 1} outside {s['file']} ({s['records']} records)")
    bad_label = (self.label < 0) | (self.label >= len(self.class_names))
    if bad_label.any():
      i = int(np.argmax(bad_label))
      raise FrameShardError(f"{where}: video {i} ({self.path(i)}): label {self.label[i]} outside the "
                            f"{len(self.class_names)} classes")

  def __len__(self) -> int:
    return len(self.label)

  def path(self, i: int) -> str:
    """The video's path as the build read it (relative to its root)."""
    start = int(self._path_ends[i - 1]) if i > 0 else 0
    return self._paths[start:int(self._path_ends[i])].decode("utf-8")

  def check_settings(self, short_side: int | None, fps: float | None) -> None:
    """Refuses shards built with another frame size or rate than the config asks for, naming both."""
    where = str(self.folder / INDEX_NAME)
    for key, wanted, field in (("short_side", short_side, "data.frames.short_side"), ("fps", fps, "data.frames.fps")):
      if wanted is None:
        continue
      have = self.settings.get(key)
      if have is None or float(have) != float(wanted):
        have, wanted = (f"{float(v):g}" if isinstance(v, int | float) else v for v in (have, wanted))
        raise FrameShardError(f"{where}: built with {key} {have}, but the config asks for {field}={wanted}; "
                              f"set {field}={have} or rebuild the shards (scripts/build_frame_shards.py "
                              f"--{key} {wanted})")


def read_index(folder: epath.PathLike) -> FrameIndex:
  """Reads and checks `<folder>/index.json`; errors name the file."""
  folder = epath.Path(folder)
  path = folder / INDEX_NAME
  if not path.exists():
    hint = " (a build still running or killed: run scripts/build_frame_shards.py again to finish it)" if (
        folder.parent / f"{folder.name}.partial").exists() else ""
    raise FrameShardError(f"{path}: no frame-shard index{hint}")
  try:
    raw = json.loads(path.read_text())
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise FrameShardError(f"{path}: unreadable index: {e}") from e
  if not isinstance(raw, dict):
    raise FrameShardError(f"{path}: unreadable index: not a JSON object")
  return FrameIndex(folder, raw)


@dataclasses.dataclass
class ShardFrames(EncodedVideo):
  """A video of a `FrameShardSource`: its JPEG frames are records of a shard (index video `video`)."""

  source: FrameShardSource | None = None
  video: int = 0

  def load_frames(self, pick, *, backend="pyav", threads=1, short_side=None, min_frames=1, on_warning=None):
    del backend, threads, on_warning  # JPEG records: decoded here, never cut off
    return load_frames(self, pick, short_side=short_side, min_frames=min_frames)


class FrameShardSource(VideoSource):
  """Videos of a frame-shard folder; a picklable source (`xclip_jax.data.video_source`).

  Args:
    folder: the folder with `index.json` and the shards (a local path or gs://).
    class_names: the class list to use (labels must lie in it); default the index's own.
    short_side, fps: what the config expects the frames to have been built with (None: not checked).
    max_open_shards: per process, keep at most this many shard readers open (0: all). An open reader holds
      about 17 bytes per frame of its shard.
  """

  def __init__(self, folder: epath.PathLike, class_names: Sequence[str] | None = None, *,
               short_side: int | None = None, fps: float | None = None, max_open_shards: int = 0):
    self.index = read_index(folder)
    self.index.check_settings(short_side, fps)
    self.class_names = list(class_names) if class_names else list(self.index.class_names)
    if len(self.index) and int(self.index.label.max()) >= len(self.class_names):
      raise labels.LabelFileError(f"{self.index.folder / INDEX_NAME}: label id {int(self.index.label.max())} outside "
                                  f"the class list given ({len(self.class_names)} classes)")
    self.max_open_shards = int(max_open_shards)
    self._check_shard_files()
    self._readers: collections.OrderedDict = collections.OrderedDict()  # Opened lazily, per process.

  def _check_shard_files(self) -> None:
    """Every shard exists with the size the index gives (a cheap guard against missing or cut shards)."""
    for s in self.index.shards:
      path = self.index.folder / s["file"]
      try:
        size = path.stat().length
      except FileNotFoundError:
        raise FrameShardError(f"{path}: shard missing (listed in {self.index.folder / INDEX_NAME})") from None
      if size != s["bytes"]:
        raise FrameShardError(f"{path}: {size} bytes, the index says {s['bytes']} (damaged, or from another build)")

  def __getstate__(self):
    state = dict(self.__dict__)
    state["_readers"] = collections.OrderedDict()
    return state

  def __len__(self) -> int:
    return len(self.index)

  def __getitem__(self, i: int) -> ShardFrames:
    return ShardFrames(label=int(self.index.label[int(i)]), index=int(i), name=self.index.path(int(i)), source=self,
                       video=int(i))

  def name(self, i: int) -> str:
    return self.index.path(int(i))

  def labels(self) -> np.ndarray:
    return np.asarray(self.index.label, np.int64)

  def shard_of(self) -> tuple[np.ndarray, int, str]:
    return np.asarray(self.index.shard), len(self.index.shards), f"frame shards in {self.index.folder}"

  def _reader(self, shard: int):
    reader = self._readers.get(shard)
    if reader is not None:
      self._readers.move_to_end(shard)
      return reader
    from array_record.python import array_record_module

    info = self.index.shards[shard]
    path = self.index.folder / info["file"]
    try:
      reader = array_record_module.ArrayRecordReader(str(path), READER_OPTIONS)
      count = reader.num_records()
    except (RuntimeError, OSError, ValueError) as e:
      raise decode.VideoDecodeError(str(path), f"unreadable shard: {e}") from e
    if count != info["records"]:
      reader.close()
      raise decode.VideoDecodeError(str(path), f"{count} records, the index says {info['records']}")
    self._readers[shard] = reader
    if self.max_open_shards and len(self._readers) > self.max_open_shards:
      self._readers.popitem(last=False)[1].close()
    return reader

  def read_records(self, video: int, frames: np.ndarray) -> list[bytes]:
    """JPEG bytes of frames `frames` (sorted, unique) of index video `video`, in one batched read."""
    shard = int(self.index.shard[video])
    records = (int(self.index.first[video]) + np.asarray(frames, np.int64)).tolist()
    reader = self._reader(shard)
    try:
      return reader.read(records)
    except (RuntimeError, OSError, ValueError) as e:
      where = f"{self.index.folder / self.index.shards[shard]['file']}#{records[0]}..{records[-1]}"
      raise decode.VideoDecodeError(self.index.path(video), f"unreadable records {where}: {e}") from e

  def record_name(self, video: int, frame: int) -> str:
    shard = int(self.index.shard[video])
    return f"{self.index.folder / self.index.shards[shard]['file']}#{int(self.index.first[video]) + int(frame)}"


def load_frames(item, pick: Callable[[int], np.ndarray], *, short_side: int | None = None,
                min_frames: int = 1) -> tuple[np.ndarray, np.ndarray, int]:
  """Frames `pick(count)` of a frame-shard video: read in one batch, decoded, short side resized to `short_side`.

  Same contract as `EncodedVideo.load_frames`; a record that does not read or decode raises
  `decode.VideoDecodeError` naming the video, the shard and the record.
  """
  source, video = item.source, item.video
  count, need = int(source.index.frames[video]), max(int(min_frames), 1)
  if count < need:
    raise decode.VideoDecodeError(item.name, f"too short: {count} frames (need at least {need})")
  indices = np.asarray(pick(count), dtype=np.int64).reshape(-1)
  if indices.size and (indices.min() < 0 or indices.max() >= count):
    raise decode.VideoDecodeError(item.name, f"sampler asked for frames outside [0, {count})")
  wanted = np.unique(indices)
  blobs = source.read_records(video, wanted)
  decoded = []
  for frame, blob in zip(wanted.tolist(), blobs, strict=True):
    try:
      decoded.append(jpeg.decode(blob, min_short=short_side))
    except jpeg.JpegError as e:
      raise decode.VideoDecodeError(item.name, f"frame {frame} ({source.record_name(video, frame)}) "
                                               f"does not decode: {e}") from e
  if len({f.shape for f in decoded}) > 1:
    raise decode.VideoDecodeError(item.name, f"frames of different sizes {sorted({f.shape for f in decoded})}")
  unique = np.stack(decoded) if decoded else np.zeros((0, 1, 1, 3), np.uint8)
  if short_side and unique.size:
    unique = transforms.resize_short(unique, short_side)
  return unique[np.searchsorted(wanted, indices)], indices, count


def frame_shard_source(cfg, split: str) -> FrameShardSource:
  """data.source="frames": the frame shards of `split` (data.frames[split]), checked against data.frames'
  frame size and rate (registered in `video_source`, which draws K per class with data.k_shot)."""
  folder = cfg.frames[split]
  if not folder:
    raise ValueError(f"data.frames.{split} is empty (source 'frames'): give the output folder of "
                     f"scripts/build_frame_shards.py")
  names = labels.read_class_names(cfg.class_names) if cfg.class_names else None
  frames = cfg.frames
  return FrameShardSource(folder, names, short_side=int(frames.short_side), fps=float(frames.fps),
                          max_open_shards=int(frames.max_open_shards))

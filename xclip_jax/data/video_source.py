"""The data-source interface: what a source of labelled videos is, what its items are, the registry of source
kinds, and the one K-shot wrapper. It imports none of the sources: they are registered by module name and
imported when first asked for.

    source = make_source(data_cfg, "train")     # data.source picks the kind; data.k_shot > 0: K per class
    spread_over_classes(source, 16)              # a shrunk evaluation's videos: spread over the classes
    len(source), source[i], source.class_names, source.name(i), source.labels(), source.host_indices(p, n)
    source[i].load_frames(pick, short_side=256)  # decodes only the frames pick(num_frames) chooses

A source (`VideoSource`) is light and picklable (it goes to grain worker processes). `source[i]` is an
`EncodedVideo`: the label, the position `i` (`index`), a name for messages, and whatever the item needs to
decode its frames (a path, bytes, JPEG frames, a place in a frame shard); nothing is decoded until
`load_frames`. `host_indices` splits a source over the processes of a multi-host run: by records (strided)
by default, by whole shards for a source whose videos live in shards (`shard_of`).

The kinds (`data.source`): files, synthetic, tfds, arrayrecord (`xclip_jax.data.sources`), folders
(`xclip_jax.data.folders`), frames (`xclip_jax.data.frame_shards`). `register_source(kind, factory)` adds one
(`data.source=kind` then reads it).
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from typing import Any

import numpy as np

from xclip_jax.data import labels

Pick = Callable[[int], np.ndarray]
Frames = tuple[np.ndarray, np.ndarray, int]  # (frames uint8 (n, H, W, 3), their indices, the video's frame count)


@dataclasses.dataclass
class EncodedVideo:
  """One item of a source, not decoded yet.

  Attributes:
    label: class id (a position in the source's class_names).
    index: the item's position in its source.
    name: how messages name the video (a path, a shard record, ...).
  """

  label: int
  index: int
  name: str

  def load_frames(self, pick: Pick, *, backend: str = "pyav", threads: int = 1, short_side: int | None = None,
                  min_frames: int = 1, on_warning: Callable[[str], None] | None = None) -> Frames:
    """Decodes the frames `pick(num_frames)` chooses, short side resized to `short_side`; raises
    `decode.VideoDecodeError` naming the video. `on_warning` hears of a cut-off file sampled from its
    decodable part."""
    raise NotImplementedError(f"{type(self).__name__} does not say how to decode its frames")


class VideoSource:
  """Random access to labelled videos (see the module docstring). Subclasses define `class_names`,
  `__len__`, `__getitem__`, `name` and `labels`; a source whose videos live in shards also `shard_of`."""

  class_names: list[str]
  # Whether `labels()` reads the videos themselves (ArrayRecord: each label is in its record's header); then a
  # shrunk evaluation spaces its videos evenly instead of reading the split for them (`spread_over_classes`).
  labels_read_videos: bool = False

  def __len__(self) -> int:
    raise NotImplementedError

  def __getitem__(self, i: int) -> EncodedVideo:
    raise NotImplementedError

  def name(self, i: int) -> str:
    raise NotImplementedError

  def labels(self) -> np.ndarray:
    """(N,) class ids of every video, without decoding any (the K-shot wrapper draws from them)."""
    raise NotImplementedError

  def shard_of(self) -> tuple[np.ndarray, int, str] | None:
    """None (the default): hosts read strided records. Else (shard of every video, shard count, what to
    rebuild): hosts read whole shards, shard s on host s % process_count."""
    return None

  def host_indices(self, process_index: int, process_count: int) -> np.ndarray:
    """The positions this process reads: disjoint over processes, together complete."""
    shards = self.shard_of()
    if shards is None:
      return np.arange(process_index, len(self), process_count, dtype=np.int64)
    shard, count, what = shards
    if count < process_count:
      raise ValueError(f"{count} {what} cannot be split over {process_count} processes; rebuild with "
                       f"--num-shards >= the number of hosts")
    return np.nonzero(np.asarray(shard) % process_count == process_index)[0].astype(np.int64)


class SubsetSource(VideoSource):
  """The videos of `source` at `positions`, in that order, re-indexed 0..n-1 (shards kept for the host split)."""

  def __init__(self, source: VideoSource, positions: np.ndarray):
    self.source = source
    self.positions = np.asarray(positions, np.int64)
    self.class_names = list(source.class_names)
    self.labels_read_videos = source.labels_read_videos

  def __len__(self) -> int:
    return len(self.positions)

  def __getitem__(self, i: int) -> EncodedVideo:
    return dataclasses.replace(self.source[int(self.positions[int(i)])], index=int(i))

  def name(self, i: int) -> str:
    return self.source.name(int(self.positions[int(i)]))

  def labels(self) -> np.ndarray:
    return np.asarray(self.source.labels())[self.positions]

  def shard_of(self) -> tuple[np.ndarray, int, str] | None:
    shards = self.source.shard_of()
    return None if shards is None else (np.asarray(shards[0])[self.positions], *shards[1:])


def k_shot(source: VideoSource, k: int, seed: int) -> SubsetSource:
  """The one K-shot wrapper, for every kind of source: K videos per class of `source`
  (`labels.k_shot_positions`: the same videos a label list's `labels.k_shot_subset` keeps)."""
  try:
    positions = labels.k_shot_positions(source.labels(), k, seed)
  except ValueError as error:
    raise ValueError(f"data.k_shot={k}: {error}") from None
  return SubsetSource(source, positions)


def spread_over_classes(source: VideoSource, count: int) -> VideoSource:
  """`count` videos of `source` spread over its classes, the same on every call (a shrunk evaluation,
  eval.max_batches; `labels.spread_positions`), in the source's order; evenly spaced over the source where its
  labels would mean reading the videos (`labels_read_videos`). The source itself for count < 0 or count >= its
  length."""
  n = len(source)
  if count < 0 or count >= n:
    return source
  if source.labels_read_videos:
    return SubsetSource(source, np.unique(np.round(np.linspace(0, n - 1, count)).astype(np.int64)))
  return SubsetSource(source, labels.spread_positions(source.labels(), count))


# ---------------------------------------------------------------------------------------------------------
# The registry.

Factory = Callable[[Any, str], VideoSource]  # (data config block, split) -> source
_REGISTRY: dict[str, Factory | str] = {
    "files": "xclip_jax.data.sources:file_list_source",
    "synthetic": "xclip_jax.data.sources:synthetic_source",
    "tfds": "xclip_jax.data.sources:tfds_source",
    "arrayrecord": "xclip_jax.data.sources:arrayrecord_source",
    "folders": "xclip_jax.data.folders:folder_source",
    "frames": "xclip_jax.data.frame_shards:frame_shard_source",
}


def source_kinds() -> tuple[str, ...]:
  """Every `data.source` value there is a source for."""
  return tuple(_REGISTRY)


def register_source(kind: str, factory: Factory) -> None:
  """Makes `data.source=kind` build its sources with `factory(data_cfg, split)`."""
  if kind in _REGISTRY:
    raise ValueError(f"a data source kind {kind!r} is registered already")
  _REGISTRY[kind] = factory


def unregister_source(kind: str) -> None:
  """Removes a kind added by `register_source`."""
  if _REGISTRY.pop(kind, None) is None:
    raise KeyError(f"no data source kind {kind!r} is registered")


def _factory(kind: str) -> Factory:
  if kind not in _REGISTRY:
    raise ValueError(f"data.source must be one of {source_kinds()}, got {kind!r}")
  factory = _REGISTRY[kind]
  if isinstance(factory, str):
    module, _, function = factory.partition(":")
    factory = _REGISTRY[kind] = getattr(importlib.import_module(module), function)
  return factory


def make_source(cfg, split: str) -> VideoSource:
  """The source of `split` ("train", "val"; "test" where the kind has one) that a data config block
  describes; for training, K per class with data.k_shot > 0 (seeded by data.k_shot_seed)."""
  source = _factory(cfg.source)(cfg, split)
  if split == "train" and int(cfg.k_shot) > 0:
    source = k_shot(source, int(cfg.k_shot), int(cfg.k_shot_seed))
  return source

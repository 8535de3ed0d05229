"""grain pipelines that feed a device mesh: training (infinite, resumable) and evaluation (one exact pass).

Interfaces used by the training code:

* `make_train_iterator(data_cfg, *, split="train", seed)` -> `TrainIterator`, an infinite iterator of
  per-process numpy training batches (their keys and shapes: `xclip_jax.data.batches`), b = data.batch_size //
  jax.process_count(). Each process reads its own disjoint part of the data
  (`source.host_indices`), shuffles it with `seed` (re-shuffled every epoch), decodes + augments in
  `data.num_workers` grain worker processes (whole batches are built in the workers) and is deterministic
  for a seed whatever the worker count. `get_state()/set_state()` give exact resume; the iterator is a
  `grain.DatasetIterator`, so `grain.checkpoint.CheckpointSave/CheckpointRestore` work with Orbax.
  Bad videos (missing, corrupt, truncated, too short) are replaced by a random other video of the host's
  part and counted: `it.bad_videos` (total, kept in the state) and `it.recent_bad` (last (index, name)
  pairs seen in this process); the process's `bad_videos.BadVideoLog` prints one line per file and keeps
  `data.bad_video_log` (one row per file). Workers do not log: each example carries its events.
* `make_eval_iterator(data_cfg, *, split="val", clips=1, crops=1)` -> `EvalIterator`, one pass of evaluation
  batches (`xclip_jax.data.batches`): V = crops x clips views per video from the one view builder
  (`xclip_jax.data.views`), crop-major (official layout: view v = crop * clips + clip), padding rows marked.
  Every process yields the same number of batches (padding), so multi-host evaluation stays in lockstep.
  Count accuracy over valid rows: correct = valid & decode_ok & (pred == label); denominator = valid.sum().
  A pass of one batch per process is built in this process, longer ones in `data.num_workers` workers.
* `global_batch(local_batch, mesh, batch_axes=("data", "fsdp"))` -> dict of global `jax.Array`s built
  with `jax.make_array_from_process_local_data`, batch dimension sharded over the mesh axes present.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import math
from collections.abc import Sequence
from typing import Any

import grain
import numpy as np

from xclip_jax.data import bad_videos, batches, sampling, transforms, video_source, views, worker_lifetime
from xclip_jax.data import config as config_lib
from xclip_jax.data.decode import VideoDecodeError


def process_info() -> tuple[int, int]:
  """(process_index, process_count) from JAX (1 process if JAX's distributed runtime is not used)."""
  import jax

  return jax.process_index(), jax.process_count()


class _ClipReader:
  """Decodes + samples + transforms one video; picklable (runs in grain worker processes)."""

  def __init__(self, source, host_indices: np.ndarray, cfg, train: bool, clips: int = 1, crops: int = 1):
    self.source = source
    self.host_indices = np.asarray(host_indices, dtype=np.int64)
    self.train = train
    self.t = int(cfg.num_frames)
    self.size = int(cfg.input_size)
    self.short = config_lib.short_side(cfg)
    self.mode = cfg.sampling
    self.interval = int(cfg.dense_frame_interval)
    self.views = None if train else views.ViewSpec.from_data_config(cfg, clips=clips, crops=crops)
    self.aug = dict(cfg.augment)
    self.backend, self.threads = cfg.decode_backend, int(cfg.decode_threads)
    self.min_frames = int(cfg.min_video_frames)
    self.max_retries = int(cfg.max_bad_retries)
    self.seed = int(cfg.seed)

  def train_example(self, pos: int, rng: np.random.Generator) -> dict[str, Any]:
    """Training clip for host position `pos`; a bad video is replaced by a random other one."""
    n_bad, first_bad = 0, -1
    errors = []
    events: list[tuple[str, str, str]] = []  # Reported by the main process (see `bad_videos`).
    for _ in range(self.max_retries + 1):
      item = None
      try:
        item = self.source[int(self.host_indices[pos])]
        frames, _, _ = item.load_frames(
            lambda n: sampling.clip_indices(n, self.t, mode=self.mode, train=True, rng=rng, interval=self.interval),
            backend=self.backend, threads=self.threads, short_side=self.short, min_frames=self.min_frames,
            on_warning=lambda message, name=item.name: events.append((bad_videos.CUT_OFF, name, message)))
      except VideoDecodeError as e:
        first_bad = int(self.host_indices[pos]) if first_bad < 0 else first_bad
        n_bad += 1
        errors.append(str(e))
        events.append((bad_videos.BAD, e.path, e.reason))
        pos = int(rng.integers(len(self.host_indices)))
        continue
      a = self.aug
      geometry = dict(input_size=self.size, short=self.short, scales=tuple(a["scales"]),
                      max_wh_scale_gap=int(a["max_wh_scale_gap"]), flip=a["flip"])
      color = dict(color_jitter_p=a["color_jitter"], brightness=a["brightness"], contrast=a["contrast"],
                   saturation=a["saturation"], hue=a["hue"], gray_scale=a["gray_scale"])
      extra = {}
      if a.get("color_on_device"):  # Same draws; the train step applies them (xclip_jax.data.device_color).
        video = transforms.train_geometry(frames, rng, **geometry)
        extra[batches.COLOR] = transforms.color_params(rng, len(video), **color)
      else:
        video = transforms.train_clip(frames, rng, **geometry, **color)
      return {batches.VIDEO: video, batches.LABEL: np.int32(item.label), batches.INDEX: np.int32(item.index),
              "n_bad": np.int32(n_bad),
              "bad_index": np.int32(first_bad), "events": bad_videos.encode_events(events), **extra}
    raise RuntimeError(f"{self.max_retries + 1} videos in a row failed to decode; last errors: {errors[-3:]}")

  def eval_example(self, pos: int) -> dict[str, Any]:
    """All views of the video at host position `pos` (`views.read_views`; a padding row past the end)."""
    if pos >= len(self.host_indices):
      return {batches.VIDEO: self.views.empty(), batches.LABEL: np.int32(-1), batches.INDEX: np.int32(-1),
              batches.VALID: np.bool_(False), batches.DECODE_OK: np.bool_(False), "events": ""}
    index = int(self.host_indices[pos])
    label = -1
    events: list[tuple[str, str, str]] = []
    try:
      item = self.source[index]
      label = item.label
      video = views.read_views(item, self.views, backend=self.backend, threads=self.threads,
                               min_frames=self.min_frames,
                               on_warning=lambda message: events.append((bad_videos.CUT_OFF, item.name, message)))
      ok = True
    except VideoDecodeError as e:
      events.append((bad_videos.BAD, e.path, e.reason))
      video, ok = self.views.empty(), False
      if label < 0:  # The record itself was unreadable: its label is unknown, keep the row (counted wrong).
        label = 0
    return {batches.VIDEO: video, batches.LABEL: np.int32(label), batches.INDEX: np.int32(index),
            batches.VALID: np.bool_(True), batches.DECODE_OK: np.bool_(ok), "events": bad_videos.encode_events(events)}


class _TrainMap:
  def __init__(self, reader: _ClipReader):
    self.reader = reader

  def __call__(self, pos, rng: np.random.Generator):
    return self.reader.train_example(int(pos), rng)


class _EvalMap:
  def __init__(self, reader: _ClipReader):
    self.reader = reader

  def __call__(self, pos):
    return self.reader.eval_example(int(pos))


def _local_batch(global_batch: int, process_count: int, what: str) -> int:
  if global_batch % process_count:
    raise ValueError(f"{what}={global_batch} is not divisible by the {process_count} processes")
  return global_batch // process_count


def _to_iter(ds: grain.MapDataset, cfg, workers: int | None = None) -> grain.IterDataset:
  """`workers`: worker processes (default `cfg.num_workers`; 0: batches are built in this process)."""
  workers = int(cfg.num_workers) if workers is None else workers
  # grain's default ReadOptions (16 threads, 500 buffered elements) would run 16 decoders per worker and
  # buffer up to 500 *batches* of decoded video per worker; keep both explicit and small.
  read = grain.ReadOptions(num_threads=max(int(cfg.read_threads), 1), prefetch_buffer_size=max(int(cfg.prefetch), 1))
  it = ds.to_iter_dataset(read)
  if workers > 0:
    _release_shared_memory_at_exit()
    # grain's worker processes read absl flags; outside `absl.app.run` (tests, notebooks) use their defaults.
    from absl import flags

    if not flags.FLAGS.is_parsed():
      flags.FLAGS.mark_as_parsed()
    # Workers end within a second of this process, even when it is killed with SIGKILL (issue 16 item 7).
    it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers,
                                                     per_worker_buffer_size=max(int(cfg.prefetch), 1)),
                        worker_init_fn=worker_lifetime.ExitWithParent())
  return it


def release_shared_memory(*, in_use: bool = False) -> None:
  """Unlinks the shared memory of worker batches no longer used (with `in_use`, of every batch: for a process
  about to end at once).

  grain's worker batches are shared memory, unlinked when their arrays are collected, by a background thread.
  Batches held by reference cycles (grain's end of a pass) wait for the garbage collector, and unlinks still
  queued when the process ends never happen: the resource tracker then reports "There appear to be N leaked
  shared_memory objects". So: collect, then wait until grain's unlinking thread has done what is queued.
  Called when an iterator closes and at exit.
  """
  gc.collect()
  try:
    from grain._src.python.ipc import shared_memory_array
  except ImportError:  # another grain layout: collecting is what can be done
    return
  owner = shared_memory_array.SharedMemoryArray
  if in_use:  # the memory stays mapped until the process ends; only its name goes
    for array in [o for o in gc.get_objects() if isinstance(o, owner) and getattr(o, "_unlink_on_del", False)]:
      with contextlib.suppress(OSError):
        array.shm.unlink()
      array._unlink_on_del = False
  pool = getattr(owner, "_del_thread_pool", None)
  if pool is not None:
    with contextlib.suppress(ValueError):  # a pool already shut down
      pool.apply_async(int).wait(timeout=10)  # one thread, first in first out: the unlinks queued before are done


_AT_EXIT: list[bool] = []


def _release_shared_memory_at_exit() -> None:
  if not _AT_EXIT:
    atexit.register(release_shared_memory)
    _AT_EXIT.append(True)


class TrainIterator(grain.DatasetIterator):
  """Per-process training batches; counts replaced bad videos; state = grain state + the count."""

  def __init__(self, inner: grain.DatasetIterator, source, local_batch: int, bad_log: bad_videos.BadVideoLog):
    super().__init__(inner)
    self._inner = inner
    self.source = source
    self.local_batch = local_batch
    self.bad_log = bad_log
    self.bad_videos = 0
    self.recent_bad: list[tuple[int, str]] = []

  def __next__(self) -> dict[str, np.ndarray]:
    batch = dict(next(self._inner))
    n_bad = batch.pop("n_bad")
    bad_index = batch.pop("bad_index")
    self.bad_log.record_encoded(batch.pop("events"))  # One line per file, the first time it is met.
    if n_bad.any():
      self.recent_bad.extend((int(i), self.source.name(int(i))) for i in bad_index[bad_index >= 0])
      del self.recent_bad[:-100]
      self.bad_videos += int(n_bad.sum())
    return batch

  def get_state(self) -> dict[str, Any]:
    return {"grain": self._inner.get_state(), "bad_videos": self.bad_videos}

  def set_state(self, state: dict[str, Any]) -> None:
    self._inner.set_state(state["grain"])
    self.bad_videos = int(state.get("bad_videos", 0))

  def close(self) -> None:
    """Stops the worker processes and frees the batches they still hold in shared memory."""
    self._inner.close()
    release_shared_memory()


def make_train_iterator(data_cfg, *, split: str = "train", seed: int | None = None,
                        process_index: int | None = None, process_count: int | None = None) -> TrainIterator:
  """Infinite, resumable iterator of this process's training batches (see the module docstring).

  Args:
    data_cfg: the data config block (`xclip_jax.data.config.data_config`).
    split: which split to train on.
    seed: shuffling/augmentation seed (default `data_cfg.seed`).
    process_index, process_count: override JAX's (tests, offline tools).
  """
  config_lib.validate(data_cfg)
  seed = int(data_cfg.seed if seed is None else seed)
  if process_index is None or process_count is None:
    process_index, process_count = process_info()
  local_b = _local_batch(int(data_cfg.batch_size), process_count, "data.batch_size")
  source = video_source.make_source(data_cfg, split)
  host = source.host_indices(process_index, process_count)
  if len(host) < local_b:
    raise ValueError(f"process {process_index} has {len(host)} videos, fewer than its batch of {local_b}")
  cfg = data_cfg.copy_and_resolve_references()
  cfg.seed = seed
  reader = _ClipReader(source, host, cfg, train=True)
  ds = grain.MapDataset.range(len(host)).shuffle(seed=seed).repeat(None)
  ds = ds.random_map(_TrainMap(reader), seed=seed).batch(local_b, drop_remainder=True)
  bad_log = bad_videos.for_path(data_cfg.bad_video_log, process_index, process_count)
  return TrainIterator(iter(_to_iter(ds, data_cfg)), source, local_b, bad_log)


class EvalIterator:
  """One pass of evaluation batches; records which videos failed to decode (index, name)."""

  def __init__(self, inner, source, num_batches: int, num_videos: int, bad_log: bad_videos.BadVideoLog,
               workers: int = 0):
    self._inner = inner
    self._workers = workers  # worker processes building the batches (0: this process)
    self.bad_log = bad_log
    self.source = source
    self.num_batches = num_batches  # Same on every process.
    self.num_videos = num_videos  # Videos of this process (valid rows it will yield).
    self.videos_in_split = num_videos  # Videos of the split, all processes (more than evaluated with max_videos).
    self.decode_failures: list[tuple[int, str]] = []

  def __iter__(self):
    return self

  def __len__(self) -> int:
    return self.num_batches

  def __next__(self) -> dict[str, np.ndarray]:
    batch = dict(next(self._inner))
    self.bad_log.record_encoded(batch.pop("events"))
    failed = batch[batches.VALID] & ~batch[batches.DECODE_OK]
    for i in batch[batches.INDEX][failed]:
      self.decode_failures.append((int(i), self.source.name(int(i))))
    return batch

  def close(self) -> None:
    """Stops the worker processes (a pass cut short by `max_batches` leaves batches in flight) and frees their
    shared memory (a garbage collection: a pass built in this process has none to free)."""
    if hasattr(self._inner, "close"):
      self._inner.close()
    if self._workers:
      release_shared_memory()


def make_eval_iterator(data_cfg, *, split: str = "val", clips: int = 1, crops: int = 1,
                       process_index: int | None = None, process_count: int | None = None,
                       max_videos: int = -1) -> EvalIterator:
  """One pass over this process's part of `split` with all views per video (see the module docstring); with
  `max_videos` >= 0 over that many videos of the split, spread over its classes
  (`video_source.spread_over_classes`)."""
  config_lib.validate(data_cfg)
  views.ViewSpec.from_data_config(data_cfg, clips=clips, crops=crops)  # bad clips or crops: named before any work
  if process_index is None or process_count is None:
    process_index, process_count = process_info()
  local_b = _local_batch(int(data_cfg.eval_batch_size), process_count, "data.eval_batch_size")
  split_source = video_source.make_source(data_cfg, split)
  source = video_source.spread_over_classes(split_source, max_videos)
  host = source.host_indices(process_index, process_count)
  longest = max(len(source.host_indices(p, process_count)) for p in range(process_count))
  num_batches = max(math.ceil(longest / local_b), 1)
  reader = _ClipReader(source, host, data_cfg, train=False, clips=clips, crops=crops)
  ds = grain.MapDataset.range(num_batches * local_b).map(_EvalMap(reader)).batch(local_b)
  bad_log = bad_videos.for_path(data_cfg.bad_video_log, process_index, process_count)
  # A pass of one batch is built in this process: grain gives a batch to one worker, which would build that
  # same batch alone after seconds of start-up (and a second or two of shutting down), with nothing to overlap.
  # The batches are the same either way (`tests/test_data_pipeline.py`).
  workers = 0 if num_batches == 1 else int(data_cfg.num_workers)
  iterator = EvalIterator(iter(_to_iter(ds, data_cfg, workers)), source, num_batches, len(host), bad_log, workers)
  iterator.videos_in_split = len(split_source)
  return iterator


def global_batch(local_batch: dict[str, np.ndarray], mesh, batch_axes: Sequence[str] = ("data", "fsdp")):
  """Assembles per-process batches into global arrays, batch dimension sharded over `batch_axes`.

  Axes missing from the mesh are ignored; other dimensions are replicated.
  """
  import jax
  from jax.sharding import NamedSharding, PartitionSpec

  axes = tuple(a for a in batch_axes if a in mesh.axis_names)
  spec = PartitionSpec(axes if axes else None)
  sharding = NamedSharding(mesh, spec)
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in local_batch.items()}


def describe_batch(batch: dict[str, np.ndarray]) -> dict[str, Any]:
  """Shapes, dtypes and pixel statistics of a batch (preview and logs)."""
  video = batch["video"]
  flat = video.reshape(-1, 3).astype(np.float64)
  out = {k: (tuple(v.shape), str(v.dtype)) for k, v in batch.items()}
  out["pixel_mean_rgb"] = [round(float(x), 2) for x in flat.mean(0)]
  out["pixel_std_rgb"] = [round(float(x), 2) for x in flat.std(0)]
  out["labels"] = np.bincount(batch["label"][batch["label"] >= 0]).nonzero()[0].tolist()
  return out



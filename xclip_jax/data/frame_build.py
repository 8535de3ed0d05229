"""Building a frame-shard folder from a list of videos: on all cores, resumable, never a shard that reads wrong.

    summary = build(videos, class_names, "/data/k400_frames/train", FrameSettings(short_side=256, fps=10))

The videos are split, in list order, into shards of `videos_per_shard` (or `num_shards`); each worker process
builds whole shards: it extracts every video of the shard (`frame_extract.extract`), writes its frames to
`<shard>.tmp-<pid>`, closes and syncs it, renames it into place and then writes `<shard>.json` (the shard's
part of the index). Everything happens in `<out>.partial/` next to the output; when all shards are done the
parts are merged into `index.json` and the folder is renamed to `<out>`, so `<out>` is always a complete build.

A killed build is continued by running it again: shards with their `.json` are kept, half-written `.tmp-*`
files are removed and their shards rebuilt. A `.partial` folder of another plan (other videos or settings) is
refused, naming the difference, unless `overwrite`. An existing `<out>` is replaced only with `overwrite`, and
only once the new build is complete. Bad videos (missing, corrupt, no frame decodes) are listed with their
error in `index.json` and `bad_videos.tsv`, printed as they are met and counted at the end; they are skipped.
Output folders must be local (the ArrayRecord writer writes local files only): build locally, then copy.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import multiprocessing
import os
import queue
import shutil
import sys
import time
from collections.abc import Callable, Sequence

from etils import epath

from xclip_jax import atomic_io
from xclip_jax.data import decode, frame_extract, frame_shards, labels, worker_lifetime
from xclip_jax.data.frame_extract import FrameSettings

PLAN_NAME = "plan.json"
WRITER_OPTIONS = "group_size:1,uncompressed"  # One frame per chunk (random access); JPEG does not compress further.


@dataclasses.dataclass(frozen=True)
class VideoEntry:
  path: str  # Where to read the video.
  label: int
  name: str  # How the index names it (relative to the dataset root).


@dataclasses.dataclass(frozen=True)
class _ShardTask:
  number: int
  count: int
  first_video: int  # Position of the shard's first video in the whole list.
  videos: tuple[VideoEntry, ...]
  settings: FrameSettings
  folder: str


# ---------------------------------------------------------------------------------------------------------
# One shard (runs in a worker process, or in the caller with workers=1).

_events = None  # Worker side: where progress events go (a multiprocessing queue, set by `_init_worker`).


def _init_worker(events, parent_pid: int) -> None:
  global _events
  _events = events
  worker_lifetime.ExitWithParent(parent_pid)()


def _emit(event: tuple) -> None:
  if _events is not None:
    _events.put(event)


def _build_shard(task: _ShardTask, report: Callable[[tuple], None] | None = None) -> dict:
  """Writes one shard and its part of the index; returns the part."""
  from array_record.python import array_record_module

  report = report or _emit
  cpu = time.process_time()
  folder = epath.Path(task.folder)
  name = frame_shards.shard_name(task.number, task.count)
  final = folder / name
  tmp = folder / f"{name}.tmp-{os.getpid()}"
  writer = array_record_module.ArrayRecordWriter(str(tmp), WRITER_OPTIONS)
  videos, bad, cut_off = [], [], []
  records = 0
  try:
    for k, entry in enumerate(task.videos):
      try:
        got = frame_extract.extract(entry.path, task.settings, entry.name)
      except decode.VideoDecodeError as e:
        bad.append({"path": entry.name, "error": e.reason})
        report(("bad", entry.name, e.reason))
        continue
      for blob in got.jpegs:
        writer.write(blob)
      videos.append({"path": entry.name, "label": entry.label, "list_index": task.first_video + k, "first": records,
                     "frames": len(got.jpegs), "fps": got.fps, "height": got.height, "width": got.width})
      records += len(got.jpegs)
      if got.note:
        cut_off.append({"path": entry.name, "note": got.note})
        report(("cut_off", entry.name, got.note))
      report(("ok", entry.name, ""))
    writer.close()
    with open(tmp, "rb+") as f:  # On disk before it gets its name: a crash leaves no shard that reads wrong.
      os.fsync(f.fileno())
    os.replace(tmp, final)
  except BaseException:
    tmp.unlink(missing_ok=True)
    raise
  part = {"file": name, "records": records, "bytes": final.stat().length, "videos": videos, "bad": bad,
          "cut_off": cut_off, "cpu_seconds": round(time.process_time() - cpu, 3)}
  atomic_io.atomic_write_text(str(folder / f"{name}.json"), json.dumps(part))
  return part


# ---------------------------------------------------------------------------------------------------------
# The plan, resuming, merging.


def _plan(videos: Sequence[VideoEntry], class_names: Sequence[str], settings: FrameSettings, num_shards: int,
          source: dict) -> dict:
  digest = hashlib.sha256("\n".join(f"{v.name}\t{v.label}\t{v.path}" for v in videos).encode("utf-8")).hexdigest()
  return {"settings": dataclasses.asdict(settings), "num_shards": num_shards, "videos": len(videos),
          "videos_sha256": digest, "classes": list(class_names), "source": source}


def _plan_differences(old: dict, new: dict) -> list[str]:
  out = []
  for key in ("settings", "num_shards", "videos", "videos_sha256", "classes"):
    if old.get(key) != new.get(key):
      before, now = old.get(key), new.get(key)
      if key == "classes":
        before, now = f"{len(before or [])} names", f"{len(now)} names"
      out.append(f"{key}: {before} there, {now} now")
  return out


def _prepare_partial(partial: epath.Path, plan: dict, overwrite: bool) -> None:
  """Creates `partial` with the plan, or checks that an existing one has the same plan (else refuses)."""
  plan_path = partial / PLAN_NAME
  if partial.exists():
    try:
      old = json.loads(plan_path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
      old = None
    differences = ["no readable plan.json"] if old is None else _plan_differences(old, plan)
    if differences and not overwrite:
      raise FileExistsError(f"{partial} holds an unfinished build of something else ({'; '.join(differences)}); "
                            f"pass --overwrite to discard it, or run the command that started it")
    if differences:
      shutil.rmtree(partial)
  partial.mkdir(parents=True, exist_ok=True)
  if not plan_path.exists():
    atomic_io.atomic_write_text(str(plan_path), json.dumps(plan, indent=1))
  for stale in partial.glob("*.tmp-*"):  # Half-written shards of a killed build.
    stale.unlink()


def _done_parts(partial: epath.Path, tasks: Sequence[_ShardTask]) -> dict[int, dict]:
  """Parts of shards a previous run finished (shard file present with the size its part says)."""
  done = {}
  for task in tasks:
    name = frame_shards.shard_name(task.number, task.count)
    part_path, shard_path = partial / f"{name}.json", partial / name
    if not part_path.exists() or not shard_path.exists():
      continue
    try:
      part = json.loads(part_path.read_text())
    except json.JSONDecodeError:
      continue
    if part.get("bytes") == shard_path.stat().length:
      done[task.number] = part
  return done


def _merge(parts: list[dict], plan: dict, seconds: float) -> dict:
  columns = {k: [] for k in frame_shards.VIDEO_COLUMNS}
  shards, bad, cut_off = [], [], []
  for s, part in enumerate(parts):
    shards.append({k: part[k] for k in ("file", "records", "bytes")} | {"videos": len(part["videos"])})
    for video in part["videos"]:
      for key in frame_shards.VIDEO_COLUMNS:
        columns[key].append(s if key == "shard" else video[key])
    bad += part["bad"]
    cut_off += part["cut_off"]
  cpu = sum(p["cpu_seconds"] for p in parts)
  videos = plan["videos"]
  return {"format": frame_shards.FORMAT, "version": frame_shards.VERSION, "settings": plan["settings"],
          "classes": plan["classes"], "source": plan["source"], "shards": shards, "videos": columns, "bad": bad,
          "cut_off": cut_off,
          "build": {"videos": videos, "stored": len(columns["path"]), "bad": len(bad), "cut_off": len(cut_off),
                    "frames": sum(s["records"] for s in shards), "bytes": sum(s["bytes"] for s in shards),
                    "cpu_seconds": round(cpu, 2), "videos_per_cpu_second": round(videos / cpu, 3) if cpu else None,
                    "wall_seconds_last_run": round(seconds, 2)}}


def _publish(partial: epath.Path, out: epath.Path, overwrite: bool) -> None:
  """Renames the finished `partial` to `out`; an old `out` is removed only after the new one is in place."""
  if out.exists():
    if any(out.iterdir()) and not overwrite:
      raise FileExistsError(f"{out} appeared while building; not overwriting it (the build is in {partial})")
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    out.rename(old)
    partial.rename(out)
    shutil.rmtree(old, ignore_errors=True)
  else:
    partial.rename(out)


# ---------------------------------------------------------------------------------------------------------


def build(videos: Sequence[VideoEntry], class_names: Sequence[str], out: epath.PathLike,
          settings: FrameSettings | None = None, *, videos_per_shard: int = 100, num_shards: int = 0,
          workers: int = 0, overwrite: bool = False, progress: bool = True, source: dict | None = None) -> dict:
  """Builds (or finishes building) the frame shards of `videos` in `out`; returns the index's "build" summary.

  Args:
    videos: the videos, in list order (their position is the index's `list_index`).
    class_names: the class list (labels are ids into it).
    out: output folder (local); `<out>.partial` holds the build until it is complete.
    settings: frame size, rate and JPEG quality.
    videos_per_shard, num_shards: shard size, or (if num_shards > 0) the number of shards.
    workers: worker processes (0: all cores; 1: in this process).
    overwrite: replace a complete `out`, or discard an unfinished build of another plan.
    progress: show a progress bar with ETA (on stderr).
    source: where the videos came from, kept in the index (list, root).
  """
  settings = settings or FrameSettings()
  settings.validate()
  if "://" in os.fspath(out):
    raise ValueError(f"{out}: frame shards are written to a local folder (the ArrayRecord writer writes local "
                     f"files only); build locally, then copy the folder (e.g. gcloud storage cp -r)")
  if not videos:
    raise ValueError("no videos to build")
  out = epath.Path(os.path.abspath(os.fspath(out)))
  if out.exists() and not out.is_dir():
    raise FileExistsError(f"{out} exists and is not a folder")
  if out.exists() and any(out.iterdir()) and not overwrite:
    raise FileExistsError(f"{out} already exists and is not empty; pass --overwrite to replace it (the old one is "
                          f"kept until the new build is complete)")
  count = num_shards if num_shards > 0 else math.ceil(len(videos) / max(int(videos_per_shard), 1))
  if count > len(videos):
    raise ValueError(f"{len(videos)} videos cannot fill {count} shards")
  plan = _plan(videos, class_names, settings, count, source or {})
  partial = out.parent / f"{out.name}.partial"
  _prepare_partial(partial, plan, overwrite)
  bounds = [len(videos) * s // count for s in range(count + 1)]
  tasks = [_ShardTask(s, count, bounds[s], tuple(videos[bounds[s]:bounds[s + 1]]), settings, str(partial))
           for s in range(count)]
  done = _done_parts(partial, tasks)
  pending = [t for t in tasks if t.number not in done]
  started = time.time()
  if done:
    print(f"resuming the build in {partial}: {len(done)} of {count} shards already done", file=sys.stderr)
  try:
    _run(pending, done, workers, progress, total=len(videos),
         initial=sum(len(t.videos) for t in tasks if t.number in done))
  except BaseException:  # Ctrl-C, an error: the finished shards stay for the next run, half-written ones go
    for stale in partial.glob("*.tmp-*"):
      stale.unlink(missing_ok=True)
    raise
  index = _merge([done[t.number] for t in tasks], plan, time.time() - started)
  atomic_io.atomic_write_text(str(partial / frame_shards.INDEX_NAME), json.dumps(index))
  labels.write_class_names(list(class_names), str(partial / "classes.csv"))
  atomic_io.atomic_write_text(str(partial / "bad_videos.tsv"), "path\terror\n" + "".join(
      f"{b['path']}\t{' '.join(b['error'].split())}\n" for b in index["bad"]))
  for task in tasks:  # The parts live on in index.json.
    (partial / f"{frame_shards.shard_name(task.number, count)}.json").unlink()
  (partial / PLAN_NAME).unlink()
  _publish(partial, out, overwrite)
  return index["build"]


def _run(pending: list[_ShardTask], done: dict[int, dict], workers: int, progress: bool, total: int,
         initial: int) -> None:
  """Builds the pending shards (adding their parts to `done`), with a progress bar over videos."""
  from tqdm.auto import tqdm

  workers = min(workers or os.cpu_count() or 1, max(len(pending), 1))
  bar = tqdm(total=total, initial=initial, unit="video", disable=not progress, dynamic_ncols=True, file=sys.stderr)
  bad = [0]

  def show(event: tuple) -> None:
    kind, name, message = event
    if kind == "bad":
      bad[0] += 1
      bar.write(f"bad video (skipped): {name}: {message}", file=sys.stderr)
    elif kind == "cut_off":
      bar.write(f"cut-off video (kept the frames that decode): {name}: {message}", file=sys.stderr)
    if kind in ("ok", "bad"):
      bar.update(1)
      bar.set_postfix(bad=bad[0], refresh=False)

  try:
    if workers <= 1:
      for task in pending:
        done[task.number] = _build_shard(task, show)
      return
    ctx = multiprocessing.get_context("spawn")
    events = ctx.Queue()
    with ctx.Pool(workers, initializer=_init_worker, initargs=(events, os.getpid())) as pool:
      results = {task.number: pool.apply_async(_build_shard, (task,)) for task in pending}
      while results:
        with contextlib.suppress(queue.Empty):
          show(events.get(timeout=0.2))
        for number in [n for n, r in results.items() if r.ready()]:
          done[number] = results.pop(number).get()  # Re-raises a worker's error here.
      while True:  # Events still in the queue after the last shard finished.
        try:
          show(events.get(timeout=0.1))
        except queue.Empty:
          break
  finally:
    bar.close()

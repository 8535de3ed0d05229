"""Building an index: every window of every video embedded, written in parts, resumable and shared by processes.

    summary = build_index(model, "runs/demo/supervised", videos, "my_index", window_s=8, stride_s=4)

Videos already in the index are skipped (adding videos appends; a killed build resumes where its last
complete part ended). Process `process_id` of `num_processes` takes every num_processes-th video of the
sorted list and writes its own parts, so several processes (or hosts, on gs://) fill one index. A video
that cannot be read is named in its part's report and the others go on; the next build tries it again.
Parts are flushed every `flush_seconds` of work or `flush_windows` windows, whichever comes first: a kill
loses at most that much work; a stop request (`should_stop`, polled after each video: Ctrl-C) flushes what was
embedded and returns. The progress bar counts seconds of video, with an ETA.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable, Sequence

import numpy as np

from xclip_jax.data import decode, frame_stream
from xclip_jax.search import store
from xclip_jax.search.embedder import iter_video_windows
from xclip_jax.search.windows import window_lengths


@dataclasses.dataclass
class BuildSummary:
  """What one build did: videos embedded now, skipped (already indexed), failed, windows and parts written."""

  embedded: int = 0
  skipped: int = 0
  todo: int = 0  # videos of this process not in the index when the build started
  failed: list[tuple[str, str]] = dataclasses.field(default_factory=list)
  windows: int = 0
  parts: int = 0
  seconds_of_video: float = 0.0


def my_videos(videos: Sequence[str], process_id: int, num_processes: int) -> list[str]:
  """This process's share: every num_processes-th video of the sorted, de-duplicated list."""
  if num_processes < 1 or not 0 <= process_id < num_processes:
    raise ValueError(f"--process-id must be in [0, --num-processes), got {process_id} of {num_processes}")
  return sorted(set(map(str, videos)))[process_id::num_processes]


def build_index(model, checkpoint: str, videos: Sequence[str], out: str, *, window_s: float | None = None,
                stride_s: float | None = None, frame_method: str | None = None, process_id: int = 0,
                num_processes: int = 1, batch_size: int = 16, progress: bool = True,
                flush_seconds: float = 30.0, flush_windows: int = 4096,
                should_stop: Callable[[], bool] | None = None) -> BuildSummary:
  """Embeds the windows of this process's videos that the index `out` lacks; returns what it did. Once
  `should_stop()` holds (asked after each video) it writes what it embedded and returns early."""
  window_s, stride_s = window_lengths(window_s, stride_s)
  manifest = store.open_or_create(out, store.manifest_for(model, checkpoint, window_s=window_s, stride_s=stride_s,
                                                          frame_method=frame_method))
  fingerprint = manifest["model"]["fingerprint"]
  store.remove_unfinished(out, process_id)
  done = {v["video"] for v in store.read_reports(out)[0]}
  mine = my_videos(videos, process_id, num_processes)
  todo = [v for v in mine if v not in done]
  summary = BuildSummary(skipped=len(mine) - len(todo), todo=len(todo))
  probed = {}
  for video in todo:  # headers first: the progress bar's total, in seconds of video
    try:
      probed[video] = frame_stream.probe(video).duration_s
    except decode.VideoDecodeError:
      probed[video] = 0.0  # fails again, named, when its turn comes
  bar = _bar(sum(probed.values()), len(todo), progress)
  part = store.Part(videos=[], failed=[])
  last_flush = time.monotonic()

  def flush():
    nonlocal part, last_flush
    if part.videos or part.failed:
      store.write_part(out, process_id, part, fingerprint)
      summary.parts += 1
    part, last_flush = store.Part(videos=[], failed=[]), time.monotonic()

  try:
    for result in iter_video_windows(model, todo, window_s=window_s, stride_s=stride_s,
                                     head=lambda features: _unit(features.embedding), batch_size=batch_size,
                                     on_seconds=bar.update):
      if result.error is not None:
        bar.write(f"search index: error: {result.path}: {result.error}", file=sys.stderr)
        part.failed.append({"video": result.path, "error": result.error})
        summary.failed.append((result.path, result.error))
      else:
        if result.warning:
          bar.write(f"search index: warning: {result.path}: {result.warning}", file=sys.stderr)
        part.videos.append({"video": result.path, "windows": len(result.windows),
                            "duration_s": round(result.duration_s, 6), "warning": result.warning})
        part.video += [result.path] * len(result.windows)
        part.start_s += [w.start_s for w in result.windows]
        part.end_s += [w.end_s for w in result.windows]
        part.vectors.append(np.asarray(result.values, np.float16))
        summary.embedded += 1
        summary.windows += len(result.windows)
        summary.seconds_of_video += result.duration_s
      bar.set_postfix_str(f"{summary.embedded + len(summary.failed)}/{len(todo)} videos")
      if should_stop is not None and should_stop():
        break
      if part.rows >= flush_windows or time.monotonic() - last_flush >= flush_seconds:
        flush()
    flush()
  finally:
    bar.close()
  return summary


def _unit(embedding):
  import jax.numpy as jnp

  embedding = embedding.astype(jnp.float32)
  return embedding / jnp.linalg.norm(embedding, axis=-1, keepdims=True)


def _bar(seconds: float, videos: int, enabled: bool):
  from tqdm.auto import tqdm

  return tqdm(total=round(seconds, 3), unit="s", unit_scale=True, disable=not enabled, dynamic_ncols=True,
              desc=f"indexing {videos} video{'s' * (videos != 1)}",
              bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s of video [{elapsed}<{remaining}"
                         "{postfix}]")

"""Metric writing (clu: TensorBoard event files + console) and training progress with ETA.

Device metrics are only fetched every `log_every` steps, so logging does not synchronise the host with
the accelerator on every step. Time spent in evaluation and checkpointing is excluded from throughput.

clu's event writer goes through tf.summary, whose gs:// client (TF's gfile) is not the one the rest of the
project uses and cannot be pointed at a test server; with a bucket workdir the events are written to a
local folder and uploaded, each changed file as one whole object, at most every `sync_seconds` and on
flush/close (`MirroredWriter`). `tensorboard --logdir gs://...` reads them there.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from clu import metric_writers

from xclip_jax import storage


def create_writer(workdir: str | os.PathLike, *, sync_seconds: float = 30.0) -> metric_writers.MetricWriter:
  """TensorBoard events in `workdir` plus console logging; other processes only log.

  A bucket workdir gets a `MirroredWriter` (events written locally, uploaded every `sync_seconds`).
  """
  if jax.process_index() > 0 or not storage.is_remote(workdir):
    return metric_writers.create_default_writer(os.fspath(workdir), just_logging=jax.process_index() > 0,
                                                asynchronous=True)
  local = tempfile.mkdtemp(prefix="xclip_jax_events-")
  return MirroredWriter(metric_writers.create_default_writer(local, asynchronous=True),
                        storage.FolderMirror(local, workdir), sync_seconds=sync_seconds)


class MirroredWriter(metric_writers.MetricWriter):
  """A writer into a local folder whose files are uploaded as whole objects (see the module docstring)."""

  def __init__(self, inner: metric_writers.MetricWriter, mirror: storage.FolderMirror, *, sync_seconds: float):
    self.inner, self.mirror, self.sync_seconds = inner, mirror, float(sync_seconds)
    self._last_sync = time.monotonic()

  def _maybe_sync(self) -> None:
    if time.monotonic() - self._last_sync >= self.sync_seconds:
      self.flush()

  def write_summaries(self, step, values, metadata=None):
    self.inner.write_summaries(step, values, metadata)
    self._maybe_sync()

  def write_scalars(self, step, scalars):
    self.inner.write_scalars(step, scalars)
    self._maybe_sync()

  def write_images(self, step, images):
    self.inner.write_images(step, images)
    self._maybe_sync()

  def write_videos(self, step, videos):
    self.inner.write_videos(step, videos)
    self._maybe_sync()

  def write_audios(self, step, audios, *, sample_rate):
    self.inner.write_audios(step, audios, sample_rate=sample_rate)
    self._maybe_sync()

  def write_texts(self, step, texts):
    self.inner.write_texts(step, texts)
    self._maybe_sync()

  def write_histograms(self, step, arrays, num_buckets=None):
    self.inner.write_histograms(step, arrays, num_buckets)
    self._maybe_sync()

  def write_hparams(self, hparams):
    self.inner.write_hparams(hparams)
    self._maybe_sync()

  def flush(self) -> None:
    """Writes what is pending and uploads the changed event files."""
    self.inner.flush()
    self.mirror.sync()
    self._last_sync = time.monotonic()

  def close(self) -> None:
    self.inner.close()
    self.mirror.sync()
    shutil.rmtree(self.mirror.local, ignore_errors=True)


def _format_seconds(seconds: float) -> str:
  seconds = int(max(seconds, 0))
  hours, rest = divmod(seconds, 3600)
  return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


class ProgressReporter:
  """Logs loss, learning rates, steps/s, clips/s and ETA every `log_every` steps."""

  def __init__(self, writer: metric_writers.MetricWriter, *, total_steps: int, clips_per_step: int,
               log_every: int, first_step: int):
    self.writer = writer
    self.total_steps = total_steps
    self.clips_per_step = clips_per_step
    self.log_every = max(int(log_every), 1)
    self._pending: list[Mapping[str, jax.Array]] = []
    self._window_start = time.perf_counter()
    self._window_steps = 0
    self._paused_at: float | None = None
    self.first_step = first_step

  def pause(self) -> None:
    """Stops the clock (evaluation, checkpointing) until `resume`."""
    if self._paused_at is None:
      self._paused_at = time.perf_counter()

  def resume(self) -> None:
    if self._paused_at is not None:
      self._window_start += time.perf_counter() - self._paused_at
      self._paused_at = None

  def update(self, step: int, metrics: Mapping[str, jax.Array], extra: Mapping[str, Any] | None = None) -> None:
    """Records the metrics of the step that just finished (`step` = steps done)."""
    self._pending.append(metrics)
    self._window_steps += 1
    if step % self.log_every and step != self.total_steps:
      return
    fetched = jax.device_get(self._pending)  # one host sync per window
    self._pending = []
    elapsed = max(time.perf_counter() - self._window_start, 1e-9)
    steps_per_second = self._window_steps / elapsed
    scalars = {key: float(np.mean([m[key] for m in fetched])) for key in fetched[-1]}
    scalars.update(steps_per_second=steps_per_second, clips_per_second=steps_per_second * self.clips_per_step)
    scalars.update(extra or {})
    self.writer.write_scalars(step, scalars)
    eta = (self.total_steps - step) / steps_per_second
    lrs = " ".join(f"{k}={v:.2e}" for k, v in scalars.items() if k.startswith("lr/"))
    logging.info("step %d/%d | loss %.4f | %s | %.2f steps/s | %.1f clips/s | ETA %s", step, self.total_steps,
                 scalars["loss"], lrs, steps_per_second, scalars["clips_per_second"], _format_seconds(eta))
    self._window_start = time.perf_counter()
    self._window_steps = 0
    if self._paused_at is not None:
      self._paused_at = self._window_start

"""How fast a loaded model classifies on the attached accelerator, and which accelerator that is.

    print(describe_devices())                                  # platform, kind, memory of each device
    result = measure_throughput(model, batch_size=32)          # compiled, timed with block_until_ready
    print(result)                                              # clips/s: median and range over repetitions

What is timed is the model alone, as `video_files.classify_videos` runs it: the video tower, prompt
generator and logits against class texts encoded once, on a batch of `batch_size` clips (T frames each)
already on the device. Decoding videos and copying them to the device are not included (see
scripts/benchmark_predict.py for the whole pipeline). The first call (compilation) is timed apart, and
further `warmup` calls are not timed.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from typing import Any

import numpy as np


def describe_devices() -> list[dict[str, Any]]:
  """One dict per JAX device: id, platform ("cpu", "gpu", "tpu"), kind, and memory in GiB where it is reported."""
  import jax

  rows = []
  for device in jax.devices():
    row = {"id": device.id, "platform": device.platform, "kind": device.device_kind, "memory_gib": None}
    try:
      stats = device.memory_stats()
    except Exception:  # Not every backend reports memory (CPU returns None or raises).
      stats = None
    if stats and stats.get("bytes_limit"):
      row["memory_gib"] = round(stats["bytes_limit"] / 2**30, 1)
    rows.append(row)
  return rows


def format_devices(rows: list[dict[str, Any]] | None = None) -> str:
  """`describe_devices()` as a few lines of text."""
  rows = describe_devices() if rows is None else rows
  lines = [f"{len(rows)} device(s), platform {rows[0]['platform'] if rows else '?'}:"]
  for row in rows:
    memory = f", {row['memory_gib']} GiB" if row["memory_gib"] is not None else ""
    lines.append(f"  {row['id']}: {row['kind']}{memory}")
  return "\n".join(lines)


@dataclasses.dataclass
class Throughput:
  """Timing of one model on one device.

  Attributes:
    device: the device kind (e.g. "NVIDIA H100 80GB HBM3", "TPU v5 lite", "cpu").
    batch_size: clips per call; frames, image_size: each clip's; dtype: compute dtype; classes: texts scored.
    first_call_seconds: the first call: it compiles the model for this batch shape, unless an earlier call
      with the same shape (e.g. an evaluation) already did.
    seconds: each timed call (after `warmup` further calls).
  """

  device: str
  batch_size: int
  frames: int
  image_size: int
  dtype: str
  classes: int
  first_call_seconds: float
  seconds: list[float]

  @property
  def clips_per_second(self) -> float:
    """Median over repetitions."""
    return self.batch_size / statistics.median(self.seconds)

  @property
  def clips_per_second_range(self) -> tuple[float, float]:
    return self.batch_size / max(self.seconds), self.batch_size / min(self.seconds)

  def __str__(self) -> str:
    low, high = self.clips_per_second_range
    return (f"{self.clips_per_second:.1f} clips/s (range {low:.1f}-{high:.1f} over {len(self.seconds)} calls) on "
            f"{self.device}: batch of {self.batch_size} clips x {self.frames} frames at {self.image_size} px, "
            f"{self.dtype}, {self.classes} classes; {statistics.median(self.seconds) * 1000:.1f} ms per call; "
            f"first call {self.first_call_seconds:.1f} s (compiles unless this shape ran before)")


def measure_throughput(model, *, batch_size: int = 8, repetitions: int = 5, warmup: int = 1, classes: int = 400,
                       seed: int = 0) -> Throughput:
  """Times `model` (an `xclip_jax.InferenceModel`) classifying `batch_size` clips against `classes` texts.

  Inputs are random, ImageNet-normalised and placed on the default device beforehand; every call is waited
  for with `jax.block_until_ready`. Reports each of `repetitions` calls, so the spread is visible.
  """
  import jax
  import jax.numpy as jnp

  if batch_size < 1 or repetitions < 1 or warmup < 0 or classes < 1:
    raise ValueError(f"need batch_size, repetitions, classes >= 1 and warmup >= 0; got {batch_size}, "
                     f"{repetitions}, {classes}, {warmup}")
  config = model.config
  rng = np.random.default_rng(seed)
  videos = jax.device_put(jnp.asarray(
      rng.standard_normal((batch_size, config.num_frames, config.image_size, config.image_size, 3), np.float32)))
  text = rng.standard_normal((classes, config.embed_dim), np.float32)
  text = jax.device_put(jnp.asarray(text / np.linalg.norm(text, axis=-1, keepdims=True)))

  def call():
    return jax.block_until_ready(model.logits(model.encode_video(videos), text))

  started = time.perf_counter()
  call()
  first_call_seconds = time.perf_counter() - started
  for _ in range(warmup):
    call()
  seconds = []
  for _ in range(repetitions):
    started = time.perf_counter()
    call()
    seconds.append(time.perf_counter() - started)
  return Throughput(device=jax.devices()[0].device_kind, batch_size=batch_size, frames=config.num_frames,
                    image_size=config.image_size, dtype=str(config.dtype), classes=classes,
                    first_call_seconds=first_call_seconds, seconds=seconds)

"""How many clips each host must decode and augment per second to keep its chips busy, in CPUs.

The decode rate (clips per CPU-second per worker) depends on the run's input: its source, frame size, clip
length and augmentation. `decode_rate(config)` finds the run's own:
- frame shards (data.source "frames") and the synthetic videos (the demo): measured here, on this machine, in a
  few seconds: the run's own train pipeline (`pipeline.make_train_iterator`, its sampling and augmentation, in
  this process) reads clips of small videos made at the run's stored frame size;
- MP4 files of unknown size (files, folders, ArrayRecord, TFDS): what `scripts/benchmark_data.py` measured for
  the MP4 path (PyAV, 8 frames at 224 px from 10-second 340p H.264 files): 4.6-6.0 clips per CPU-second per
  worker on this project's 2-core test machine, so about 5, scaled by the clip length.
Every plan prints the rate it assumed and where it came from; `--decode-rate` sets it (measure yours with
scripts/benchmark_data.py).
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from typing import Any

# Clips per CPU-second per decoding worker, MP4 path, 8 frames at 224 px (README "Speed" of the data section).
DEFAULT_DECODE_RATE = 5.0
DECODE_RATE_SOURCE = ("scripts/benchmark_data.py, PyAV, 8 frames at 224 px from 340p H.264: 4.6-6.0 clips per "
                      "CPU-second per worker (2-core test machine, busy)")


MP4_SOURCES = ("files", "folders", "arrayrecord", "tfds")


def decode_rate(config, seconds: float = 2.0) -> tuple[float, str]:
  """(clips per CPU-second per worker, where that figure comes from) for the run's input (see the module)."""
  data = config.data
  frames = int(data.num_frames)
  if data.source in MP4_SOURCES:
    return DEFAULT_DECODE_RATE * 8 / frames, (
        f"{DECODE_RATE_SOURCE}, scaled to {frames} frames; data.source={data.source!r} reads MP4 files whose size "
        f"the plan does not know: measure yours with scripts/benchmark_data.py and pass --decode-rate")
  return _measure(config, seconds)


def _synthetic_settings(config) -> dict[str, Any]:
  """The synthetic videos the run reads (the demo's), or small ones at the frame shards' stored size."""
  data = config.data
  settings = dict(config.demo.synthetic.to_dict()) if "demo" in config and "synthetic" in config.demo else {}
  if data.source == "frames" and int(data.frames.short_side) > 0:
    settings["size"] = int(data.frames.short_side) + int(data.frames.short_side) % 2
  settings.setdefault("size", max(int(data.input_size), 16) + int(data.input_size) % 2)
  settings.setdefault("frames", max(int(data.num_frames), 16))
  settings.update(train_per_class=1, val_per_class=1, zero_shot_per_class=1, few_shot_train_per_class=1)
  return settings


def _measure(config, seconds: float) -> tuple[float, str]:
  from xclip_jax.data import frame_build, labels, pipeline, sources, synthetic
  from xclip_jax.data.frame_extract import FrameSettings

  data = config.data
  settings = _synthetic_settings(config)
  with tempfile.TemporaryDirectory(prefix="xclip_jax_input_rate-") as folder:
    synthetic.generate(os.path.join(folder, "videos"), quiet=True, **settings)
    cfg = data.copy_and_resolve_references()
    cfg.source, cfg.synthetic_dir, cfg.synthetic_task = "synthetic", os.path.join(folder, "videos"), "supervised"
    cfg.num_workers, cfg.batch_size, cfg.k_shot, cfg.bad_video_log = 0, 4, 0, ""
    what = f"the run's MP4 videos ({settings['size']} px, {settings['frames']} frames)"
    if data.source == "frames":
      list_path, class_csv = sources.synthetic_paths(cfg.synthetic_dir, "supervised", "train")
      names = labels.read_class_names(class_csv)
      videos = [frame_build.VideoEntry(r.path, r.label, os.path.basename(r.path))
                for r in labels.read_label_list(list_path, cfg.synthetic_dir, num_classes=len(names))]
      shards = os.path.join(folder, "frames")
      frame_build.build(videos, names, shards, FrameSettings(short_side=int(data.frames.short_side),
                                                             fps=float(data.frames.fps), chroma="444"),
                        workers=1, progress=False)
      cfg.source, cfg.frames.train = "frames", shards
      what = f"frame shards ({settings['size']} px stored)"
    iterator = pipeline.make_train_iterator(cfg, process_index=0, process_count=1)
    try:
      next(iterator)  # first batch: set-up and imports, not timed
      clips, cpu_start, wall_start = 0, time.process_time(), time.perf_counter()
      while clips < 8 or time.perf_counter() - wall_start < seconds:
        next(iterator)
        clips += int(cfg.batch_size)
      rate = clips / max(time.process_time() - cpu_start, 1e-6)
    finally:
      iterator.close()
  augment = "colour on the device" if data.augment.get("color_on_device") else "colour jitter on the host"
  return rate, (f"measured on this machine ({os.cpu_count()} CPUs) in {seconds:g} s: the run's train pipeline reading "
                f"{what}, {int(data.num_frames)} frames a clip at {int(data.input_size)} px, {augment}")


@dataclasses.dataclass
class InputBudget:
  clips_per_s_per_chip: float  # what the accelerator would consume (the roofline's estimate)
  chips_per_host: int
  vcpus_per_host: int
  decode_rate: float  # clips per CPU-second per worker
  decode_rate_source: str

  @property
  def clips_per_s_per_host(self) -> float:
    return self.clips_per_s_per_chip * self.chips_per_host

  @property
  def cpus_needed_per_chip(self) -> float:
    return self.clips_per_s_per_chip / self.decode_rate

  @property
  def vcpus_per_chip(self) -> float:
    return self.vcpus_per_host / self.chips_per_host

  @property
  def input_bound_clips_per_s_per_chip(self) -> float:
    """What every vCPU of the host decoding at `decode_rate` could feed one chip."""
    return self.vcpus_per_chip * self.decode_rate

  @property
  def input_bound(self) -> bool:
    return self.cpus_needed_per_chip > self.vcpus_per_chip

  def to_dict(self) -> dict[str, Any]:
    out = dataclasses.asdict(self)
    out.update(clips_per_s_per_host=self.clips_per_s_per_host, cpus_needed_per_chip=self.cpus_needed_per_chip,
               vcpus_per_chip=self.vcpus_per_chip, input_bound=self.input_bound,
               input_bound_clips_per_s_per_chip=self.input_bound_clips_per_s_per_chip)
    return out

"""How many clips each host must decode and augment per second to keep its chips busy, in CPUs.

The decode rate is a parameter, not a constant: the default is what `scripts/benchmark_data.py` measured for
the MP4 path (PyAV, 8 frames at 224 px from 10-second 340p H.264 files): 4.6-6.0 clips per CPU-second per
worker on this project's 2-core test machine, so about 5. Faster inputs (pre-decoded JPEG frame shards) or
longer clips change it; measure yours with that script and pass it (`--decode-rate`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

# Clips per CPU-second per decoding worker, MP4 path, 8 frames at 224 px (README "Speed" of the data section).
DEFAULT_DECODE_RATE = 5.0
DECODE_RATE_SOURCE = ("scripts/benchmark_data.py, PyAV, 8 frames at 224 px from 340p H.264: 4.6-6.0 clips per "
                      "CPU-second per worker (2-core test machine, busy)")


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

"""A roofline estimate of a step's time from its FLOPs, memory traffic and collectives, at published peaks.

Following the JAX team's "How to Scale Your Model" (roofline chapter): compute time = FLOPs / peak FLOP/s,
memory time = bytes accessed / HBM bandwidth, interconnect time = collective bytes / ICI bandwidth, where an
all-gather or reduce-scatter of V bytes takes about V / W_ici and an all-reduce about 2 V / W_ici (W_ici the
chip's bidirectional bandwidth). If the three overlap perfectly the step takes their maximum (the lower
bound); if nothing overlaps, their sum (the upper bound). Peaks are never reached, so read the clips/s and
MFU that follow as ceilings: they are the roofline's estimates, not measurements.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from xclip_jax.planning import chips, hlo_collectives

# Bytes moved per byte of array, per collective kind (ring algorithms, bidirectional links).
ICI_FACTOR = {"all-gather": 1.0, "reduce-scatter": 1.0, "all-reduce": 2.0, "all-to-all": 1.0,
              "collective-permute": 1.0}


@dataclasses.dataclass
class Roofline:
  """Per-chip time estimates of one step (seconds) and what follows from them."""

  compute_s: float
  hbm_s: float
  ici_s: float
  flops_source: str  # which FLOP count the compute time used
  clips_per_step_per_chip: float
  model_flops_per_chip: float  # analytic (xclip_jax.perf), without rematerialisation: the MFU numerator
  peak_flops: float

  @property
  def lower_s(self) -> float:
    return max(self.compute_s, self.hbm_s, self.ici_s)

  @property
  def upper_s(self) -> float:
    return self.compute_s + self.hbm_s + self.ici_s

  @property
  def bound(self) -> str:
    times = {"compute": self.compute_s, "memory": self.hbm_s, "interconnect": self.ici_s}
    return max(times, key=times.get)

  @property
  def clips_per_s_per_chip(self) -> tuple[float, float]:
    """(at the upper time, at the lower time): the range the roofline allows."""
    return self.clips_per_step_per_chip / self.upper_s, self.clips_per_step_per_chip / self.lower_s

  @property
  def mfu_bound(self) -> float:
    """Model FLOPs utilisation if the step took the lower-bound time: a ceiling, not a forecast."""
    return self.model_flops_per_chip / (self.lower_s * self.peak_flops)

  def to_dict(self) -> dict[str, Any]:
    out = dataclasses.asdict(self)
    low, high = self.clips_per_s_per_chip
    out.update(lower_s=self.lower_s, upper_s=self.upper_s, bound=self.bound, clips_per_s_per_chip_range=[low, high],
               mfu_bound=self.mfu_bound)
    return out


def ici_seconds(collectives: hlo_collectives.CollectiveSummary | None, chip: chips.ChipFacts) -> float:
  if collectives is None:
    return 0.0
  return sum(ICI_FACTOR[kind] * size for kind, size in collectives.bytes.items()) / chip.ici_bytes_per_s


def estimate(chip: chips.ChipFacts, *, flops_per_chip: float, flops_source: str, bytes_accessed_per_chip: float,
             collectives: hlo_collectives.CollectiveSummary | None, clips_per_step_per_chip: float,
             model_flops_per_chip: float) -> Roofline:
  return Roofline(compute_s=flops_per_chip / chip.bf16_flops, hbm_s=bytes_accessed_per_chip / chip.hbm_bytes_per_s,
                  ici_s=ici_seconds(collectives, chip), flops_source=flops_source,
                  clips_per_step_per_chip=clips_per_step_per_chip, model_flops_per_chip=model_flops_per_chip,
                  peak_flops=chip.bf16_flops)

"""Published peak figures of the accelerators a plan can target: one table, with where each number comes from.

Every estimate the planner prints (step time, MFU bound, input budget) divides by these numbers, so they are
kept in one place with their sources. They are vendor peaks, not measurements; real kernels reach a fraction
of them.
"""

from __future__ import annotations

import dataclasses

GIB = 1024**3


@dataclasses.dataclass(frozen=True)
class ChipFacts:
  """One accelerator chip (the unit a Cloud TPU name counts as 'chip'; one JAX device per chip)."""

  name: str  # short name: "v5e", "v4", ...
  device_kinds: tuple[str, ...]  # jax `device.device_kind` strings that mean this chip
  hbm_bytes: int  # memory per chip
  bf16_flops: float  # dense bf16 peak, FLOP/s per chip
  hbm_bytes_per_s: float  # memory bandwidth per chip
  ici_bytes_per_s: float  # bidirectional inter-chip bandwidth per chip (all links together)
  source: str  # where the figures come from

  def describe(self) -> str:
    return (f"{self.name}: {self.hbm_bytes / GIB:.0f} GiB HBM, {self.bf16_flops / 1e12:.0f} TFLOP/s bf16, "
            f"{self.hbm_bytes_per_s / 1e9:.0f} GB/s HBM, {self.ici_bytes_per_s / 1e9:.0f} GB/s ICI")


CLOUD_TPU_DOCS = "https://cloud.google.com/tpu/docs/"
CHIPS: dict[str, ChipFacts] = {
    "v4": ChipFacts(
        "v4", ("TPU v4",), 32 * GIB, 275e12, 1200e9, 6 * 2 * 45e9,
        source=f"{CLOUD_TPU_DOCS}v4 (275 TFLOP/s, 32 GiB, 1200 GBps); ICI: 6 links x 45 GB/s each way "
               "(JAX team, How to Scale Your Model, 'All about TPUs')"),
    "v5e": ChipFacts(
        "v5e", ("TPU v5 lite", "TPU v5e"), 16 * GIB, 197e12, 819e9, 400e9,
        source=f"{CLOUD_TPU_DOCS}v5e (197 TFLOP/s, 16 GiB, 819 GBps, 400 GBps bidirectional ICI)"),
    "v5p": ChipFacts(
        "v5p", ("TPU v5", "TPU v5p"), 95 * GIB, 459e12, 2765e9, 1200e9,
        source=f"{CLOUD_TPU_DOCS}v5p-training (459 TFLOP/s, 95 GiB, 2765 GBps, 1200 GBps bidirectional ICI)"),
    "v6e": ChipFacts(
        "v6e", ("TPU v6 lite", "TPU v6e"), 32 * 10**9, 918e12, 1638e9, 800e9,
        source=f"{CLOUD_TPU_DOCS}v6e (918 TFLOP/s, 32 GB, 1638 GBps, 800 GBps bidirectional ICI)"),
    # GPUs, for `--topology local` on a GPU host (NVLink as the interconnect).
    "H100": ChipFacts(
        "H100", ("NVIDIA H100 80GB HBM3", "NVIDIA H100"), 80 * 10**9, 989e12, 3350e9, 900e9,
        source="NVIDIA H100 SXM datasheet (989 TFLOP/s dense bf16, 80 GB, 3.35 TB/s, NVLink 900 GB/s)"),
    "H200": ChipFacts(
        "H200", ("NVIDIA H200",), 141 * 10**9, 989e12, 4800e9, 900e9,
        source="NVIDIA H200 SXM datasheet (989 TFLOP/s dense bf16, 141 GB, 4.8 TB/s, NVLink 900 GB/s)"),
    "A100": ChipFacts(
        "A100", ("NVIDIA A100-SXM4-80GB", "NVIDIA A100-SXM4-40GB", "NVIDIA A100"), 80 * 10**9, 312e12, 2039e9, 600e9,
        source="NVIDIA A100 SXM datasheet (312 TFLOP/s dense bf16, 80 GB, 2.0 TB/s, NVLink 600 GB/s)"),
}


def for_device_kind(device_kind: str) -> ChipFacts | None:
  """The chip a JAX `device_kind` names (exact match first, then prefix), or None (e.g. CPU)."""
  for facts in CHIPS.values():
    if device_kind in facts.device_kinds:
      return facts
  for facts in CHIPS.values():
    if any(device_kind.startswith(kind) for kind in facts.device_kinds if kind.startswith("NVIDIA")):
      return facts
  return None

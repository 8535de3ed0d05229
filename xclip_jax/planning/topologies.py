"""Cloud TPU slice names ("v5e-16", "v4-32") as the compiler's topologies, and their compile-only devices.

Cloud counts v4 and v5p slices in TensorCores (two per chip: v4-8 is 4 chips) and v5e / v6e slices in chips.
Each name maps to the topology string `jax.experimental.topologies.get_topology_desc` understands, the chip
configuration (v4 / v5p run both cores of a chip as one device, "megacore"), the chips per host and the
host VM's vCPUs (for the input budget). The shapes follow Cloud TPU's documented slice shapes (the same
table as MaxText's accelerator_to_spec_map.py).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

from xclip_jax.planning import chips

# libtpu asks the GCE metadata server about the local TPU unless told not to, and lets one process at a time
# load it (a lock file in /tmp); compile-only devices touch no TPU, so plans (and test workers) may run side
# by side.
QUIET_LIBTPU_ENV = {"TPU_SKIP_MDS_QUERY": "1", "ALLOW_MULTIPLE_LIBTPU_LOAD": "1"}
# Only for a process of its own (the `xclip_jax.plan` command): these also silence libtpu's start-up warnings
# but would make `xclip_jax.main` started from that process think it is a multi-host TPU job.
COMMAND_LIBTPU_ENV = {**QUIET_LIBTPU_ENV, "TPU_HOST_BOUNDS": "1,1,1", "TPU_WORKER_HOSTNAMES": "localhost"}


@dataclasses.dataclass(frozen=True)
class Topology:
  name: str  # Cloud name, e.g. "v5e-16"
  chip: chips.ChipFacts
  shape: str  # compiler topology, e.g. "v5e:4x4"
  chips: int
  chips_per_host: int
  vcpus_per_host: int
  chip_config: str = "default"  # "megacore" for v4 / v5p
  wrap: tuple[bool, bool, bool] = (False, False, False)  # torus wrap-around per dimension

  @property
  def hosts(self) -> int:
    return self.chips // self.chips_per_host

  @property
  def host_bounds(self) -> tuple[int, int, int]:
    """Chips per host along each topology dimension."""
    return (2, 4, 1) if self.chips_per_host == 8 else (1, 1, 1) if self.chips_per_host == 1 else (2, 2, 1)

  def describe(self) -> str:
    return (f"{self.name}: {self.chips} x {self.chip.name} chips ({self.shape}), {self.hosts} host(s) x "
            f"{self.chips_per_host} chips, {self.vcpus_per_host} vCPUs per host")


# v5e / v6e single-host slices (1, 4, 8 chips) are one VM; bigger slices are 4-chip VMs (Cloud TPU v5e / v6e
# docs: ct5lp-hightpu-1t/4t/8t = 24/112/224 vCPUs; ct6e-standard-1t/4t/8t = 44/180/180 vCPUs).
_V5E_V6E_SHAPES = {1: "1x1", 4: "2x2", 8: "2x4", 16: "4x4", 32: "4x8", 64: "8x8", 128: "8x16", 256: "16x16"}
_V5E_VCPUS = {1: 24, 4: 112, 8: 224}
_V6E_VCPUS = {1: 44, 4: 180, 8: 180}
# v4 / v5p: chips -> 3D shape (Cloud TPU v4 / v5p docs, slice shapes); 4 chips per host.
_CUBE_SHAPES = {4: "2x2x1", 8: "2x2x2", 16: "2x2x4", 32: "2x4x4", 64: "4x4x4", 128: "4x4x8", 192: "4x4x12",
                256: "4x8x8", 512: "8x8x8", 768: "8x8x12", 1024: "8x8x16", 2048: "8x16x16"}
_V4_VCPUS = 240  # v4 TPU VM; not re-checked against the current Cloud docs
_V5P_VCPUS = 208  # Cloud TPU v5p docs: 4-chip VM


def _flat_topologies() -> dict[str, Topology]:
  table: dict[str, Topology] = {}
  for chips_count, shape in _V5E_V6E_SHAPES.items():
    per_host = chips_count if chips_count <= 8 else 4
    wrap = (True, True, False) if chips_count == 256 else (False, True, False) if chips_count == 128 else \
        (False, False, False)
    for family, vcpus in (("v5e", _V5E_VCPUS), ("v6e", _V6E_VCPUS)):
      table[f"{family}-{chips_count}"] = Topology(
          f"{family}-{chips_count}", chips.CHIPS[family], f"{family}:{shape}", chips_count, per_host,
          vcpus.get(per_host, vcpus[4]), wrap=wrap)
  for chips_count, shape in _CUBE_SHAPES.items():
    wrap = (True, True, True) if chips_count >= 64 else (False, False, False)
    per_host = 4
    table[f"v4-{2 * chips_count}"] = Topology(f"v4-{2 * chips_count}", chips.CHIPS["v4"], f"v4:{shape}", chips_count,
                                              per_host, _V4_VCPUS, chip_config="megacore", wrap=wrap)
    table[f"v5p-{2 * chips_count}"] = Topology(f"v5p-{2 * chips_count}", chips.CHIPS["v5p"], f"v5:{shape}",
                                               chips_count, per_host, _V5P_VCPUS, chip_config="megacore", wrap=wrap)
  return table


TOPOLOGIES = _flat_topologies()


def _sort_key(name: str) -> tuple[str, int]:
  family, count = name.rsplit("-", 1)
  return family, int(count)


def known_names() -> list[str]:
  return sorted(TOPOLOGIES, key=_sort_key)


def lookup(name: str) -> Topology:
  """The topology of a Cloud TPU name; an unknown name raises ValueError listing the known ones."""
  if name in TOPOLOGIES:
    return TOPOLOGIES[name]
  families: dict[str, list[str]] = {}
  for known in known_names():
    family, count = known.rsplit("-", 1)
    families.setdefault(family, []).append(count)
  listing = "; ".join(f"{family}-{{{','.join(counts)}}}" for family, counts in families.items())
  raise ValueError(f"Unknown TPU topology {name!r}. Known names (v4 and v5p count TensorCores, two per chip; "
                   f"v5e and v6e count chips): {listing}; or 'local' for this machine's own devices.")


def quiet_libtpu(environ: dict[str, str] | None = None, *, own_process: bool = False) -> None:
  """Keeps libtpu off the network (and, in a process of its own, quiet); call before the first compile."""
  environ = os.environ if environ is None else environ
  for key, value in (COMMAND_LIBTPU_ENV if own_process else QUIET_LIBTPU_ENV).items():
    environ.setdefault(key, value)


def devices(topology: Topology) -> Sequence:
  """Compile-only TPU devices of the slice (one per chip); they can compile programs but hold no data."""
  try:
    from jax.experimental import topologies as jax_topologies
  except ImportError as e:  # pragma: no cover - jax always ships it
    raise RuntimeError("jax.experimental.topologies is missing from this jax") from e
  quiet_libtpu()
  try:
    description = jax_topologies.get_topology_desc(
        topology_name=topology.shape, platform="tpu", chip_config_name=topology.chip_config,
        chips_per_host_bounds=topology.host_bounds, num_slices=1, wrap=topology.wrap)
  except Exception as e:  # libtpu missing or too old for this chip
    raise RuntimeError(f"Cannot describe {topology.name} ({topology.shape}) for the TPU compiler: {e}. Compiling for "
                       f"TPUs needs libtpu: pip install 'xclip_jax[tpu]' (or jax[tpu] of the installed jax version).")\
        from e
  found = list(description.devices)
  if len(found) != topology.chips:
    raise RuntimeError(f"{topology.name}: the compiler described {len(found)} devices, expected {topology.chips}.")
  return found

"""What the compiler says about one program: memory per device, FLOPs, collectives, or its refusal to fit.

Figures are the compiler's estimates for the compiled program (XLA's `memory_analysis()` and
`cost_analysis()`, per device), not measurements. Peak memory per device is argument + output - aliased +
temporaries + generated code (XLA's `compiled_memory_stats.h`); the train step donates its state, so the
aliased bytes are the state that is updated in place.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
from etils import epath
from jax.sharding import Mesh

from xclip_jax.planning import hlo_collectives

_SIZE = r"([0-9.]+)\s*([KMGT]i?B?|bytes|B)?"
_OOM_PATTERNS = (
    re.compile(r"required[^(]*\(" + _SIZE + r"\)\s*exceeds available HBM\s*\(" + _SIZE + r"\)", re.I),
    re.compile(r"Used\s+" + _SIZE + r"\s+of\s+" + _SIZE + r"\s+hbm", re.I),
)
_UNITS = {"": 1, "B": 1, "bytes": 1, "K": 1024, "KB": 1024, "KiB": 1024, "M": 1024**2, "MB": 1024**2, "MiB": 1024**2,
          "G": 1024**3, "GB": 1024**3, "GiB": 1024**3, "T": 1024**4, "TB": 1024**4, "TiB": 1024**4}


def _bytes(value: str, unit: str | None) -> int:
  return int(float(value) * _UNITS.get(unit or "", 1))


@dataclasses.dataclass
class ProgramReport:
  """One compiled program on one device (per-device figures)."""

  name: str
  compile_seconds: float
  fits: bool | None = None  # None: no memory limit known (e.g. CPU)
  argument_bytes: int = 0
  output_bytes: int = 0
  alias_bytes: int = 0
  temp_bytes: int = 0
  code_bytes: int = 0
  limit_bytes: int | None = None  # the device memory judged against
  resident_bytes: int = 0  # state that stays in memory beside this program (e.g. optimizer during eval)
  flops: float | None = None  # XLA cost analysis, per device (loop bodies counted once)
  bytes_accessed: float | None = None
  optimal_seconds: float | None = None  # the TPU compiler's own time estimate, where it gives one
  collectives: hlo_collectives.CollectiveSummary | None = None
  refusal: str | None = None  # the compiler's RESOURCE_EXHAUSTED message
  required_bytes: int | None = None  # from the refusal
  available_bytes: int | None = None  # from the refusal
  cached: bool = False  # read from the plan cache (same program, devices and compiler), not compiled again

  @property
  def total_bytes(self) -> int:
    """Peak memory per device: the compiler's figure, or what its refusal said was required."""
    if self.refusal is not None:
      return self.required_bytes or 0
    return self.argument_bytes + self.output_bytes - self.alias_bytes + self.temp_bytes + self.code_bytes

  @property
  def peak_bytes(self) -> int:
    """Peak with the state that stays resident beside this program."""
    return self.total_bytes + self.resident_bytes

  @property
  def loops_with_trips(self) -> bool:
    """True when the program repeats matrix multiplications in a loop (scanned layers, gradient
    accumulation): XLA's cost analysis then counts that body once. Loops without matmuls (a permutation's
    sorting rounds, rejection sampling) do not change the FLOP count."""
    return bool(self.collectives) and any((loop["trips"] or 1) > 1 and loop.get("has_matmuls")
                                          for loop in self.collectives.loops)

  def to_dict(self) -> dict[str, Any]:
    out = {k: v for k, v in dataclasses.asdict(self).items() if k != "collectives"}
    out["total_bytes"] = self.total_bytes
    out["peak_bytes"] = self.peak_bytes
    out["collectives"] = self.collectives.to_dict() if self.collectives else None
    return out


def parse_refusal(message: str) -> tuple[int | None, int | None]:
  """(required, available) bytes from the TPU compiler's out-of-memory message, where it states them."""
  for pattern in _OOM_PATTERNS:
    match = pattern.search(message)
    if match:
      return _bytes(match.group(1), match.group(2)), _bytes(match.group(3), match.group(4))
  return None, None


def is_out_of_memory(error: BaseException) -> bool:
  text = str(error)
  return "RESOURCE_EXHAUSTED" in text or "Ran out of memory" in text


def _cache_key(lowered: Any, mesh: Mesh, limit_bytes: int | None) -> str:
  """What determines the compiler's answer: the program, the devices (kind, layout over hosts) and the compiler."""
  import importlib.metadata

  def version(package: str) -> str:
    try:
      return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
      return "-"

  devices = [(d.device_kind, d.id, d.process_index, str(getattr(d, "coords", ""))) for d in mesh.devices.flat]
  text = "\n".join([lowered.as_text(), repr(dict(mesh.shape)), repr(devices), repr(limit_bytes), jax.__version__,
                    version("jaxlib"), version("libtpu"), str(CACHE_VERSION)])
  return hashlib.sha256(text.encode()).hexdigest()


CACHE_VERSION = 1  # bump when ProgramReport's fields change meaning


def _read_cached(cache_dir: str | None, key: str, name: str, resident_bytes: int) -> ProgramReport | None:
  if not cache_dir:
    return None
  path = epath.Path(cache_dir) / f"{key}.json"
  if not path.exists():
    return None
  values = json.loads(path.read_text())
  collectives = values.pop("collectives", None)
  report = ProgramReport(**{k: v for k, v in values.items() if k in ProgramReport.__dataclass_fields__})
  report.name, report.resident_bytes, report.cached = name, resident_bytes, True
  if collectives is not None:
    report.collectives = hlo_collectives.CollectiveSummary(collectives["count"], collectives["bytes"],
                                                           collectives["loops"])
  if report.fits is not None and report.refusal is None and report.limit_bytes is not None:
    report.fits = report.peak_bytes <= report.limit_bytes
  return report


def _write_cached(cache_dir: str | None, key: str, report: ProgramReport) -> None:
  if not cache_dir:
    return
  directory = epath.Path(cache_dir)
  directory.mkdir(parents=True, exist_ok=True)
  values = report.to_dict()
  for derived in ("total_bytes", "peak_bytes"):
    values.pop(derived)
  temporary = directory / f".{key}.{os.getpid()}.tmp"
  temporary.write_text(json.dumps(values))
  temporary.rename(directory / f"{key}.json")


def compile_program(name: str, function: Callable, args: Sequence[Any], mesh: Mesh, *, limit_bytes: int | None,
                    resident_bytes: int = 0, cache_dir: str | None = None) -> tuple[ProgramReport, Any]:
  """Lowers and compiles `function` (jitted) for `args` (abstract, with shardings) on `mesh`.

  Returns the report and the compiled executable (None when the compiler refused for lack of memory, or when
  the report came from `cache_dir`: a program lowered to the same text for the same devices and compiler
  versions gets the same answer, so it is not compiled twice). Other compiler errors propagate: they are bugs
  to fix, not plans that do not fit.
  """
  start = time.perf_counter()
  with jax.set_mesh(mesh):
    lowered = function.lower(*args)
    key = _cache_key(lowered, mesh, limit_bytes) if cache_dir else ""
    cached = _read_cached(cache_dir, key, name, resident_bytes)
    if cached is not None:
      return cached, None
    try:
      compiled = lowered.compile()
    except Exception as error:
      if not is_out_of_memory(error):
        raise
      required, available = parse_refusal(str(error))
      report = ProgramReport(name, time.perf_counter() - start, fits=False, limit_bytes=available or limit_bytes,
                             resident_bytes=resident_bytes, refusal=str(error).strip().splitlines()[0][:500],
                             required_bytes=required, available_bytes=available)
      _write_cached(cache_dir, key, report)
      return report, None
  report = ProgramReport(name, time.perf_counter() - start, limit_bytes=limit_bytes, resident_bytes=resident_bytes)
  memory = compiled.memory_analysis()
  if memory is not None:
    report.argument_bytes = int(memory.argument_size_in_bytes)
    report.output_bytes = int(memory.output_size_in_bytes)
    report.alias_bytes = int(memory.alias_size_in_bytes)
    report.temp_bytes = int(memory.temp_size_in_bytes)
    report.code_bytes = int(memory.generated_code_size_in_bytes)
  costs = compiled.cost_analysis()
  if isinstance(costs, list | tuple):  # older jax: one dict per computation
    costs = costs[0] if costs else {}
  costs = costs or {}
  report.flops = float(costs["flops"]) if "flops" in costs else None
  report.bytes_accessed = float(costs["bytes accessed"]) if "bytes accessed" in costs else None
  report.optimal_seconds = float(costs["optimal_seconds"]) if "optimal_seconds" in costs else None
  report.collectives = hlo_collectives.count_collectives(compiled.as_text())
  if limit_bytes is not None:
    report.fits = report.peak_bytes <= limit_bytes
  _write_cached(cache_dir, key, report)
  return report, compiled

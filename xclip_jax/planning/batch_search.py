"""The largest per-chip batch whose train step fits, found by compiling as few times as possible.

Memory grows close to linearly with the batch (the activations kept for the backward pass), so the search
predicts instead of halving: it starts from the run's own batch (the plan has just compiled it, so with the
plan cache it costs nothing), predicts the largest batch under the chip's limit from the temporaries per clip,
and compiles the prediction and the batch above it. Each new compile refines the line (two nearest points);
where a prediction falls outside the interval between the largest batch known to fit and the smallest known
not to, the search bisects that interval. It ends when the two are neighbours, so the answer is exact: one
batch that compiled within the limit and the next one that did not. A refusal by the compiler counts as 'does
not fit' and the temporaries it says it needed still feed the line. Gradient accumulation is 1: the answer
is the largest micro-batch per chip.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

import ml_collections

from xclip_jax import sharding
from xclip_jax.planning import compiled, planner

MAX_BATCH_PER_CHIP = 4096  # searched above only when a larger batch is known not to fit
# The TPU compiler's own limit is a little below the nominal HBM (v5e: 15.75 of 16 GiB); until a refusal
# states it, predictions assume the same margin.
LIMIT_MARGIN = 0.984


@dataclasses.dataclass
class Probe:
  per_chip: int
  fits: bool
  temp_bytes: int  # temporaries (for a refusal: what the compiler said they needed)
  other_bytes: int  # arguments + outputs - aliased + code (for a refusal: from the last probe that compiled)
  limit: int | None  # the limit judged against (a refusal states the compiler's own)
  compile_seconds: float
  refused: bool = False

  @property
  def bytes(self) -> int:
    return self.temp_bytes + self.other_bytes


@dataclasses.dataclass
class BatchSearch:
  remat: bool
  largest_fitting: int  # 0: not even one clip per chip fits
  probes: list[Probe]

  def to_dict(self) -> dict[str, Any]:
    return {"remat": self.remat, "largest_fitting_per_chip": self.largest_fitting,
            "compiles": sum(1 for p in self.probes if p.compile_seconds >= 0), "probes": [
                dataclasses.asdict(p) | {"bytes": p.bytes} for p in self.probes]}


def _config_for(config: ml_collections.ConfigDict, per_chip: int, shards: int,
                remat: bool) -> ml_collections.ConfigDict:
  trial = config.copy_and_resolve_references()
  trial.data.batch_size = per_chip * shards
  trial.train.grad_accum_steps = 1
  trial.model.remat = remat
  return trial


def probe_train_step(config: ml_collections.ConfigDict, target: planner.Target, num_classes: int,
                     cache_dir: str | None = None) -> Probe:
  """Compiles only the train step of `config` on the target; returns whether it fits and its bytes."""
  mesh = sharding.make_mesh(config.mesh, devices=target.devices)
  run = planner.build_programs(config, mesh, num_classes, process_count=target.hosts, which=("train",))
  spec = run.specs[0]
  limit = target.chip.hbm_bytes if target.chip else None
  report, _ = compiled.compile_program(spec.name, spec.function, spec.args, mesh, limit_bytes=limit,
                                       cache_dir=cache_dir)
  per_chip = int(config.data.batch_size) // sharding.batch_shards(mesh)
  if report.refusal is not None:
    return Probe(per_chip, False, report.required_bytes or 0, 0, report.available_bytes or limit,
                 report.compile_seconds, refused=True)
  return Probe(per_chip, report.fits is not False, report.temp_bytes, report.total_bytes - report.temp_bytes, limit,
               report.compile_seconds)


def _predict(probes: list[Probe], limit: int, other: int) -> int:
  """Largest batch whose temporaries + `other` stay under `limit`, on the line through the two probes nearest
  the limit (through the origin with one probe)."""
  ordered = sorted(probes, key=lambda p: abs(p.bytes - limit))[:2]
  if len(ordered) == 2 and ordered[0].per_chip != ordered[1].per_chip:
    a, b = sorted(ordered, key=lambda p: p.per_chip)
    slope = (b.temp_bytes - a.temp_bytes) / (b.per_chip - a.per_chip)
    intercept = a.temp_bytes - slope * a.per_chip
  else:
    slope, intercept = ordered[0].temp_bytes / ordered[0].per_chip, 0.0
  if slope <= 0:
    return MAX_BATCH_PER_CHIP
  return max(1, int((limit - other - intercept) // slope))


def find_largest_batch(config: ml_collections.ConfigDict, target: planner.Target, num_classes: int, *, remat: bool,
                       probe: Callable[[ml_collections.ConfigDict], Probe] | None = None,
                       cache_dir: str | None = None) -> BatchSearch:
  """Largest per-chip batch (micro-batch, accumulation 1) whose train step compiles within the chip's memory."""
  shards = sharding.batch_shards(sharding.make_mesh(config.mesh, devices=target.devices))
  probe = probe or (lambda trial: probe_train_step(trial, target, num_classes, cache_dir))
  probes: dict[int, Probe] = {}
  other = 0

  def at(per_chip: int) -> Probe:
    nonlocal other
    if per_chip not in probes:
      logging.info("find-batch (remat %s): compiling %d clips per chip", remat, per_chip)
      point = probe(_config_for(config, per_chip, shards, remat))
      if point.refused:  # the refusal states temporaries only; the rest is as in the last compiled probe
        point.other_bytes = other
      else:
        other = point.other_bytes
      probes[per_chip] = point
      logging.info("  %s", point)
    return probes[per_chip]

  start = max(int(config.data.batch_size) // shards, 1)
  fit, miss = 0, None
  point = at(start)
  if point.fits:
    fit = start
  else:
    miss = start
  while miss is None or miss - fit > 1:
    stated = [p.limit for p in probes.values() if p.refused and p.limit]
    nominal = max((p.limit for p in probes.values() if p.limit), default=None)
    limit = min(stated) if stated else int(LIMIT_MARGIN * nominal) if nominal else None
    candidate = _predict(list(probes.values()), limit, other) if limit else max(fit * 2, 1)
    if candidate <= fit:  # the prediction says the edge is here: check the batch above
      candidate = fit + 1
    if miss is not None and candidate >= miss:  # outside the known interval: bisect it
      candidate = max((fit + miss) // 2, fit + 1)
    if miss is None and candidate > MAX_BATCH_PER_CHIP:
      if fit >= MAX_BATCH_PER_CHIP:
        break  # more than anyone trains with per chip: report the cap
      candidate = MAX_BATCH_PER_CHIP
    if at(candidate).fits:
      fit = candidate  # the next prediction lands on fit + 1 when this one was right: the edge is confirmed
    else:
      miss = candidate
  return BatchSearch(remat, fit, sorted(probes.values(), key=lambda p: p.per_chip))

"""Plans a run: compiles the programs `main` would run for a config on a target's devices and sums them up.

The programs come from the trainer's own builders (`xclip_jax.training.programs`, `train_state`, the
`Evaluator`), fed abstract inputs (ShapeDtypeStructs with shardings), so the same code plans a TPU slice
this machine does not have (compile-only devices) and the devices it does have (`local`, where the train
step is then also run and timed).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Sequence
from typing import Any

import jax
import ml_collections
import numpy as np

from xclip_jax import perf, sharding
from xclip_jax.evaluation.evaluator import Evaluator
from xclip_jax.models.config import ModelConfig
from xclip_jax.planning import chips, compiled, input_budget, roofline, topologies
from xclip_jax.training import optimizer, programs, run_model, train_state

NOMINAL_STEPS_PER_EPOCH = 100  # the schedule's length only sets constants of the program, not its shape


@dataclasses.dataclass
class Target:
  """The devices a plan compiles for."""

  name: str
  devices: Sequence[Any]
  chip: chips.ChipFacts | None
  chips_per_host: int
  vcpus_per_host: int | None
  local: bool = False

  @property
  def hosts(self) -> int:
    return max(len(self.devices) // self.chips_per_host, 1)

  def describe(self) -> str:
    chip = self.chip.describe() if self.chip else f"{self.devices[0].device_kind} (no published peaks known)"
    return f"{self.name}: {len(self.devices)} devices, {self.hosts} host(s); {chip}"


def target(name: str) -> Target:
  """A Cloud TPU name (compile-only devices) or 'local' (this process's devices, all hosts)."""
  if name == "local":
    devices = jax.devices()
    kind = devices[0].device_kind
    return Target(f"local ({len(devices)} x {kind})", devices, chips.for_device_kind(kind), jax.local_device_count(),
                  os.cpu_count(), local=True)
  topology = topologies.lookup(name)
  return Target(topology.name, topologies.devices(topology), topology.chip, topology.chips_per_host,
                topology.vcpus_per_host)


def class_count(config: ml_collections.ConfigDict, num_classes: int | None = None) -> int:
  """Classes of the run: given, the synthetic task's (the demo: no data needed), from data.class_names, or from
  the training source as the trainer reads it."""
  if num_classes:
    return int(num_classes)
  from xclip_jax.data import labels, synthetic, video_source

  data = config.data
  task = data.get("synthetic_task")
  if task in synthetic.tasks() and (data.source == "synthetic" or (data.source == "frames" and not data.frames.train)):
    return len(synthetic.tasks()[task])  # the synthetic data (the demo's) knows its classes without being made
  if config.data.class_names:
    return len(labels.read_class_names(labels.resolve_class_csv(config.data.class_names)))
  try:
    return len(video_source.make_source(config.data, "train").class_names)
  except Exception as error:
    raise ValueError(f"Cannot tell the number of classes: config.data.class_names is empty and the training data "
                     f"could not be read ({error}). Set --config.data.class_names or pass --num-classes.") from error


@dataclasses.dataclass
class ProgramSpec:
  name: str
  function: Any
  args: tuple[Any, ...]
  resident_bytes: int = 0  # bytes of the train state that stay in memory but are not arguments


@dataclasses.dataclass
class RunPrograms:
  """The abstract programs of a run on one mesh, plus what the plan reports beside them."""

  model_config: ModelConfig
  num_classes: int
  mesh: Any
  specs: list[ProgramSpec]
  parameter_bytes_per_chip: int
  optimizer_bytes_per_chip: int
  state_bytes_total: int


def _per_chip_bytes(tree: Any) -> int:
  """Bytes each device holds of a tree of sharded ShapeDtypeStructs (the largest shard, i.e. with padding)."""
  total = 0
  for leaf in jax.tree.leaves(tree):
    if not hasattr(leaf, "shape") or getattr(leaf, "sharding", None) is None:
      continue
    shard = leaf.sharding.shard_shape(leaf.shape)
    total += int(np.prod(shard, dtype=np.int64)) * np.dtype(leaf.dtype).itemsize
  return total


def _total_bytes(tree: Any) -> int:
  return sum(int(np.prod(leaf.shape, dtype=np.int64)) * np.dtype(leaf.dtype).itemsize
             for leaf in jax.tree.leaves(tree) if hasattr(leaf, "shape"))


def build_programs(config: ml_collections.ConfigDict, mesh: Any, num_classes: int, *, process_count: int = 1,
                   which: Sequence[str] = ("train", "eval", "text")) -> RunPrograms:
  """The jitted programs and abstract arguments of `main`'s run of `config` on `mesh` (nothing compiled yet)."""
  model_config = run_model.model_config_from(config)
  programs.check_run(config, model_config, mesh, process_count)
  tx, schedules = optimizer.make_optimizer(config.train, *optimizer.schedule_steps(config.train,
                                                                                    NOMINAL_STEPS_PER_EPOCH))
  trainable = optimizer.trainable_filter(bool(config.train.train_text))
  state = train_state.abstract_initial_state(model_config, tx, trainable, mesh)
  step_config = programs.train_step_config(config, num_classes, mesh)
  evaluator = Evaluator(train_state.model_graphdef(model_config), mesh, dtype=model_config.dtype)
  model_state = state.state["model"]
  parameters = _per_chip_bytes(model_state)
  optimizer_bytes = _per_chip_bytes(state.state["optimizer"])
  features = programs.text_inputs_spec(evaluator.text_encoder, model_state, num_classes, model_config,
                                       dataclasses.replace(step_config, train_text=False), mesh)
  specs = []
  if "train" in which:
    train_step = programs.jit_train_step(state.graphdef, state.shardings, trainable, step_config, schedules, mesh)
    text_inputs = programs.text_inputs_spec(evaluator.text_encoder, model_state, num_classes, model_config,
                                            step_config, mesh)
    specs.append(ProgramSpec("train step", train_step, (state.state, programs.train_batch_spec(config, mesh),
                                                        text_inputs, programs.abstract_key(mesh))))
  if "eval" in which:
    views = [int(config.eval.final_clips) * int(config.eval.final_crops)]
    if config.mode == "train" and int(config.eval.every_steps) != -1:
      views.append(1)  # single-view evaluation during training
    for count in dict.fromkeys(views):
      batch = programs.eval_batch_spec(config, mesh, count)
      rows = batch["video"].shape[0]
      specs.append(ProgramSpec(f"eval step ({rows} videos x {count} views)", evaluator.eval_step,
                               (model_state, batch, features), resident_bytes=optimizer_bytes))
  if "text" in which:
    specs.append(ProgramSpec(f"text encoder ({num_classes} classes)", evaluator.text_encoder,
                             (model_state, programs.tokens_spec(num_classes, model_config, mesh)),
                             resident_bytes=optimizer_bytes))
  return RunPrograms(model_config, num_classes, mesh, specs, parameters, optimizer_bytes, _total_bytes(state.state))


def model_flops_per_step(model_config: ModelConfig, num_classes: int, global_batch: int, accum: int,
                         train_text: bool, *, count_layer_norm: bool = False) -> float:
  """Analytic training FLOPs of one step (xclip_jax.perf, 2 per multiply-add, backward = 2 x forward).

  Without rematerialisation (the MFU convention); the frozen text tower does not run in the step.
  """
  breakdown = perf.flops_breakdown(model_config, num_classes=num_classes, count_layer_norm=count_layer_norm)
  video = sum(value for name, value in breakdown.items() if name != "text")
  text = breakdown["text"] if train_text else 0.0
  return 2 * 3 * (video * global_batch + text * accum)


@dataclasses.dataclass
class PlanReport:
  target: str
  chip: dict[str, Any] | None
  config: dict[str, Any]
  programs: list[compiled.ProgramReport]
  parameter_bytes_per_chip: int
  optimizer_bytes_per_chip: int
  state_bytes_total: int
  model_flops_per_step: float  # analytic, matmuls only (MFU numerator)
  analytic_flops_per_step: float  # analytic with LayerNorm, as XLA counts more
  roofline: roofline.Roofline | None
  input: input_budget.InputBudget | None
  measured: dict[str, Any] | None = None
  notes: list[str] = dataclasses.field(default_factory=list)
  plan_seconds: float = 0.0

  @property
  def fits(self) -> bool | None:
    verdicts = [p.fits for p in self.programs]
    if any(v is False for v in verdicts):
      return False
    return None if any(v is None for v in verdicts) else True

  def to_dict(self) -> dict[str, Any]:
    return {"target": self.target, "chip": self.chip, "config": self.config, "fits": self.fits,
            "programs": [p.to_dict() for p in self.programs],
            "parameter_bytes_per_chip": self.parameter_bytes_per_chip,
            "optimizer_bytes_per_chip": self.optimizer_bytes_per_chip, "state_bytes_total": self.state_bytes_total,
            "model_flops_per_step": self.model_flops_per_step, "analytic_flops_per_step": self.analytic_flops_per_step,
            "roofline": self.roofline.to_dict() if self.roofline else None,
            "input": self.input.to_dict() if self.input else None, "measured": self.measured, "notes": self.notes,
            "plan_seconds": self.plan_seconds, "estimates": "compiler's and roofline's estimates, not measurements"}


def describe_config(config: ml_collections.ConfigDict, model_config: ModelConfig, mesh: Any,
                    num_classes: int) -> dict[str, Any]:
  return {"variant": config.model.variant, "frames": int(config.model.frames), "image_size": model_config.image_size,
          "global_batch": int(config.data.batch_size), "grad_accum_steps": int(config.train.grad_accum_steps),
          "per_chip_batch": int(config.data.batch_size) // sharding.batch_shards(mesh),
          "remat": model_config.remat, "scan_layers": model_config.scan_layers, "dtype": model_config.dtype,
          "mixup": float(config.train.mixup), "train_text": bool(config.train.train_text), "num_classes": num_classes,
          "mesh": dict(mesh.shape), "chips": int(mesh.size),
          "eval_views": int(config.eval.final_clips) * int(config.eval.final_crops)}


def plan(config: ml_collections.ConfigDict, plan_target: Target, *, num_classes: int | None = None,
         decode_rate: float = input_budget.DEFAULT_DECODE_RATE, decode_rate_source: str | None = None,
         which: Sequence[str] = ("train", "eval", "text"), measure_steps: int = 0,
         cache_dir: str | None = None) -> PlanReport:
  """Compiles the run's programs for the target and derives memory, time and input estimates."""
  start = time.perf_counter()
  classes = class_count(config, num_classes)
  mesh = sharding.make_mesh(config.mesh, devices=plan_target.devices)
  run = build_programs(config, mesh, classes, process_count=plan_target.hosts, which=which)
  limit = plan_target.chip.hbm_bytes if plan_target.chip else None
  reports = []
  for spec in run.specs:
    logging.info("Compiling the %s for %s ...", spec.name, plan_target.name)
    report, _ = compiled.compile_program(spec.name, spec.function, spec.args, mesh, limit_bytes=limit,
                                         resident_bytes=spec.resident_bytes, cache_dir=cache_dir)
    logging.info("  %s: %.1f s", spec.name, report.compile_seconds)
    reports.append(report)
  model_config = run.model_config
  global_batch, accum = int(config.data.batch_size), int(config.train.grad_accum_steps)
  train_text = bool(config.train.train_text)
  model_flops = model_flops_per_step(model_config, classes, global_batch, accum, train_text)
  analytic = model_flops_per_step(model_config, classes, global_batch, accum, train_text, count_layer_norm=True)
  chips_count = len(plan_target.devices)
  notes = []
  estimate, budget = None, None
  train = next((r for r in reports if r.name == "train step"), None)
  if train is not None and train.refusal is None and plan_target.chip is not None:
    if train.loops_with_trips or train.flops is None:
      recompute = 4 / 3 if model_config.remat else 1.0
      flops, source = analytic * recompute / chips_count, (
          "analytic (xclip_jax.perf, with LayerNorm" + (", x4/3 for rematerialisation" if model_config.remat else "")
          + "): XLA's cost analysis counts a loop body once and this step loops")
    else:
      flops, source = train.flops, "XLA cost analysis of the compiled step"
    estimate = roofline.estimate(
        plan_target.chip, flops_per_chip=flops, flops_source=source,
        bytes_accessed_per_chip=(train.bytes_accessed or 0.0) * (
            1.0 if not train.loops_with_trips else flops / max(train.flops or flops, 1.0)),
        collectives=train.collectives, clips_per_step_per_chip=global_batch / chips_count,
        model_flops_per_chip=model_flops / chips_count)
    if plan_target.vcpus_per_host:
      budget = input_budget.InputBudget(
          clips_per_s_per_chip=estimate.clips_per_s_per_chip[1], chips_per_host=plan_target.chips_per_host,
          vcpus_per_host=plan_target.vcpus_per_host, decode_rate=decode_rate,
          decode_rate_source=decode_rate_source or (
              input_budget.DECODE_RATE_SOURCE if decode_rate == input_budget.DEFAULT_DECODE_RATE else "given"))
  if train is not None and train.collectives and train.collectives.unknown_loops:
    notes.append(f"{train.collectives.unknown_loops} loop(s) of the train step have a trip count the HLO does not "
                 "reveal; their collectives are counted once.")
  report = PlanReport(
      target=plan_target.describe(), chip=dataclasses.asdict(plan_target.chip) if plan_target.chip else None,
      config=describe_config(config, model_config, mesh, classes), programs=reports,
      parameter_bytes_per_chip=run.parameter_bytes_per_chip, optimizer_bytes_per_chip=run.optimizer_bytes_per_chip,
      state_bytes_total=run.state_bytes_total, model_flops_per_step=model_flops, analytic_flops_per_step=analytic,
      roofline=estimate, input=budget, notes=notes)
  if measure_steps > 0 and plan_target.local and report.fits is not False:
    from xclip_jax.planning import local_run

    report.measured = local_run.measure_train_step(config, mesh, classes, steps=measure_steps)
  report.plan_seconds = time.perf_counter() - start
  return report


def compile_only(config: ml_collections.ConfigDict) -> int:
  """`main --config.compile_only=true`: plans on this job's real devices, prints the report (process 0) and
  returns the exit status: 0 when every program fits, 1 when one does not."""
  from xclip_jax.planning import report as report_lib

  result = plan(config, target("local"))
  if jax.process_index() == 0:
    print(report_lib.format_report(result, title="this job (compile_only)"), flush=True)
  return 1 if result.fits is False else 0

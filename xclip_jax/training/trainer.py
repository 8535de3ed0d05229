"""The training loop: sharded steps, periodic evaluation, checkpoints with exact resume, preemption.

`train(config, workdir)` resumes from the workdir's latest checkpoint by itself (model, optimizer, step
and data-iterator position), saves every `checkpoint.every_steps`, at the end, and when the process gets
SIGTERM (then it stops early and reports `preempted=True`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import threading
from typing import Any

import jax
import ml_collections
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh

from xclip_jax import sharding, storage
from xclip_jax.data import batches, pipeline
from xclip_jax.evaluation.evaluator import Evaluator
from xclip_jax.models.config import ModelConfig
from xclip_jax.tokenizer import tokenize
from xclip_jax.training import checkpointing, metrics, optimizer, programs, run_model, train_state


@dataclasses.dataclass
class TrainResult:
  state: train_state.TrainState
  model_config: ModelConfig
  mesh: Mesh
  evaluator: Evaluator
  step: int
  total_steps: int
  preempted: bool
  class_names: list[str]
  config: ml_collections.ConfigDict  # the config the run ran with (its data block follows init_from's model)


class _PreemptionWatch:
  """Turns SIGTERM into a flag the loop polls (all processes agree before stopping)."""

  def __init__(self):
    self.requested = False
    self._previous = None

  def __enter__(self) -> _PreemptionWatch:
    if threading.current_thread() is threading.main_thread():  # signals can only be handled there
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    return self

  def _handle(self, signum, frame) -> None:
    del signum, frame
    logging.warning("SIGTERM received: saving a checkpoint and stopping.")
    self.requested = True

  def should_stop(self) -> bool:
    if jax.process_count() == 1:
      return self.requested
    return bool(multihost_utils.process_allgather(np.asarray(self.requested)).any())

  def __exit__(self, *exc) -> None:
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)


def _write_run_config(config: ml_collections.ConfigDict, workdir: storage.epath.Path) -> None:
  if jax.process_index() == 0:  # whole (a bucket object or a renamed file): never half-written
    storage.write_text(workdir / "config.json", config.to_json_best_effort(indent=2) + "\n")


def train(config: ml_collections.ConfigDict, workdir: str | os.PathLike) -> TrainResult:
  """Trains (or resumes) per config.train on config.data's train split; evaluates single-view as it goes."""
  workdir = storage.mkdir(workdir)
  initial = run_model.initial_model(config)  # init_from's architecture; the data block follows it
  config, model_config = initial.config, initial.model_config
  _write_run_config(config, workdir)
  mesh = sharding.make_mesh(config.mesh)
  sharding.log_mesh(mesh)
  programs.check_run(config, model_config, mesh, jax.process_count())
  data_cfg = config.data
  train_iterator = pipeline.make_train_iterator(data_cfg, split="train")
  class_names = list(train_iterator.source.class_names)
  batch_size = int(data_cfg.batch_size)
  steps_per_epoch = max(len(train_iterator.source) // batch_size, 1)
  total_steps, warmup_steps = optimizer.schedule_steps(config.train, steps_per_epoch)
  logging.info("%d training videos, %d classes, batch %d: %d steps/epoch, %d steps (%d warm-up)",
               len(train_iterator.source), len(class_names), batch_size, steps_per_epoch, total_steps, warmup_steps)

  tx, schedules = optimizer.make_optimizer(config.train, total_steps, warmup_steps)
  trainable = optimizer.trainable_filter(bool(config.train.train_text))
  state = train_state.create_train_state(model_config, tx, trainable, mesh, seed=int(config.train.seed),
                                         init_params=initial.params)
  train_state.log_state(state, trainable)
  checkpointer = checkpointing.Checkpointer(workdir / "checkpoints", max_to_keep=int(config.checkpoint.keep),
                                            asynchronous=bool(config.checkpoint.asynchronous))
  latest = checkpointer.latest_step()
  if latest is not None:
    saved_scan = bool(checkpointer.read_meta(latest).get("model_config", {}).get("scan_layers", False))
    if saved_scan != model_config.scan_layers:
      layout = "stacked" if saved_scan else "per layer"
      raise ValueError(f"{checkpointer.directory / str(latest)} stores the layers {layout} (model.scan_layers="
                       f"{saved_scan}); resume with --config.model.scan_layers={saved_scan}.")
    restored, _ = checkpointer.restore(latest, train_state.abstract_train_state(state), train_iterator)
    state.state = restored
    logging.info("Resumed from %s at step %d", checkpointer.directory / str(latest), state.step)

  evaluator = Evaluator(train_state.model_graphdef(model_config), mesh)
  step_config = programs.train_step_config(config, len(class_names), mesh)
  train_step = sharding.ProcessAligned(
      programs.jit_train_step(state.graphdef, state.shardings, trainable, step_config, schedules, mesh), "train step")
  if step_config.train_text:
    text_inputs = jax.device_put(tokenize(class_names, context_length=model_config.context_length, truncate=True),
                                 sharding.replicated(mesh))
  else:  # official FIX_TEXT: class texts encoded once
    text_inputs = evaluator.text_features(state.state["model"], class_names, model_config.context_length)
  # Made by a program, replicated on the mesh: every process holds the same key, and the train step's first run
  # can be compiled ahead for it (sharding.ProcessAligned).
  rng = jax.jit(lambda: jax.random.key(int(config.train.seed)), out_shardings=sharding.replicated(mesh))()
  eval_every = steps_per_epoch if int(config.eval.every_steps) == 0 else int(config.eval.every_steps)
  writer = metrics.create_writer(workdir)
  step = state.step
  reporter = metrics.ProgressReporter(writer, total_steps=total_steps, clips_per_step=batch_size,
                                      log_every=int(config.log_every_steps), first_step=step)

  def meta() -> dict[str, Any]:
    return {"step": step, "total_steps": total_steps, "model_config": model_config.to_dict(),
            "class_names": class_names, "config": json.loads(config.to_json_best_effort())}

  preempted = False
  with _PreemptionWatch() as watch, jax.set_mesh(mesh):
    while step < total_steps:
      batch = pipeline.global_batch(
          {k: v for k, v in next(train_iterator).items() if k in batches.TRAIN_DEVICE_KEYS}, mesh)
      state.state, step_metrics = train_step(state.state, batch, text_inputs, rng)
      step += 1
      reporter.update(step, step_metrics, {"bad_videos": train_iterator.bad_videos} if step % max(
          int(config.log_every_steps), 1) == 0 else None)
      if watch.should_stop():
        preempted = True
        break
      if eval_every > 0 and step % eval_every == 0 and step < total_steps:
        reporter.pause()
        result = evaluator.evaluate(state.state["model"], data_cfg, clips=1, crops=1,
                                    context_length=model_config.context_length,
                                    max_batches=int(config.eval.max_batches))
        writer.write_scalars(step, {"eval/top1": result.top1, "eval/top5": result.top5})
        logging.info("step %d: single-view eval top-1 %.2f%%, top-5 %.2f%% on %d videos", step, result.top1,
                     result.top5, result.videos)
        reporter.resume()
      if step % int(config.checkpoint.every_steps) == 0 and step < total_steps:
        reporter.pause()
        checkpointer.save(step, state.state, train_iterator, meta())
        reporter.resume()
    if checkpointer.latest_step() != step:
      checkpointer.save(step, state.state, train_iterator, meta(), force=True)
  checkpointer.close()
  train_iterator.close()
  writer.close()  # flushed (and, for a bucket workdir, the event files uploaded)
  if preempted:
    logging.warning("Stopped at step %d of %d on SIGTERM; checkpoint saved, rerun the same command to resume.",
                    step, total_steps)
  return TrainResult(state=state, model_config=model_config, mesh=mesh, evaluator=evaluator, step=step,
                     total_steps=total_steps, preempted=preempted, class_names=class_names,
                     config=config)

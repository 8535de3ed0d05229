"""The training loop: sharded steps, periodic evaluation, checkpoints with exact resume, preemption.

`train(config, workdir)` resumes from the workdir's latest checkpoint by itself (model, optimizer, step
and data-iterator position), saves every `checkpoint.every_steps`, at the end, and when the process gets
SIGTERM or Ctrl-C (SIGINT): then it finishes the step it is on (a periodic evaluation under way is dropped),
saves that step, waits for the checkpoint, stops the data workers, prints one line and reports
`preempted=True` (`xclip_jax/interrupts.py`; a second Ctrl-C stops at once, keeping the last complete
checkpoint).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
from typing import Any

import jax
import ml_collections
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh

from xclip_jax import interrupts, run_config, sharding, storage
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


def _should_stop(stop: interrupts.StopRequests) -> bool:
  """Whether a stop was requested (SIGINT / SIGTERM); with several processes, whether any process got one."""
  if jax.process_count() == 1:
    return stop.requested is not None
  return bool(multihost_utils.process_allgather(np.asarray(stop.requested is not None)).any())


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
      raise run_config.ConfigError(f"{checkpointer.directory / str(latest)} stores the layers {layout} (model."
                                   f"scan_layers={saved_scan}); resume with --config.model.scan_layers={saved_scan}.")
    restored, _ = checkpointer.restore(latest, train_state.abstract_train_state(state), train_iterator)
    state.state = restored
    logging.info("Resumed from %s at step %d", checkpointer.directory / str(latest), state.step)

  evaluator = Evaluator(train_state.model_graphdef(model_config), mesh, dtype=model_config.dtype)
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
  def acknowledge() -> str:
    doing = (f"dropping this evaluation, saving step {step}" if stop.dropping else
             f"finishing step {step + 1}, then saving a checkpoint" if step < total_steps else
             f"waiting for the checkpoint of step {step}")
    return f"Ctrl-C: {doing} and stopping (Ctrl-C again stops at once, keeping the last complete checkpoint)"

  stop = interrupts.StopRequests(
      acknowledge=acknowledge,
      at_once=f"Stopped at once by a second Ctrl-C: the checkpoint being written (if any) is dropped; the same "
              f"command resumes from the last complete one in {checkpointer.directory}.",
      at_once_cleanup=lambda: (train_iterator.close(), pipeline.release_shared_memory(in_use=True)))
  with stop, jax.set_mesh(mesh):
    while step < total_steps:
      batch = pipeline.global_batch(
          {k: v for k, v in next(train_iterator).items() if k in batches.TRAIN_DEVICE_KEYS}, mesh)
      state.state, step_metrics = train_step(state.state, batch, text_inputs, rng)
      step += 1
      reporter.update(step, step_metrics, {"bad_videos": train_iterator.bad_videos} if step % max(
          int(config.log_every_steps), 1) == 0 else None)
      if _should_stop(stop):
        preempted = True
        break
      if eval_every > 0 and step % eval_every == 0 and step < total_steps:
        reporter.pause()
        with stop.droppable(jax.process_count() == 1):  # Ctrl-C drops the evaluation; the step is saved below
          result = evaluator.evaluate(state.state["model"], data_cfg, clips=1, crops=1,
                                      context_length=model_config.context_length,
                                      max_batches=int(config.eval.max_batches))
          writer.write_scalars(step, {"eval/top1": result.top1, "eval/top5": result.top5})
          logging.info("step %d: single-view eval top-1 %.2f%%, top-5 %.2f%% on %d videos", step, result.top1,
                       result.top5, result.videos)
        reporter.resume()
        if jax.process_count() == 1 and stop.requested:
          preempted = True
          break
      if step % int(config.checkpoint.every_steps) == 0 and step < total_steps:
        reporter.pause()
        checkpointer.save(step, state.state, train_iterator, meta())
        reporter.resume()
    if checkpointer.latest_step() != step:
      checkpointer.save(step, state.state, train_iterator, meta(), force=True)
    checkpointer.close()  # waits for the save; a second Ctrl-C meanwhile stops at once
    preempted = preempted or _should_stop(stop)  # asked during the last save: stop before what follows
  train_iterator.close()
  writer.close()  # flushed (and, for a bucket workdir, the event files uploaded)
  if preempted:
    stop.stopped()
    how = "Ctrl-C" if stop.requested == "SIGINT" else stop.requested or "a stop request of another process"
    print(f"Stopped by {how} at step {step} of {total_steps}: the checkpoint of step {step} is in "
          f"{checkpointer.directory}; the same command resumes from it.", file=sys.stderr, flush=True)
  return TrainResult(state=state, model_config=model_config, mesh=mesh, evaluator=evaluator, step=step,
                     total_steps=total_steps, preempted=preempted, class_names=class_names,
                     config=config)

"""What `python -m xclip_jax.main` runs: the paper's protocols, built from training and evaluation.

- supervised: train (resuming), single-view evaluation as it goes, final multi-view evaluation (4x3).
- few_shot: train on K shots per class (data.k_shot, seeded) from CLIP, evaluate split 1 single-view.
- zero_shot: evaluate a trained model on unseen class names; mean ± std over splits or class subsets.
- demo: the embedded synthetic run (`xclip_jax.demo`).
`PROTOCOLS` maps config.protocol to its runner. Every protocol writes `workdir/results.json` and prints a
table. Over your own folders of videos (data.source="folders", `folder_runs`) supervised and few_shot also
write the notebook's report. The workdir may be a bucket (gs://...); every process checks that it can write
there before any work.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import ml_collections
from etils import epath

from xclip_jax import demo, folder_runs, run_config, sharding, storage
from xclip_jax.evaluation import results as results_lib
from xclip_jax.evaluation import zero_shot
from xclip_jax.evaluation.evaluator import Evaluator, summarize
from xclip_jax.training import checkpointing, run_model, train_state, trainer


def _evaluation_model(config: ml_collections.ConfigDict, workdir: epath.Path):
  """(config, model config, evaluator, model state) of the workdir's latest checkpoint, else of init_from; the
  config's data block follows the model (`run_model.with_model_shapes`)."""
  runtime = ("dtype", "attention_implementation")
  if (workdir / "checkpoints").is_dir() and checkpointing.Checkpointer(workdir / "checkpoints").latest_step():
    chosen = run_model.model_from_source(config, workdir, what="Evaluating the latest checkpoint of",
                                         options=runtime)
  elif config.init_from.path:
    chosen = run_model.model_from_source(config, what="Evaluating init_from", options=runtime)
  else:
    raise run_config.ConfigError(f"Nothing to evaluate: {workdir} has no checkpoint and config.init_from.path is "
                                 f"empty.")
  mesh = sharding.make_mesh(config.mesh)
  graphdef, state = train_state.place_model(chosen.model_config, chosen.params, mesh)
  return chosen.config, chosen.model_config, Evaluator(graphdef, mesh, dtype=chosen.model_config.dtype), state


def run_supervised(config: ml_collections.ConfigDict, workdir: epath.Path,
                   folder_run: folder_runs.FolderRun | None = None, *, title: str = "Fully supervised"
                   ) -> dict[str, Any]:
  """Trains (unless mode=evaluate), then the final evaluation with eval.final_clips x final_crops views (of
  eval.split; over folders also the report in workdir/report/)."""
  if config.mode == "train":
    outcome = trainer.train(config, workdir)
    if outcome.preempted:
      return {"protocol": config.protocol, "status": "preempted", "step": outcome.step}
    model_config, evaluator, state = outcome.model_config, outcome.evaluator, outcome.state.state["model"]
    config, step = outcome.config, outcome.step
  else:
    config, model_config, evaluator, state = _evaluation_model(config, workdir)
    step = None
  views = dict(clips=int(config.eval.final_clips), crops=int(config.eval.final_crops),
               context_length=model_config.context_length)
  if folder_run is not None:
    result, extra = folder_runs.evaluate_and_report(folder_run, evaluator, state, config, workdir, **views)
  else:
    result, extra = evaluator.evaluate(state, config.data, split=config.eval.get("split") or "val",
                                       max_batches=int(config.eval.max_batches), **views), {}
  results = {"protocol": config.protocol, "step": step, "final": result.to_dict() if result else None, **extra}
  if result is not None:
    title = folder_run.title if folder_run else title
    results_lib.print_table(title, [results_lib.row(f"{config.protocol} ({result.views} views)", result)])
  return results


def run_few_shot(config: ml_collections.ConfigDict, workdir: epath.Path,
                 folder_run: folder_runs.FolderRun | None = None) -> dict[str, Any]:
  """The supervised protocol on K videos per class (data.k_shot) of the few-shot training list."""
  config = config.copy_and_resolve_references()
  config.data = zero_shot.few_shot_lists(config, workdir)
  return run_supervised(config, workdir, folder_run, title=f"Few-shot K={config.data.k_shot}")


def run_zero_shot(config: ml_collections.ConfigDict, workdir: epath.Path,
                  folder_run: folder_runs.FolderRun | None = None) -> dict[str, Any]:
  """Evaluates the model on unseen class names: one row per split or class subset, and their mean ± std."""
  del folder_run  # folders are refused for zero_shot (folder_runs.prepare)
  config, model_config, evaluator, state = _evaluation_model(config, workdir)
  rows, rounds = [], []
  for name, data_block in zero_shot.zero_shot_rounds(config, workdir):
    result = evaluator.evaluate(state, data_block, clips=int(config.eval.final_clips),
                                crops=int(config.eval.final_crops), context_length=model_config.context_length,
                                max_batches=int(config.eval.max_batches))
    rounds.append({"name": name, **result.to_dict()})
    rows.append(results_lib.row(name, result))
  top1, top5 = summarize([r["top1"] for r in rounds]), summarize([r["top5"] for r in rounds])
  rows.append((f"{config.zero_shot.dataset} mean ± std", results_lib.mean_std(top1), results_lib.mean_std(top5),
               f"{len(rounds)} rounds"))
  results_lib.print_table(f"Zero-shot {config.zero_shot.dataset}", rows)
  return {"protocol": "zero_shot", "dataset": config.zero_shot.dataset, "rounds": rounds, "top1": top1, "top5": top5}


def _run_demo(config: ml_collections.ConfigDict, workdir: epath.Path,
              folder_run: folder_runs.FolderRun | None = None) -> dict[str, Any]:
  del folder_run  # the demo reads its synthetic data
  return demo.run_demo(config, workdir)


# config.protocol (one of run_config.PROTOCOLS) -> its runner(config, workdir, folder_run or None) -> results.json's
# content.
PROTOCOLS = {"supervised": run_supervised, "few_shot": run_few_shot, "zero_shot": run_zero_shot, "demo": _run_demo}


def run(config: ml_collections.ConfigDict, workdir: str | os.PathLike) -> dict[str, Any]:
  """Runs config.protocol in workdir (a folder or gs:// URL) and writes workdir/results.json.

  Raises `storage.StorageError` before any work if this process cannot write to workdir.
  """
  run_config.check_protocol(config)
  workdir = storage.check_writable(workdir)
  folder_run = None
  if config.data.source == "folders":  # your own videos: checks first (naming folders), a report at the end
    config, folder_run = folder_runs.prepare(config, workdir)
  results = PROTOCOLS[config.protocol](config, workdir, folder_run)
  path = results_lib.write_results(workdir, results)
  logging.info("Results written to %s", path)
  return results

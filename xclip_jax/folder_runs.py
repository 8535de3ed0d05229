"""`main` over your own videos (data.source="folders"): the checks before a run and the report after it.

`prepare(config, workdir)` reads data.root's layout once (`xclip_jax.data.folders`; its errors name the folder
or file) and then:
- training: refuses a class that has test videos but no training videos (supervised training learns the
  classes of train/; evaluating such a class is zero-shot, which mode=evaluate is for), warns about classes
  that are only in val/, turns evaluation during training off when there is no val/, and fits data.batch_size
  to a training set smaller than it;
- evaluation (mode=evaluate): says which classes the model was never trained on (all of them for a released
  model: a zero-shot evaluation);
- picks the final split (eval.split, or test/ when present, else val/) and writes workdir/classes.csv, the
  class names as the text tower reads them (`python -m xclip_jax.predict --labels-file` takes it).
`evaluate_and_report(...)` is the final evaluation: with one process it also writes workdir/report/ (the
notebook's figures and predictions.csv, `evaluation.split_report`) and prints where they are.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any

import jax
import ml_collections
from etils import epath

from xclip_jax import sharding, storage
from xclip_jax.data import folders, labels
from xclip_jax.evaluation import split_report
from xclip_jax.evaluation.evaluator import EvalResult, Evaluator
from xclip_jax.run_config import ConfigError


@dataclasses.dataclass
class FolderRun:
  layout: folders.FolderLayout
  split: str | None  # the final evaluation's split; None: no val/ or test/ (training only)
  title: str
  classes_csv: epath.Path


def _names(paths: list[str], limit: int = 5) -> str:
  return ", ".join(paths[:limit]) + (f" and {len(paths) - limit} more" if len(paths) > limit else "")


def _check_training(config: ml_collections.ConfigDict, layout: folders.FolderLayout) -> None:
  if not layout.has("train"):
    raise folders.VideoInputError(
        f"{layout.folder('train')}: no such folder; training reads the videos of its class folders. To see what "
        f"the model knows about these classes without training, evaluate it zero-shot: --config.mode=evaluate")
  untrained = layout.classes_without("train")
  tested = [name for name in untrained if name in layout.videos.get("test", {})]
  if tested:
    raise folders.VideoInputError(
        f"{_names([layout.folder('test', n) for n in tested])}: test videos of a class with no training videos "
        f"(no {layout.folder('train', tested[0])}). Supervised training learns the classes of "
        f"{layout.folder('train')}: add training videos, or remove the folder; to evaluate classes never trained "
        f"on, evaluate zero-shot with --config.mode=evaluate")
  if untrained:
    logging.warning("Classes with no training videos, only in %s (scored by their names alone, zero-shot): %s",
                    layout.folder("val"), _names(untrained))
  k_shot = int(config.data.k_shot)
  train = layout.videos["train"]
  count = k_shot * len(train) if k_shot > 0 else sum(len(v) for v in train.values())
  _fit_batch(config, count, layout.folder("train"))
  if not layout.has("val") and int(config.eval.every_steps) >= 0:
    logging.warning("No %s folder: no evaluation during training.", layout.folder("val"))
    config.eval.every_steps = -1


def _fit_batch(config: ml_collections.ConfigDict, videos: int, where: str) -> None:
  """Lowers data.batch_size to the training set's size, in whole multiples of what the devices split."""
  batch = int(config.data.batch_size)
  if videos >= batch:
    return
  data, fsdp, _ = sharding.mesh_shape(config.mesh, jax.device_count())
  unit = data * fsdp * int(config.train.grad_accum_steps)
  fitted = videos // unit * unit
  if fitted < 1:
    raise folders.VideoInputError(f"{where}: {videos} training videos, fewer than one batch of {unit} (one per "
                                  f"device and accumulation step); add videos")
  logging.warning("data.batch_size=%d is more than the %d training videos of %s: using batch %d.", batch, videos,
                  where, fitted)
  config.data.batch_size = fitted


def _trained_classes(workdir: epath.Path) -> list[str] | None:
  """The classes the workdir's latest checkpoint was trained on; None without a checkpoint."""
  if not (workdir / "checkpoints").is_dir():
    return None
  from xclip_jax.training import checkpointing

  checkpointer = checkpointing.Checkpointer(workdir / "checkpoints")
  step = checkpointer.latest_step()
  try:
    return None if step is None else list(checkpointer.read_meta(step).get("class_names", []))
  finally:
    checkpointer.close()


def _zero_shot_note(config: ml_collections.ConfigDict, workdir: epath.Path, layout: folders.FolderLayout,
                    split: str) -> str:
  source = workdir  # what protocols evaluates: the workdir's checkpoint, else init_from (maybe a workdir too)
  trained = _trained_classes(workdir)
  if trained is None and config.init_from.path:
    source = storage.path(config.init_from.path)
    trained = _trained_classes(source) if source.is_dir() else None
  classes = len(layout.class_names)
  if trained is None:
    return (f"Zero-shot: {config.init_from.path or 'the model'} was never trained on {layout.folder(split)}; it "
            f"scores each video against the names of its {classes} classes alone (no training here).")
  new = [name for name in layout.class_names if name not in trained]
  if not new:
    return ""
  return (f"Zero-shot for {len(new)} of the {classes} classes: {source} was never trained on "
          f"{_names([repr(n) for n in new])}; they are scored by their names alone.")


def prepare(config: ml_collections.ConfigDict, workdir: str | os.PathLike
            ) -> tuple[ml_collections.ConfigDict, FolderRun]:
  """Checks data.root for this run and returns the config to run with (see the module docstring)."""
  if config.protocol not in ("supervised", "few_shot"):
    raise ConfigError(f"config.protocol={config.protocol!r} does not read folders: with data.source='folders' run "
                      f"the supervised or few_shot protocol (configs/finetune.py); --config.mode=evaluate evaluates "
                      f"a model zero-shot")
  if config.eval.split not in ("", "val", "test"):
    raise ConfigError(f"config.eval.split must be '', 'val' or 'test', got {config.eval.split!r}")
  config = config.copy_and_resolve_references()
  workdir = storage.path(workdir)
  layout = folders.layout_from_config(config.data)
  if layout.ignored:
    logging.warning("%d files in the class folders are not videos by their extension and are left out, e.g. %s",
                    len(layout.ignored), _names(list(layout.ignored), 3))
  split = config.eval.split or next((s for s in ("test", "val") if layout.has(s)), None)
  if split is not None and not layout.has(split):
    layout.records(split)  # raises, naming the missing folder
  k_shot = int(config.data.k_shot)
  if config.mode == "train":
    _check_training(config, layout)
    what = f"Few-shot K={k_shot}" if k_shot > 0 else "Fine-tuned"
    title = f"{what} on {layout.folder('train')}" + (f", evaluated on {layout.folder(split)}" if split else "")
  else:
    if split is None:
      raise folders.VideoInputError(f"{layout.root}: no test/ or val/ folder, nothing to evaluate")
    note = _zero_shot_note(config, workdir, layout, split)
    if note and jax.process_index() == 0:
      print(note, flush=True)
    title = f"Evaluation on {layout.folder(split)}" + (" (zero-shot)" if note.startswith("Zero-shot:") else "")
  config.eval.split = split or ""
  classes_csv = workdir / "classes.csv"
  if jax.process_index() == 0:
    workdir.mkdir(parents=True, exist_ok=True)
    labels.write_class_names(layout.class_names, os.fspath(classes_csv))
  return config, FolderRun(layout=layout, split=split, title=title, classes_csv=classes_csv)


def evaluate_and_report(run: FolderRun, evaluator: Evaluator, state: Any, config: ml_collections.ConfigDict,
                        workdir: str | os.PathLike, *, clips: int, crops: int,
                        context_length: int) -> tuple[EvalResult | None, dict[str, Any]]:
  """The final evaluation of run.split, and (one process) the report in workdir/report/; (result, results.json
  entries)."""
  if run.split is None:
    logging.warning("No test/ or val/ folder in %s: trained without a final evaluation.", run.layout.root)
    return None, {}
  max_batches = int(config.eval.max_batches)
  if jax.process_count() > 1:
    logging.warning("The report (figures, predictions.csv) is written by single-process runs only; evaluate the "
                    "workdir with one process (--config.mode=evaluate) to get it.")
    return evaluator.evaluate(state, config.data, split=run.split, clips=clips, crops=crops,
                              context_length=context_length, max_batches=max_batches), {}
  max_videos = max_batches * int(config.data.eval_batch_size) if max_batches >= 0 else -1
  result, evaluation = split_report.evaluate_split(evaluator, state, config.data, split=run.split, clips=clips,
                                                   crops=crops, context_length=context_length, max_videos=max_videos)
  where = run.layout.folder(run.split)
  files = split_report.write_report(evaluation, storage.path(workdir) / "report",
                                    title="/".join(storage.path(where).parts[-2:]))  # e.g. my_videos/test
  print(split_report.describe(evaluation, files, where=where), flush=True)
  print(f"  class names (for python -m xclip_jax.predict --labels-file): {run.classes_csv}", flush=True)
  return result, {"report": {"split": run.split, "folder": where, "files": {k: str(v) for k, v in files.items()},
                             **evaluation.to_dict()}}

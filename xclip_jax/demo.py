"""The embedded demo (`configs/demo.py`, `python -m xclip_jax.main --config configs/demo.py`), end to end.

A tiny X-CLIP trained from scratch on synthetic moving shapes: the data generated once (or refused if
generated with other settings) and stored as frame shards, supervised training with multi-view evaluation,
zero-shot on held-out compositions, few-shot (K=2) fine-tuning from the supervised workdir, the results
table and workdir/report.png (example videos with their top-3 classes, the training curves). Each stage is
the config with the overrides of its `config.demo.<stage>` block. `protocols` runs this for
config.protocol="demo".
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from typing import Any

import jax
import ml_collections
import numpy as np
from etils import epath

from xclip_jax import run_config, storage
from xclip_jax.data import synthetic
from xclip_jax.evaluation import report as report_lib
from xclip_jax.evaluation import results as results_lib
from xclip_jax.evaluation.evaluator import EvalResult, Evaluator
from xclip_jax.training import trainer


def _stage(config: ml_collections.ConfigDict, overrides: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """A copy of `config` with a nested block of overrides applied (dict-valued entries merge).

  With data.source "frames" (the demo's default) the stage reads the frame shards of its synthetic task
  (`_demo_frame_shards` builds them next to the videos).
  """
  stage = config.copy_and_resolve_references()
  for key, value in overrides.items():
    if isinstance(value, ml_collections.ConfigDict):
      stage[key].update(value.to_dict())
    else:
      stage[key] = value
  if stage.data.source == "frames":
    for split in ("train", "val"):
      stage.data.frames[split] = str(_frames_folder(stage.data.synthetic_dir, stage.data.synthetic_task, split))
  return stage


def demo_data_dir(config: ml_collections.ConfigDict, workdir: str | os.PathLike) -> str:
  """Where the demo's videos are: data.synthetic_dir if set, else `workdir/data`."""
  return config.data.synthetic_dir or os.fspath(storage.path(workdir) / "data")


DEMO_SPLITS = {"supervised": ("train", "val"), "zero_shot": ("val",), "few_shot": ("train", "val")}


def _frames_folder(synthetic_dir: str | os.PathLike, task: str, split: str) -> epath.Path:
  return storage.path(synthetic_dir) / "frames" / task / split


def _demo_frame_shards(config: ml_collections.ConfigDict) -> None:
  """Stores each split of the synthetic dataset once as frame shards (data.source "frames"), unless done.

  The demo reads 16-frame 32 px videos: decoding H.264 costs its steps more than the model does on this CPU,
  decoding 8 small JPEGs does not (docs/frame_shards.md). Frames keep their size and rate (data.frames).
  The ArrayRecord writer is local-only: for a bucket the videos are read from a local copy and each split's
  shards are built locally, then uploaded with index.json last (its presence means complete).
  """
  from xclip_jax.data import frame_build, labels, sources
  from xclip_jax.data.frame_extract import FrameSettings

  root = config.data.synthetic_dir
  todo = [(task, split) for task, splits in DEMO_SPLITS.items() for split in splits
          if not (_frames_folder(root, task, split) / "index.json").exists()]
  if not todo:
    return
  # 4:4:4 chroma: at 32 px a second chroma subsampling of the H.264 frames costs visible colour at the shapes' edges.
  settings = FrameSettings(short_side=int(config.data.frames.short_side), fps=float(config.data.frames.fps),
                           chroma="444")
  with storage.local_copy(root) as local_root, tempfile.TemporaryDirectory(prefix="xclip_jax_frames-") as staging:
    for task, split in todo:
      out = _frames_folder(root, task, split)
      list_path, class_csv = sources.synthetic_paths(os.fspath(local_root), task, split)
      names = labels.read_class_names(class_csv)
      videos = [frame_build.VideoEntry(r.path, r.label, os.path.relpath(r.path, local_root))
                for r in labels.read_label_list(list_path, os.fspath(local_root), num_classes=len(names))]
      logging.info("Storing %s/%s as frame shards in %s", task, split, out)
      if not storage.is_remote(out):
        frame_build.build(videos, names, out, settings, workers=1, progress=False, overwrite=True)
        continue
      local_out = os.path.join(staging, task, split)
      frame_build.build(videos, names, local_out, settings, workers=1, progress=False, overwrite=True)
      storage.upload_tree(local_out, out, last=["index.json"])


def _synthetic_data(config: ml_collections.ConfigDict) -> None:
  """Generates the demo's dataset if missing; refuses one generated with other settings (another seed).

  Into a bucket: generated locally, then uploaded with manifest.json last (its presence means complete).
  """
  data_dir = storage.path(config.data.synthetic_dir)
  wanted = config.demo.synthetic.to_dict()
  manifest_path = data_dir / "manifest.json"
  if not manifest_path.exists():
    logging.info("Generating the synthetic dataset in %s", data_dir)
    if not storage.is_remote(data_dir):
      synthetic.generate(str(data_dir), **wanted)
      return
    with tempfile.TemporaryDirectory(prefix="xclip_jax_synthetic-") as folder:
      synthetic.generate(os.path.join(folder, "data"), **wanted)
      storage.upload_tree(os.path.join(folder, "data"), data_dir, last=["manifest.json"])
    return
  manifest = json.loads(manifest_path.read_text())
  counts = manifest.get("per_class", {})
  found = {**{k: manifest.get(k) for k in ("seed", "size", "frames", "fps", "style")},
           "train_per_class": counts.get("supervised", {}).get("train"),
           "val_per_class": counts.get("supervised", {}).get("val"),
           "zero_shot_per_class": counts.get("zero_shot", {}).get("val"),
           "few_shot_train_per_class": counts.get("few_shot", {}).get("train")}
  different = {k: (v, wanted[k]) for k, v in found.items() if k in wanted and v != wanted[k]}
  if different:
    detail = ", ".join(f"{k}: {a!r} there vs {b!r} in config.demo.synthetic" for k, (a, b) in different.items())
    raise run_config.ConfigError(f"{manifest_path} was generated with other settings ({detail}); point "
                                 f"--config.data.synthetic_dir to another folder or delete this one.")


def _examples(evaluator: Evaluator, state: Any, data_cfg: ml_collections.ConfigDict, section: str, count: int,
              context_length: int) -> list[report_lib.ExampleRow]:
  """`count` example videos of a split for the report (one process only: the report shows its frames)."""
  if jax.process_count() > 1 or count <= 0:
    return []
  return report_lib.pick_examples(evaluator.predict(state, data_cfg, context_length=context_length), section, count)


def _demo_report(workdir: epath.Path, rows: list[report_lib.ExampleRow], supervised: EvalResult) -> epath.Path:
  """workdir/report.png: example rows and the curves recorded in the stages' TensorBoard event files."""
  curves = report_lib.read_scalars(workdir / "supervised", ("loss", "eval/top1"))
  few = report_lib.read_scalars(workdir / "few_shot", ("loss",))
  last_step = curves["loss"][0][-1:] if len(curves["loss"][0]) else np.array([0])
  panels = [
      report_lib.Panel("supervised training", "loss", [report_lib.Curve("loss", *curves["loss"])], log_y=True),
      report_lib.Panel("supervised validation", "top-1 (%)", [
          report_lib.Curve("1 view, during training", *curves["eval/top1"]),
          report_lib.Curve(f"final, {supervised.views} views", last_step, np.array([supervised.top1]))],
          ylim=(0, 102)),
      report_lib.Panel("few-shot fine-tuning", "loss", [report_lib.Curve("loss", *few["loss"])], log_y=True),
  ]
  return report_lib.write_report(workdir / "report.png", rows, panels, title="X-CLIP demo on synthetic moving shapes")


def run_demo(config: ml_collections.ConfigDict, workdir: epath.Path) -> dict[str, Any]:
  """Synthetic end to end: supervised training, zero-shot on held-out compositions, 2-shot fine-tuning,
  then the picture (workdir/report.png). The videos are in data.synthetic_dir, by default workdir/data."""
  config = config.copy_and_resolve_references()
  config.data.synthetic_dir = demo_data_dir(config, workdir)
  _synthetic_data(config)
  if config.data.source == "frames":
    _demo_frame_shards(config)
  supervised_cfg = _stage(config, config.demo.supervised)
  supervised_dir = workdir / "supervised"
  outcome = trainer.train(supervised_cfg, supervised_dir)
  if outcome.preempted:
    return {"protocol": "demo", "status": "preempted", "stage": "supervised", "step": outcome.step}
  context = outcome.model_config.context_length
  evaluator, state = outcome.evaluator, outcome.state.state["model"]
  views = dict(clips=int(config.eval.final_clips), crops=int(config.eval.final_crops), context_length=context)
  supervised = evaluator.evaluate(state, outcome.config.data, **views)
  zero_cfg = _stage(config, config.demo.zero_shot)
  zero = evaluator.evaluate(state, zero_cfg.data, clips=1, crops=1, context_length=context)
  counts = config.demo.report_examples
  rows = _examples(evaluator, state, supervised_cfg.data, "supervised", counts.supervised, context)
  rows += _examples(evaluator, state, zero_cfg.data, "zero-shot", counts.zero_shot, context)
  few_cfg = _stage(config, config.demo.few_shot)
  few_cfg.init_from.path = str(supervised_dir)
  few_outcome = trainer.train(few_cfg, workdir / "few_shot")
  if few_outcome.preempted:
    return {"protocol": "demo", "status": "preempted", "stage": "few_shot", "step": few_outcome.step}
  few_state = few_outcome.state.state["model"]
  few = few_outcome.evaluator.evaluate(few_state, few_outcome.config.data, clips=1, crops=1, context_length=context)
  k_shot = int(few_cfg.data.k_shot)
  rows += _examples(few_outcome.evaluator, few_state, few_cfg.data, f"few-shot K={k_shot}", counts.few_shot, context)
  results_lib.print_table("X-CLIP demo on synthetic moving shapes", [
      results_lib.row(f"supervised ({supervised.num_classes} seen classes)", supervised),
      results_lib.row(f"zero-shot ({zero.num_classes} unseen compositions)", zero),
      results_lib.row(f"few-shot K={k_shot} ({few.num_classes} new classes)", few),
  ])
  results = {"protocol": "demo", "supervised": supervised.to_dict(), "zero_shot": zero.to_dict(),
             "few_shot": {**few.to_dict(), "k_shot": k_shot}}
  if jax.process_count() == 1:
    path = _demo_report(workdir, rows, supervised)
    results["report"] = {"path": str(path), "rows": [r.to_dict() for r in rows]}
    print(f"Report (example videos with their top-3 classes, training curves): {path}", flush=True)
  return results

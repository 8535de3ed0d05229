"""One evaluation pass: every video of a split, all its views, accuracy over exactly the split's videos.

Class texts are the eval source's class names (so zero-shot evaluation just points the data block at
another dataset), encoded once per pass with the current model. Videos that fail to decode stay in the
denominator as misses and are reported by path.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh

from xclip_jax import sharding
from xclip_jax.data import pipeline
from xclip_jax.evaluation import eval_steps
from xclip_jax.tokenizer import tokenize


@dataclasses.dataclass
class EvalResult:
  top1: float  # percent
  top5: float  # percent
  videos: int  # denominator: every video of the split
  decode_failures: int
  num_classes: int
  views: str  # "clips x crops"
  failed_videos: list[str] = dataclasses.field(default_factory=list)
  videos_in_split: int | None = None  # more than `videos` when the evaluation was shrunk (eval.max_batches)
  classes_evaluated: int | None = None  # classes with at least one evaluated video

  def describe(self) -> str:
    """"32 videos, 1x1 views", or for a shrunk evaluation "16 of 80 videos in 4 of 16 classes, 1x1 views"."""
    videos = f"{self.videos} videos"
    if self.videos_in_split is not None and self.videos_in_split > self.videos:
      videos = f"{self.videos} of {self.videos_in_split} videos"
    if self.classes_evaluated is not None and self.classes_evaluated < self.num_classes:
      videos += f" in {self.classes_evaluated} of {self.num_classes} classes"
    return f"{videos}, {self.views} views"

  @property
  def chance(self) -> float:
    return 100.0 / self.num_classes

  def to_dict(self) -> dict[str, Any]:
    return {**dataclasses.asdict(self), "chance": self.chance}


class Evaluator:
  """Compiles the eval step and text encoder once; runs passes for any data block and view count.

  `state` arguments are the model's nnx state (`TrainState.state["model"]`, or `model_state(...)`).
  """

  def __init__(self, model_graphdef: nnx.GraphDef, mesh: Mesh):
    self.mesh = mesh
    self._step = jax.jit(eval_steps.make_eval_step(model_graphdef), out_shardings=sharding.replicated(mesh))
    self._encode = jax.jit(eval_steps.make_text_encoder(model_graphdef), out_shardings=sharding.replicated(mesh))
    self._probabilities = jax.jit(eval_steps.make_probability_step(model_graphdef),
                                  out_shardings=sharding.replicated(mesh))
    # Runs start on every process together (multi-process runs; see `sharding.ProcessAligned`).
    self._run_step = sharding.ProcessAligned(self._step, "eval step")
    self._run_encode = sharding.ProcessAligned(self._encode, "text encoder")

  @property
  def eval_step(self):
    """The jitted `step(model_state, batch, text_features) -> counts` (what `xclip_jax.planning` compiles)."""
    return self._step

  @property
  def text_encoder(self):
    """The jitted `encode(model_state, tokens) -> (K, E) class features`."""
    return self._encode

  def _padded(self, data_cfg: Any) -> Any:
    """`data_cfg` with the eval batch rounded up to whole rows per device (extra rows are padding, not counted)."""
    rows = sharding.round_up_to_shards(int(data_cfg.eval_batch_size), self.mesh)
    if rows == int(data_cfg.eval_batch_size):
      return data_cfg
    logging.info("data.eval_batch_size=%d padded to %d rows: a multiple of the %d batch shards",
                 data_cfg.eval_batch_size, rows, sharding.batch_shards(self.mesh))
    padded = data_cfg.copy_and_resolve_references()
    padded.eval_batch_size = rows
    return padded

  def text_features(self, state: nnx.State, class_names: list[str], context_length: int) -> jax.Array:
    tokens = tokenize(class_names, context_length=context_length, truncate=True)
    with jax.set_mesh(self.mesh):
      return self._run_encode(state, jax.device_put(tokens, sharding.replicated(self.mesh)))

  def evaluate(self, state: nnx.State, data_cfg: Any, *, split: str = "val", clips: int = 1, crops: int = 1,
               context_length: int = 77, max_batches: int = -1) -> EvalResult:
    """One pass over `split`; `max_batches` >= 0 shrinks it to that many batches of videos spread over the
    split's classes (`pipeline.spread_over_classes`), and the result says how many of how many."""
    data_cfg = self._padded(data_cfg)
    max_videos = max_batches * int(data_cfg.eval_batch_size) if max_batches >= 0 else -1
    iterator = pipeline.make_eval_iterator(data_cfg, split=split, clips=clips, crops=crops, max_videos=max_videos)
    class_names = list(iterator.source.class_names)
    text = self.text_features(state, class_names, context_length)
    totals = {"correct1": 0, "correct5": 0, "count": 0, "decode_failures": 0}
    seen_classes: set[int] = set()
    try:
      with jax.set_mesh(self.mesh):
        for local in iterator:
          seen_classes.update(local["label"][local["valid"]].tolist())
          counts = jax.device_get(self._run_step(state, pipeline.global_batch(local, self.mesh), text))
          for key in totals:
            totals[key] += int(counts[key])
    finally:
      iterator.close()
    videos = max(totals["count"], 1)
    result = EvalResult(
        top1=100.0 * totals["correct1"] / videos, top5=100.0 * totals["correct5"] / videos,
        videos=totals["count"], decode_failures=totals["decode_failures"], num_classes=len(class_names),
        views=f"{clips}x{crops}", failed_videos=[name for _, name in iterator.decode_failures],
        videos_in_split=iterator.videos_in_split,
        classes_evaluated=len(seen_classes) if jax.process_count() == 1 else None)  # (this process's classes)
    if result.decode_failures:
      # Each file was named once already, the first time it was met (see `data.bad_videos`).
      logging.warning("%d of %d videos failed to decode and count as errors", result.decode_failures,
                      result.videos)
    return result

  def predict(self, state: nnx.State, data_cfg: Any, *, split: str = "val", clips: int = 1, crops: int = 1,
              context_length: int = 77, max_videos: int = -1, keep_frames: bool = True) -> Predictions:
    """Class probabilities of `max_videos` videos of a split spread over its classes (all: -1), single process
    only (the frames are this process's; `keep_frames=False` keeps none, for long splits)."""
    if jax.process_count() > 1:
      raise ValueError(f"Evaluator.predict runs in one process; this run has {jax.process_count()}.")
    iterator = pipeline.make_eval_iterator(self._padded(data_cfg), split=split, clips=clips, crops=crops,
                                          max_videos=max_videos)
    class_names = list(iterator.source.class_names)
    text = self.text_features(state, class_names, context_length)
    probabilities, labels, true_labels, frames, indices = [], [], [], [], []
    try:
      with jax.set_mesh(self.mesh):
        for local in iterator:
          keep = local["valid"]
          videos = pipeline.global_batch({"video": local["video"]}, self.mesh)["video"]
          probabilities.append(np.asarray(jax.device_get(self._probabilities(state, videos, text)))[keep])
          labels.append(np.where(local["decode_ok"], local["label"], -1)[keep])
          true_labels.append(local["label"][keep])
          frames.append(local["video"][keep, 0] if keep_frames else np.zeros((int(keep.sum()), 0), np.uint8))
          indices.append(local["index"][keep])
          if 0 <= max_videos <= sum(len(i) for i in indices):
            break
    finally:
      iterator.close()
    n = None if max_videos < 0 else max_videos
    index = np.concatenate(indices)[:n]
    names = [iterator.source.name(int(i)) for i in index]
    failed = {name for name, label in zip(names, np.concatenate(labels)[:n], strict=True) if label < 0}
    return Predictions(probabilities=np.concatenate(probabilities)[:n], labels=np.concatenate(labels)[:n],
                       frames=np.concatenate(frames)[:n], names=names, class_names=class_names,
                       true_labels=np.concatenate(true_labels)[:n],
                       errors={name: iterator.bad_log.rows.get(name, [0, "failed to decode"])[1] for name in failed},
                       videos_in_split=iterator.videos_in_split)


@dataclasses.dataclass
class Predictions:
  """Per-video class probabilities of one pass, with what a person needs to look at them."""

  probabilities: np.ndarray  # (N, K) softmax averaged over views
  labels: np.ndarray  # (N,) int, -1 where the video failed to decode
  frames: np.ndarray  # (N, T, H, W, 3) uint8: the first view's frames, as the model saw them ((N, 0): not kept)
  names: list[str]  # the videos' names in the source
  class_names: list[str]
  true_labels: np.ndarray | None = None  # (N,) int: the class of every video, those that failed included
  errors: dict[str, str] = dataclasses.field(default_factory=dict)  # name -> why it failed to decode
  videos_in_split: int | None = None  # all the split's videos (more than `names` when max_videos shrank the pass)


def summarize(values: list[float]) -> dict[str, float]:
  """Mean and (population) standard deviation over splits or rounds, as the paper reports them."""
  array = np.asarray(values, np.float64)
  return {"mean": float(array.mean()), "std": float(array.std()), "values": [float(v) for v in values]}

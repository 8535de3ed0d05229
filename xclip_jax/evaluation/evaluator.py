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
from xclip_jax.data import batches, pipeline
from xclip_jax.evaluation import eval_steps, scoring
from xclip_jax.models import layers
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

  def __init__(self, model_graphdef: nnx.GraphDef, mesh: Mesh, *, dtype: str):
    self.mesh = mesh
    # The options predict's programs take too (layers.inference_compiler_options): the same numbers from both.
    options = layers.inference_compiler_options(dtype, mesh.devices.flat[0].platform)
    self._step = jax.jit(eval_steps.make_eval_step(model_graphdef), out_shardings=sharding.replicated(mesh),
                         compiler_options=options)
    self._encode = jax.jit(eval_steps.make_text_encoder(model_graphdef), out_shardings=sharding.replicated(mesh),
                           compiler_options=options)
    # Runs start on every process together (multi-process runs; see `sharding.ProcessAligned`).
    self._run_step = sharding.ProcessAligned(self._step, "eval step")
    self._run_encode = sharding.ProcessAligned(self._encode, "text encoder")

  @property
  def eval_step(self):
    """The jitted `step(model_state, batch, text_features) -> per-video probabilities and labels` (what
    `xclip_jax.planning` compiles)."""
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

  def _pass(self, state: nnx.State, data_cfg: Any, *, split: str, clips: int, crops: int, context_length: int,
            max_videos: int = -1, keep_frames: bool = False) -> tuple[dict, Any]:
    """One pass of the eval step over a split: ({probabilities, label, index, decode_ok, frames}, iterator), the
    rows of the split's videos only (every process gets every process's rows; frames are this process's).
    `max_videos` >= 0: that many videos of the split, spread over its classes (`video_source.spread_over_classes`)."""
    iterator = pipeline.make_eval_iterator(data_cfg, split=split, clips=clips, crops=crops, max_videos=max_videos)
    text = self.text_features(state, list(iterator.source.class_names), context_length)
    kept = (eval_steps.PROBABILITIES, batches.LABEL, batches.INDEX, batches.DECODE_OK)
    rows: dict[str, list[np.ndarray]] = {key: [] for key in (*kept, "frames")}
    try:
      with jax.set_mesh(self.mesh):
        for local in iterator:
          out = jax.device_get(self._run_step(state, pipeline.global_batch(local, self.mesh), text))
          keep = np.asarray(out[batches.VALID])
          for key in kept:
            rows[key].append(np.asarray(out[key])[keep])
          if keep_frames:  # single process: the local rows are all the rows
            rows["frames"].append(local[batches.VIDEO][local[batches.VALID], 0])
    finally:
      iterator.close()
    return {key: np.concatenate(value) for key, value in rows.items() if value}, iterator

  def evaluate(self, state: nnx.State, data_cfg: Any, *, split: str = "val", clips: int = 1, crops: int = 1,
               context_length: int = 77, max_batches: int = -1) -> EvalResult:
    """One pass over `split`; `max_batches` >= 0 shrinks it to that many batches of videos spread over the
    split's classes, and the result says how many of how many (`EvalResult.describe`)."""
    data_cfg = self._padded(data_cfg)
    max_videos = max_batches * int(data_cfg.eval_batch_size) if max_batches >= 0 else -1
    rows, iterator = self._pass(state, data_cfg, split=split, clips=clips, crops=crops, context_length=context_length,
                                max_videos=max_videos)
    class_names = list(iterator.source.class_names)
    scores = scoring.score(rows[eval_steps.PROBABILITIES], rows[batches.LABEL], rows[batches.DECODE_OK],
                           len(class_names))
    result = EvalResult(top1=scores.top1, top5=scores.top5, videos=scores.videos, decode_failures=scores.failures,
                        num_classes=len(class_names), views=f"{clips}x{crops}",
                        failed_videos=[name for _, name in iterator.decode_failures],
                        videos_in_split=iterator.videos_in_split,
                        classes_evaluated=len(np.unique(rows[batches.LABEL])))
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
    rows, iterator = self._pass(state, self._padded(data_cfg), split=split, clips=clips, crops=crops,
                                context_length=context_length, max_videos=max_videos, keep_frames=keep_frames)
    names = [iterator.source.name(int(i)) for i in rows[batches.INDEX]]
    decoded = rows[batches.DECODE_OK]
    frames = rows["frames"] if keep_frames else np.zeros((len(names), 0), np.uint8)
    return Predictions(probabilities=rows[eval_steps.PROBABILITIES], labels=np.where(decoded, rows[batches.LABEL], -1),
                       frames=frames, names=names, class_names=list(iterator.source.class_names),
                       true_labels=rows[batches.LABEL],
                       errors={name: iterator.bad_log.rows.get(name, [0, "failed to decode"])[1]
                               for name, ok in zip(names, decoded, strict=True) if not ok},
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

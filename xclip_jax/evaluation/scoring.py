"""The one metrics computation: per-video class probabilities and true labels -> accuracy and its breakdowns.

    scores = score(probabilities, labels, decoded, num_classes)    # numpy, any number of videos
    scores.top1, scores.top5, scores.per_class_accuracy, scores.confusion, scores.failed_per_class

Every evaluation ends here: main's (`evaluator.Evaluator.evaluate`, over the probabilities its eval step
returns), the split report and labelled-set evaluation (`labelled_videos.metrics`, over `classify_videos`'
probabilities). Probabilities are the per-view softmax averaged over views (`eval_steps`; the official sum
ranks the same). Every video is in the denominator: one that could not be decoded (`decoded` False) counts
as an error, outside the confusion matrix and in `failed_per_class`. Ties rank the lower class id first.
"""

from __future__ import annotations

import dataclasses

import numpy as np

TOP_K = 5


def ranked(probabilities: np.ndarray) -> np.ndarray:
  """(N, K) probabilities -> (N, K) class ids, most probable first (ties: lower id first)."""
  return np.argsort(-np.asarray(probabilities), axis=-1, kind="stable")


@dataclasses.dataclass
class Scores:
  """Counts and percentages of one evaluation.

  Attributes:
    correct1, correct5: videos whose true class is the first / among the first five.
    videos: the denominator, every video (failures included).
    failures: videos that could not be decoded (errors).
    confusion: (K, K) counts, row = true class, column = top-1 prediction, over decoded videos.
    failed_per_class: (K,) failures per true class.
    per_class_videos: (K,) videos per true class.
  """

  correct1: int
  correct5: int
  videos: int
  failures: int
  confusion: np.ndarray
  failed_per_class: np.ndarray
  per_class_videos: np.ndarray

  @property
  def top1(self) -> float:
    return 100.0 * self.correct1 / max(self.videos, 1)

  @property
  def top5(self) -> float:
    return 100.0 * self.correct5 / max(self.videos, 1)

  @property
  def per_class_accuracy(self) -> np.ndarray:
    """(K,) top-1 percent per true class; NaN for a class without videos."""
    with np.errstate(invalid="ignore", divide="ignore"):
      return np.where(self.per_class_videos > 0, 100.0 * np.diag(self.confusion) / self.per_class_videos, np.nan)


def score(probabilities: np.ndarray, labels: np.ndarray, decoded: np.ndarray, num_classes: int) -> Scores:
  """Scores of N videos: probabilities (N, K) (rows of undecoded videos are ignored), true labels (N,) in
  [0, K), decoded (N,) bool."""
  labels = np.asarray(labels, np.int64).reshape(-1)
  decoded = np.asarray(decoded, bool).reshape(-1)
  n, k = len(labels), int(num_classes)
  if len(decoded) != n or len(probabilities) != n:
    raise ValueError(f"scoring: {len(probabilities)} probability rows, {n} labels, {len(decoded)} decoded flags")
  if n and (labels.min() < 0 or labels.max() >= k):
    raise ValueError(f"scoring: labels outside [0, {k}): {sorted(set(labels[(labels < 0) | (labels >= k)]))[:5]}")
  order = ranked(probabilities)[:, :TOP_K] if n else np.zeros((0, 1), np.int64)
  hit1 = decoded & (order[:, 0] == labels)
  hit5 = decoded & (order == labels[:, None]).any(axis=-1)
  confusion = np.zeros((k, k), np.int64)
  np.add.at(confusion, (labels[decoded], order[decoded, 0]), 1)
  return Scores(correct1=int(hit1.sum()), correct5=int(hit5.sum()), videos=n, failures=int((~decoded).sum()),
                confusion=confusion, failed_per_class=np.bincount(labels[~decoded], minlength=k),
                per_class_videos=np.bincount(labels, minlength=k))

"""Searching an index by text: windows ranked by cosine, merged into moments, optionally re-ranked with prompts.

    index = store.load("my_index")
    searcher = Searcher(index)                                    # exact: faiss float16 scan (or numpy)
    moments = find_moments(model, index, searcher, "someone juggling", top=10, rerank=5)

The text goes through the text tower alone and is compared with the stored video embeddings (cosine). The
best-scoring windows are the peaks of moments: around a peak, the overlapping windows of its video that
score at least halfway between that video's median and the peak join it (the moment's score: the peak's).
With `rerank` the first moments are scored again the way X-CLIP classifies: their best window is decoded,
its video features computed, and the text conditioned on them by the video-specific prompt generator (what
an index cannot store, docs/search.md); those moments are then ordered by that score, ahead of the rest.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from xclip_jax.data import frame_stream
from xclip_jax.search.embedder import iter_video_windows
from xclip_jax.search.store import Index
from xclip_jax.search.windows import Window


@dataclasses.dataclass
class Moment:
  """A span of one video made of overlapping matching windows; `score` is its best window's cosine."""

  video: str
  start_s: float
  end_s: float
  score: float
  best_start_s: float
  best_end_s: float
  windows: int
  rerank_score: float | None = None


class Searcher:
  """Exact inner-product search over an index's vectors: faiss's float16 scalar-quantizer flat index (exact;
  the fastest exact scan measured here), or numpy without faiss."""

  def __init__(self, vectors: np.ndarray):
    self.count, self.dim = vectors.shape
    try:
      import faiss
    except ImportError:
      faiss = None
    if faiss is None:
      self._faiss, self._vectors = None, np.asarray(vectors, np.float32)
      return
    self._faiss = faiss.IndexScalarQuantizer(self.dim, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT)
    for start in range(0, self.count, 1 << 18):  # added in chunks: float32 copies of one chunk at a time
      self._faiss.add(np.ascontiguousarray(vectors[start:start + (1 << 18)], np.float32))

  def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(scores, rows), each (Q, k), best first; rows of fewer than k are -1."""
    queries = np.ascontiguousarray(np.atleast_2d(queries), np.float32)
    k = max(1, min(int(k), self.count))
    if self.count == 0:
      return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
    if self._faiss is not None:
      return self._faiss.search(queries, k)
    scores = queries @ self._vectors.T
    rows = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, rows, 1), axis=1, kind="stable")
    rows = np.take_along_axis(rows, order, 1)
    return np.take_along_axis(scores, rows, 1), rows


def text_embedding(model, texts: list[str]) -> np.ndarray:
  """(Q, E) unit text embeddings from the text tower alone (no prompts)."""
  import xclip_jax

  tokens = xclip_jax.tokenize(texts, context_length=model.config.context_length, truncate=True)
  embedding = np.asarray(model.encode_text(tokens), np.float32)
  return embedding / np.linalg.norm(embedding, axis=-1, keepdims=True)


def video_rows(index: Index) -> dict[str, np.ndarray]:
  """{video: its rows in time order}; parts keep a video's rows together, so this is one pass (cached)."""
  if index.rows_by_video is None:
    video = index.video
    cuts = np.flatnonzero(video[1:] != video[:-1]) + 1 if len(video) else np.zeros(0, np.int64)
    index.rows_by_video = {}
    for begin, end in zip(np.concatenate([[0], cuts]), np.concatenate([cuts, [len(video)]]), strict=True):
      rows = np.arange(begin, end)
      index.rows_by_video[video[begin]] = rows[np.argsort(index.start_s[rows], kind="stable")]
  return index.rows_by_video


def video_moments(index: Index, video: str, query: np.ndarray, floor: float) -> list[Moment]:
  """The moments of one video: around each peak window, the run of overlapping windows that score at least
  halfway between the video's median and the peak; peaks below `floor` are not moments."""
  rows = video_rows(index)[video]
  scores = index.vectors[rows].astype(np.float32) @ query
  starts, ends = index.start_s[rows], index.end_s[rows]
  median = float(np.median(scores))
  used = np.zeros(len(rows), bool)
  moments = []
  for peak in np.argsort(-scores, kind="stable"):
    if used[peak]:
      continue
    if scores[peak] < floor:
      break
    half = median + (scores[peak] - median) / 2
    low = high = peak
    while low > 0 and not used[low - 1] and scores[low - 1] >= half and starts[low] <= ends[low - 1] + 1e-6:
      low -= 1
    while (high + 1 < len(rows) and not used[high + 1] and scores[high + 1] >= half
           and starts[high + 1] <= ends[high] + 1e-6):
      high += 1
    used[low:high + 1] = True
    moments.append(Moment(video, float(starts[low]), float(ends[high]), float(scores[peak]), float(starts[peak]),
                          float(ends[peak]), int(high - low + 1)))
  return moments


def find_moments(model, index: Index, searcher: Searcher, text: str, *, top: int = 10, rerank: int = 0,
                 candidates: int | None = None) -> list[Moment]:
  """The `top` moments of the index that match `text` (see the module docstring)."""
  if top < 1 or rerank < 0:
    raise ValueError(f"--top must be at least 1 and --rerank at least 0, got {top} and {rerank}")
  candidates = candidates or max(100, 20 * top)
  embedding = text_embedding(model, [text])
  scores, rows = searcher.search(embedding, candidates)
  rows = rows[0][rows[0] >= 0]
  if not len(rows):
    return []
  floor = float(scores[0][len(rows) - 1])  # a moment's peak is one of the candidate windows
  moments = [m for video in dict.fromkeys(index.video[rows]) for m in video_moments(index, video, embedding[0], floor)]
  moments.sort(key=lambda m: (-m.score, m.video, m.start_s))
  moments = moments[:max(top, rerank)]
  if rerank:
    rescore(model, moments[:rerank], text)
    head, tail = moments[:rerank], moments[rerank:]
    head.sort(key=lambda m: (-m.rerank_score, m.video, m.start_s))
    moments = head + tail
  return moments[:top]


def rescore(model, moments: list[Moment], text: str) -> None:
  """Sets each moment's `rerank_score`: the cosine of its best window with the video-conditioned (prompted) text."""
  import jax.numpy as jnp

  import xclip_jax

  tokens = xclip_jax.tokenize([text], context_length=model.config.context_length, truncate=True)
  text_features = model.encode_text(tokens)

  def head(features):
    return model.logits(features, text_features)[:, 0] / jnp.exp(model.state["logit_scale"][...])

  plans = {}
  for k, moment in enumerate(moments):
    info = frame_stream.probe(moment.video)
    plans[k] = window_at(info, model.config.num_frames, moment.best_start_s, moment.best_end_s)
  keys = list(plans)
  results = iter_video_windows(model, [moments[k].video for k in keys], window_s=1.0, stride_s=1.0, head=head,
                               batch_size=min(8, max(1, len(keys))),
                               plans=[[plans[k]] for k in keys])
  for k, result in zip(keys, results, strict=True):
    moments[k].rerank_score = float(result.values[0]) if result.error is None else float("-inf")


def window_at(info: frame_stream.VideoInfo, frames: int, start_s: float, end_s: float) -> Window:
  """The window [start_s, end_s) of a video, sampled as `search.windows.plan_windows` samples its windows."""
  from xclip_jax.data import sampling

  first = min(int(round(start_s * info.fps)), info.num_frames - 1)
  span = max(1, min(int(round((end_s - start_s) * info.fps)), info.num_frames - first))
  return Window(first / info.fps, (first + span) / info.fps, first + sampling.segment_test(span, frames))

"""An approximate index over an index's vectors, for millions of windows: faiss IVF-SQ8, re-scored exactly.

    python -m xclip_jax.search index ... --out my_index --approximate   # after the parts: my_index/approximate.*
    python -m xclip_jax.search query --index my_index --text ...         # uses it while it covers every part

IVF-SQ8 (faiss `index_factory("IVF<lists>,SQ8")`, inner product): a k-means over the vectors splits them into
`lists` inverted lists, and each vector is kept as 8-bit scalar-quantized codes (one byte a dimension, half
of float16). A query scans the `nprobe` lists nearest to it; the top `rescore` candidates of the codes are
then scored exactly with the float16 vectors, so the scores a query returns are exact and only the choice of
candidates is approximate. docs/search.md has its recall@10 against exact search, measured by
scripts/benchmark_search.py.

Files: INDEX/approximate.faiss (faiss.write_index's format: `faiss.read_index` reads it) and
INDEX/approximate.json (the parts and rows it covers, lists, nprobe), written last: it makes the index count.
Parts added later are not in it: `query` then searches exactly and says so, until the next `--approximate`.
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np

from xclip_jax import storage
from xclip_jax.search import store

FACTORY = "IVF{lists},SQ8"
NPROBE = 16  # recall@10 did not move between 8 and 128 in the measurements (docs/search.md)
RESCORE = 100


def lists_for(rows: int) -> int:
  """Inverted lists for `rows` vectors: 4096 from 4M, 1024 from 200k (as measured), else about sqrt(rows)
  with at least 39 training vectors a list (faiss's k-means minimum)."""
  if rows >= 4_000_000:
    return 4096
  if rows >= 200_000:
    return 1024
  return max(1, min(int(math.sqrt(rows)), rows // 39))


@dataclasses.dataclass
class Approximate:
  """A loaded approximate index: the faiss index and what it covers."""

  index: object  # faiss.Index
  meta: dict


def build(index: str, *, nprobe: int = NPROBE, seed: int = 0) -> dict:
  """Builds INDEX/approximate.* over every complete part of the index; returns its metadata."""
  import faiss

  loaded = store.load(index)
  _, _, names = store.read_reports(index)
  rows, dim = loaded.vectors.shape
  if rows == 0:
    raise store.IndexProblem(f"{index}: no windows to build an approximate index over")
  lists = lists_for(rows)
  factory = FACTORY.format(lists=lists)
  ann = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
  sample = np.random.default_rng(seed).permutation(rows)[:max(40 * lists, 10_000)]
  ann.train(np.ascontiguousarray(loaded.vectors[np.sort(sample)], np.float32))
  for start in range(0, rows, 1 << 18):  # float32 copies of one chunk at a time
    ann.add(np.ascontiguousarray(loaded.vectors[start:start + (1 << 18)], np.float32))
  folder = storage.path(index)
  storage.write_bytes(folder / "approximate.faiss", faiss.serialize_index(ann).tobytes())
  meta = {"factory": factory, "lists": lists, "nprobe": nprobe, "rows": rows, "parts": names,
          "bytes_per_vector": ann.sa_code_size() + 8}
  storage.write_text(folder / "approximate.json", json.dumps(meta, indent=1, sort_keys=True) + "\n")
  return meta


def read(index: str, rows: int) -> tuple[Approximate | None, str]:
  """(the approximate index, "") when there is one covering exactly the index's complete parts and `rows`
  rows; else (None, why not)."""
  folder = storage.path(index)
  if not (folder / "approximate.json").exists():
    return None, "no approximate index"
  meta = json.loads((folder / "approximate.json").read_text())
  _, _, names = store.read_reports(index)
  if meta["parts"] != names or meta["rows"] != rows:
    return None, (f"the approximate index covers {len(meta['parts'])} parts ({meta['rows']} windows), the index has "
                  f"{len(names)} ({rows}): build it again with `index ... --approximate`")
  import faiss

  ann = faiss.deserialize_index(np.frombuffer((folder / "approximate.faiss").read_bytes(), np.uint8))
  faiss.extract_index_ivf(ann).nprobe = meta["nprobe"]
  return Approximate(ann, meta), ""


def search(approximate: Approximate, vectors: np.ndarray, queries: np.ndarray, k: int,
           rescore: int = RESCORE) -> tuple[np.ndarray, np.ndarray]:
  """(scores, rows), each (Q, k), best first: the top `max(k, rescore)` candidates of the codes, scored
  exactly with `vectors` (the index's float16 rows); rows of fewer than k are -1."""
  _, candidates = approximate.index.search(queries, max(k, rescore))
  scores = np.full((len(queries), k), -np.inf, np.float32)
  rows = np.full((len(queries), k), -1, np.int64)
  for q, found in enumerate(candidates):
    found = np.sort(found[found >= 0])
    exact = vectors[found].astype(np.float32) @ queries[q]
    best = np.argsort(-exact, kind="stable")[:k]
    scores[q, :len(best)], rows[q, :len(best)] = exact[best], found[best]
  return scores, rows

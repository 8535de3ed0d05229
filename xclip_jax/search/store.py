"""The on-disk index: window embeddings as float16 .npy, window rows as Parquet, in parts; local or gs://.

    INDEX/index.json                  format, the model (checkpoint, fingerprint, config), window, stride, frames
    INDEX/parts/<part>.npy            (n, E) float16 unit vectors, row i = row i of the Parquet file
    INDEX/parts/<part>.parquet        video (string), start_s, end_s (float64), model (the fingerprint)
    INDEX/parts/<part>.report.json    the part's videos (windows, seconds, warning) and failed videos (error)

Every tool that reads .npy (numpy, `np.load(mmap_mode="r")`) or Parquet (pyarrow, pandas, polars, DuckDB)
reads an index. A part is written by one process (`--process-id`) after it finished some videos: its .npy
and .parquet first, its report last, each as one whole file or object (`storage.write_bytes`). A part
counts only once its report exists, so a build killed at any point leaves complete parts and files that are
ignored and replaced; the videos of complete parts are never embedded again. Part names are
`p<process>-<hash of its videos>`: the same videos give the same name on every run.

The vectors are the MIT's video embedding, L2-normalised: a dot product with a unit text embedding is the
cosine the search ranks by (X-CLIP's prompts condition the text on the video, so they cannot be indexed;
`search.query` uses them to re-rank). See docs/search.md for the measurements behind the formats.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
from collections.abc import Sequence

import numpy as np

from xclip_jax import storage

FORMAT = "xclip_jax.search.index/1"


class IndexProblem(ValueError):
  """An index that cannot be used (missing, another model or window, damaged); the message names it."""


@dataclasses.dataclass
class Part:
  """What one part adds: rows (video, start_s, end_s), their vectors, and its videos' outcomes."""

  videos: list[dict]  # {"video", "windows", "duration_s", "warning"}
  failed: list[dict]  # {"video", "error"}
  video: list[str] = dataclasses.field(default_factory=list)
  start_s: list[float] = dataclasses.field(default_factory=list)
  end_s: list[float] = dataclasses.field(default_factory=list)
  vectors: list[np.ndarray] = dataclasses.field(default_factory=list)

  @property
  def rows(self) -> int:
    return len(self.video)


@dataclasses.dataclass
class Index:
  """A whole index in memory: window rows (numpy columns), their vectors (n, E) float16, and the report."""

  manifest: dict
  video: np.ndarray  # (n,) object
  start_s: np.ndarray
  end_s: np.ndarray
  vectors: np.ndarray  # (n, E) float16
  videos: list[dict]
  failed: list[dict]
  rows_by_video: dict | None = None  # filled by search.query.video_rows

  def __len__(self) -> int:
    return len(self.video)


def manifest_for(model, checkpoint: str, *, window_s: float, stride_s: float, frame_method: str | None) -> dict:
  return {"format": FORMAT, "model": {"checkpoint": str(checkpoint), "fingerprint": fingerprint(model),
                                      "config": model.config.to_dict()},
          "frames": model.config.num_frames, "frame_interpolation": frame_method, "window_s": window_s,
          "stride_s": stride_s, "embed_dim": model.config.embed_dim}


def fingerprint(model) -> str:
  """sha256 of the model's parameters (and frame count): which model the vectors came from."""
  import jax

  digest = hashlib.sha256(str(model.config.num_frames).encode())
  for leaf in jax.tree.leaves(model.state):
    digest.update(np.ascontiguousarray(np.asarray(leaf)).tobytes())
  return digest.hexdigest()[:16]


def open_or_create(index: str, manifest: dict) -> dict:
  """Checks an existing index against `manifest` (same model, window, stride, frames) or creates it."""
  path = storage.path(index) / "index.json"
  if path.exists():
    found = read_manifest(index)
    for key in ("window_s", "stride_s", "frames", "frame_interpolation"):
      if found.get(key) != manifest[key]:
        raise IndexProblem(f"{path}: the index was built with {key}={found.get(key)}, this run has {manifest[key]}; "
                          f"use another --out, or the same settings to add videos")
    if found["model"]["fingerprint"] != manifest["model"]["fingerprint"]:
      raise IndexProblem(f"{path}: the index holds embeddings of model {found['model']['checkpoint']} (fingerprint "
                        f"{found['model']['fingerprint']}); {manifest['model']['checkpoint']} is another model")
    return found
  storage.mkdir(storage.path(index) / "parts")
  storage.write_text(path, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
  return manifest


def read_manifest(index: str) -> dict:
  path = storage.path(index) / "index.json"
  if not path.exists():
    raise IndexProblem(f"{index}: no index here (no index.json); build one with python -m xclip_jax.search index")
  try:
    manifest = json.loads(path.read_text())
  except json.JSONDecodeError as e:
    raise IndexProblem(f"{path}: not valid JSON: {e}") from None
  if manifest.get("format") != FORMAT:
    raise IndexProblem(f"{path}: format {manifest.get('format')!r}, expected {FORMAT!r}")
  return manifest


def _parts(index: str) -> list[str]:
  """Names of the complete parts (those with a report), sorted."""
  folder = storage.path(index) / "parts"
  if not folder.exists():
    return []
  return sorted(p.name[: -len(".report.json")] for p in folder.iterdir() if p.name.endswith(".report.json"))


def part_name(process_id: int, videos: Sequence[str]) -> str:
  digest = hashlib.sha256("\n".join(videos).encode()).hexdigest()[:16]
  return f"p{process_id:05d}-{digest}"


def write_part(index: str, process_id: int, part: Part, model_fingerprint: str) -> str:
  """Writes a part (vectors, rows, then its report, which makes it count); returns its name."""
  import pyarrow as pa
  import pyarrow.parquet as pq

  name = part_name(process_id, [v["video"] for v in part.videos] + [f["video"] for f in part.failed])
  folder = storage.path(index) / "parts"
  vectors = (np.concatenate(part.vectors) if part.vectors else np.zeros((0, 0))).astype(np.float16)
  buffer = io.BytesIO()
  np.save(buffer, vectors, allow_pickle=False)
  storage.write_bytes(folder / f"{name}.npy", buffer.getvalue())
  table = pa.table({"video": pa.array(part.video, pa.string()), "start_s": pa.array(part.start_s, pa.float64()),
                    "end_s": pa.array(part.end_s, pa.float64()),
                    "model": pa.array([model_fingerprint] * part.rows, pa.string()).dictionary_encode()})
  buffer = io.BytesIO()
  pq.write_table(table, buffer)
  storage.write_bytes(folder / f"{name}.parquet", buffer.getvalue())
  report = {"rows": part.rows, "videos": part.videos, "failed": part.failed}
  storage.write_text(folder / f"{name}.report.json", json.dumps(report, indent=1, sort_keys=True) + "\n")
  return name


def remove_unfinished(index: str, process_id: int) -> list[str]:
  """Deletes this process's files of parts that never got their report (a killed build); returns them."""
  folder = storage.path(index) / "parts"
  if not folder.exists():
    return []
  done = set(_parts(index))
  prefix = f"p{process_id:05d}-"
  stale = [p for p in folder.iterdir()
           if p.name.startswith(prefix) and p.name.split(".", 1)[0] not in done]
  for p in stale:
    p.unlink()
  return [p.name for p in stale]


def read_reports(index: str) -> tuple[list[dict], list[dict], list[str]]:
  """(videos done, videos failed and not done since, part names) from the complete parts."""
  videos, failed, names = [], {}, _parts(index)
  seen = set()
  folder = storage.path(index) / "parts"
  for name in names:
    report = json.loads((folder / f"{name}.report.json").read_text())
    for video in report["videos"]:
      if video["video"] not in seen:
        seen.add(video["video"])
        videos.append({**video, "part": name})
    for failure in report["failed"]:
      failed[failure["video"]] = failure
  return videos, [f for v, f in failed.items() if v not in seen], names


def load(index: str) -> Index:
  """The whole index in memory (vectors float16). A video in two parts counts once (the first part's)."""
  import pyarrow.parquet as pq

  manifest = read_manifest(index)
  videos, failed, names = read_reports(index)
  owner = {v["video"]: v["part"] for v in videos}
  folder = storage.path(index) / "parts"
  columns: dict[str, list] = {"video": [], "start_s": [], "end_s": []}
  vectors = []
  for name in names:
    try:
      table = pq.read_table(io.BytesIO((folder / f"{name}.parquet").read_bytes()))
      part_vectors = np.load(io.BytesIO((folder / f"{name}.npy").read_bytes()), allow_pickle=False)
    except Exception as e:
      raise IndexProblem(f"{folder / name}: damaged part: {type(e).__name__}: {e}") from e
    if len(part_vectors) != table.num_rows:
      raise IndexProblem(f"{folder / name}: {table.num_rows} rows but {len(part_vectors)} vectors")
    video = np.asarray(table.column("video").to_pylist(), dtype=object)
    keep = np.fromiter((owner.get(v) == name for v in video), bool, count=len(video))
    columns["video"].append(video[keep])
    columns["start_s"].append(table.column("start_s").to_numpy()[keep])
    columns["end_s"].append(table.column("end_s").to_numpy()[keep])
    vectors.append(part_vectors[keep])
  dim = manifest["embed_dim"]
  return Index(manifest, *(np.concatenate(c) if c else np.zeros(0) for c in columns.values()),
               vectors=np.concatenate(vectors) if vectors else np.zeros((0, dim), np.float16),
               videos=videos, failed=failed)


def describe(index: str) -> dict:
  """The index's report: counts, hours, the model, and every video that failed (with its error)."""
  manifest = read_manifest(index)
  videos, failed, names = read_reports(index)
  model = manifest["model"]
  return {"index": str(index), "model": model["checkpoint"], "fingerprint": model["fingerprint"],
          "frames": manifest["frames"], "window_s": manifest["window_s"], "stride_s": manifest["stride_s"],
          "parts": len(names), "videos": len(videos), "windows": sum(v["windows"] for v in videos),
          "hours": round(sum(v["duration_s"] for v in videos) / 3600, 4),
          "warnings": [{"video": v["video"], "warning": v["warning"]} for v in videos if v.get("warning")],
          "failed": failed}


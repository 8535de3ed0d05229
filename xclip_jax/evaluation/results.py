"""results.json and the printed results table."""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any

import jax


def write_results(workdir: str | os.PathLike, results: dict[str, Any]) -> pathlib.Path:
  """Writes `workdir/results.json` atomically (process 0 only) and returns its path."""
  path = pathlib.Path(workdir) / "results.json"
  if jax.process_index() == 0:
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(".results.json.tmp")
    staging.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    staging.replace(path)
  return path


def format_table(rows: list[tuple[str, str, str, str]]) -> str:
  """rows of (evaluation, top-1, top-5, chance / note) as an aligned text table."""
  header = ("evaluation", "top-1", "top-5", "chance / notes")
  widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(4)]
  line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
  return "\n".join([line(header), line(tuple("-" * w for w in widths)), *(line(r) for r in rows)])


def print_table(title: str, rows: list[tuple[str, str, str, str]]) -> str:
  text = f"\n{title}\n{format_table(rows)}\n"
  if jax.process_index() == 0:
    print(text, flush=True)
  return text


def percent(value: float) -> str:
  return f"{value:.2f}%"


def mean_std(summary: dict[str, float]) -> str:
  return f"{summary['mean']:.2f} ± {summary['std']:.2f}%"

"""results.json and the printed results table."""

from __future__ import annotations

import json
import os
from typing import Any

import jax
from etils import epath

from xclip_jax import storage


def write_results(workdir: str | os.PathLike, results: dict[str, Any]) -> epath.Path:
  """Writes `workdir/results.json` whole (process 0 only; a local rename or one bucket object); returns its path."""
  path = storage.path(workdir) / "results.json"
  if jax.process_index() == 0:
    storage.mkdir(path.parent)
    storage.write_text(path, json.dumps(results, indent=2, sort_keys=True) + "\n")
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


def row(name: str, result: Any) -> tuple[str, str, str, str]:
  """A table row of an `evaluator.EvalResult`: name, top-1, top-5, chance and counts."""
  note = f"chance {result.chance:.2f}%, {result.describe()}"
  if result.decode_failures:
    note += f", {result.decode_failures} failed to decode (counted as errors)"
  return name, percent(result.top1), percent(result.top5), note


def percent(value: float) -> str:
  return f"{value:.2f}%"


def mean_std(summary: dict[str, float]) -> str:
  return f"{summary['mean']:.2f} ± {summary['std']:.2f}%"

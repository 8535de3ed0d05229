"""Running a notebook as papermill would, without papermill: parameters injected after the "parameters" cell,
executed by nbclient in a real IPython kernel of the current interpreter (this venv)."""

from __future__ import annotations

import copy
import json
import os
import pathlib
import sys
from collections.abc import Mapping
from typing import Any

import nbformat

PARAMETERS_TAG = "parameters"
INJECTED_TAG = "injected-parameters"  # papermill's name for the cell it adds


def tags(cell) -> list[str]:
  return list(cell.get("metadata", {}).get("tags", []))


def inject_parameters(notebook: nbformat.NotebookNode, parameters: Mapping[str, Any],
                      setup: str = "") -> nbformat.NotebookNode:
  """A copy of `notebook` with a cell assigning `parameters` (as Python literals) right after the cell tagged
  "parameters", so they override its defaults; `setup` is code run first in that cell."""
  notebook = copy.deepcopy(notebook)
  positions = [i for i, cell in enumerate(notebook.cells) if PARAMETERS_TAG in tags(cell)]
  if len(positions) != 1:
    raise ValueError(f"expected one cell tagged {PARAMETERS_TAG!r}, found {len(positions)}")
  lines = ["# Parameters injected by the test suite"] + ([setup.strip()] if setup else [])
  lines += [f"{name} = {value!r}" for name, value in parameters.items()]
  cell = nbformat.v4.new_code_cell("\n".join(lines), metadata={"tags": [INJECTED_TAG]})
  notebook.cells.insert(positions[0] + 1, cell)
  return notebook


def write_kernelspec(jupyter_path: pathlib.Path, name: str = "python3") -> None:
  """A kernelspec that runs ipykernel with this interpreter; put `jupyter_path` first in JUPYTER_PATH."""
  directory = jupyter_path / "kernels" / name
  directory.mkdir(parents=True, exist_ok=True)
  spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
          "display_name": f"Python 3 ({sys.executable})", "language": "python"}
  (directory / "kernel.json").write_text(json.dumps(spec))


def execute(notebook: nbformat.NotebookNode, *, cwd: pathlib.Path, env: Mapping[str, str],
            timeout: int = 300) -> nbformat.NotebookNode:
  """Executes every cell in a fresh kernel (environment `env`, working directory `cwd`); raises
  nbclient's CellExecutionError naming the cell if one fails."""
  from nbclient import NotebookClient

  client = NotebookClient(notebook, timeout=timeout, kernel_name=notebook.metadata.kernelspec.name,
                          resources={"metadata": {"path": str(cwd)}})
  client.execute(env={**os.environ, **env})
  return notebook


def images(cell) -> int:
  """How many PNG images a code cell displayed."""
  return sum("image/png" in output.get("data", {}) for output in cell.get("outputs", []))


def text(cell) -> str:
  """What a code cell printed (stdout) and returned as text."""
  parts = []
  for output in cell.get("outputs", []):
    if output.get("output_type") == "stream" and output.get("name") == "stdout":
      parts.append(output.get("text", ""))
    elif "text/plain" in output.get("data", {}):
      parts.append(output["data"]["text/plain"])
  return "".join(parts)


def errors(notebook: nbformat.NotebookNode) -> list[str]:
  return [f"{output.get('ename')}: {output.get('evalue')}" for cell in notebook.cells
          for output in cell.get("outputs", []) if output.get("output_type") == "error"]

"""`export_model`: a model as ONNX files and StableHLO artifacts in one new folder, with its manifest.

Everything is written into a staging folder that becomes the output folder only when complete
(`storage.staged_directory`): a failure, Ctrl-C included, leaves no output folder behind.
"""

from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Callable, Sequence

from xclip_jax import storage
from xclip_jax.export import manifest, onnx_files, stablehlo
from xclip_jax.export.functions import ExportedModel
from xclip_jax.tokenizer import tokenize

FORMATS = ("onnx", "stablehlo")


class ExportError(ValueError):
  """Bad input to an export (format, output folder, labels); the message names it."""


def parse_formats(text: str | Sequence[str]) -> tuple[str, ...]:
  names = [name.strip() for name in (text.split(",") if isinstance(text, str) else text)]
  unknown = [name for name in names if name not in FORMATS]
  if unknown or not names:
    raise ExportError(f"unsupported format {', '.join(map(repr, unknown or names))}; choose from "
                      f"{', '.join(FORMATS)} (comma-separated)")
  return tuple(dict.fromkeys(names))


def check_output(out: str | os.PathLike) -> None:
  if storage.path(out).exists():
    raise ExportError(f"--out {out} already exists; give a new folder (nothing was written)")


def export_model(checkpoint: str | os.PathLike, out: str | os.PathLike, *, labels: Sequence[str] | None = None,
                 formats: str | Sequence[str] = FORMATS, progress: bool = True,
                 on_step: Callable[[str], None] | None = None) -> dict:
  """Exports a model; returns the manifest written to `out`/manifest.json.

  Args:
    checkpoint: anything `xclip_jax.load_model` loads (model directory, training workdir, HF XCLIP directory,
      release file, zoo name).
    out: a folder that does not exist yet (local or gs://).
    labels: class names baked into `classifier` (without them only the encoders and `logits` are written).
    formats: "onnx", "stablehlo" or both.
    progress: show a progress bar with the step being written.
    on_step: called with each step's name before it runs (tests, logs).
  """
  formats = parse_formats(formats)
  check_output(out)
  if "onnx" in formats and (problem := onnx_files.available()):
    raise ExportError(problem)
  if labels is not None and (not labels or any(not name.strip() for name in labels)):
    raise ExportError("labels must be non-empty class names")
  from xclip_jax.inference import load_model

  # float32 and plain XLA attention: what both formats can express, and the reference the checks compare with.
  model = load_model(checkpoint, dtype="float32", attention_implementation="xla")
  class_embeddings = None
  if labels is not None:
    class_embeddings = model.encode_text(tokenize(list(labels), context_length=model.config.context_length,
                                                  truncate=True))
  exported = ExportedModel(model, class_embeddings)
  functions = exported.functions()
  for function in functions:
    function.check_outputs(exported.weights)

  steps = [(f, fmt) for fmt in formats for f in functions]
  from tqdm.auto import tqdm

  files: dict[str, dict] = {f.name: {} for f in functions}
  with storage.staged_directory(out) as folder:
    weights_file = stablehlo.write_weights(exported.weights, folder) if "stablehlo" in formats else None
    with tqdm(steps, desc="export", unit="file", disable=not progress, dynamic_ncols=True) as bar:
      for function, fmt in bar:
        bar.set_postfix_str(f"{function.name} ({fmt})")
        if on_step is not None:
          on_step(f"{function.name}.{fmt}")
        if fmt == "onnx":
          files[function.name]["onnx"] = onnx_files.write(function, exported.weights, folder)
        else:
          files[function.name]["stablehlo"] = stablehlo.write(function, exported.weights, folder)
    versions = {"stablehlo": stablehlo.versions()} if "stablehlo" in formats else {}
    if "onnx" in formats:
      versions["onnx"] = onnx_files.versions()
    document = manifest.build(config=model.config, source=os.fspath(checkpoint), labels=labels, functions=functions,
                              files=files, folder=folder, versions=versions, weights_file=weights_file)
    (folder / manifest.FILE).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    _readable(folder)
  return document


def _readable(folder: pathlib.Path) -> None:
  """Modes a server can read, whatever the umask made them: onnx writes its .data files 0600."""
  for path in [folder, *folder.rglob("*")]:
    path.chmod(0o755 if path.is_dir() else 0o644)

"""ONNX files with jax2onnx: one `<name>.onnx` per exported function, weights inside as constants.

jax2onnx traces the function (weights closed over) and converts each JAX primitive to ONNX operators; the
dynamic dimensions are symbolic (`jax.export.symbolic_shape`) and keep their names in the ONNX graph. What the
outputs do not need is pruned (`prune`). Weights over 1 MB go to a `<name>.onnx.data` file next to it (ONNX
external data), which onnxruntime reads by itself.

jax2onnx is an optional dependency installed without its declared dependencies (it pins orbax-checkpoint below
the version this project uses, and never imports it): see docs/export.md, "Installing".
"""

from __future__ import annotations

import contextlib
import logging
import pathlib
from collections.abc import Iterator

from xclip_jax.export.functions import ExportFunction

OPSET = 23
EXTERNAL_DATA_BYTES = 1 << 20  # tensors over 1 MB go to <name>.onnx.data (jax2onnx's own threshold)
INSTALL = ("pip install -r requirements-export.txt && pip install --no-deps jax2onnx==0.17.1 "
           "(docs/export.md, Installing)")
# Loggers that report what is not a problem here: plugins for libraries we do not use (equinox, dm-pix) that
# jax2onnx tries to import, and onnx_ir's note on shape constants it serialises without a type.
_QUIET = {"jax2onnx.plugins.plugin_system": logging.CRITICAL, "onnx_ir.serde": logging.ERROR}


def available() -> str | None:
  """None if the ONNX export can run, else why not (with the install command)."""
  try:
    import jax2onnx  # noqa: F401
    import onnx  # noqa: F401
  except ImportError as error:
    return f"ONNX export needs jax2onnx and onnx ({error.name} is missing): {INSTALL}"
  return None


@contextlib.contextmanager
def _quiet_logs() -> Iterator[None]:
  loggers = {name: logging.getLogger(name) for name in _QUIET}
  before = {name: logger.level for name, logger in loggers.items()}
  for name, logger in loggers.items():
    logger.setLevel(_QUIET[name])
  try:
    yield
  finally:
    for name, logger in loggers.items():
      logger.setLevel(before[name])


def versions() -> dict[str, str]:
  from importlib import metadata

  return {"jax2onnx": metadata.version("jax2onnx"), "onnx": metadata.version("onnx"), "opset": str(OPSET)}


def prune(graph) -> int:
  """Removes nodes whose outputs nothing reads, then initializers nothing reads; returns how many went.

  jax2onnx keeps constants that the traced function closed over but never used (the classifier holds the text
  tower's weights otherwise: 2.3x the bytes for B/32), and onnxruntime warns about each when it loads the file.
  Names read inside subgraphs (a `Loop` body for `scan_layers`) count as read.
  """

  def read_names(g) -> set[str]:
    names = {o.name for o in g.output}
    for node in g.node:
      names.update(node.input)
      for attribute in node.attribute:
        for sub in [attribute.g] if attribute.HasField("g") else list(attribute.graphs):
          names |= read_names(sub)
    return names

  removed = 0
  while True:
    read = read_names(graph)
    dead = [node for node in graph.node if not any(name in read for name in node.output)]
    if not dead:
      break
    for node in dead:
      graph.node.remove(node)
    removed += len(dead)
  read = read_names(graph)
  unused = [t for t in graph.initializer if t.name not in read]
  for tensor in unused:
    graph.initializer.remove(tensor)
  return removed + len(unused)


def write(function: ExportFunction, weights: dict, folder: pathlib.Path) -> list[str]:
  """Writes `<folder>/<function.name>.onnx` (+ `.onnx.data` for large weights); returns the file names written."""
  import jax2onnx
  import onnx

  path = folder / f"{function.name}.onnx"
  with _quiet_logs():
    proto = jax2onnx.to_onnx(function.bound(weights), function.abstract_inputs(), model_name=f"xclip_{function.name}",
                             opset=OPSET, return_mode="proto", input_names=[spec.name for spec in function.inputs],
                             output_names=[spec.name for spec in function.outputs])
  prune(proto.graph)
  data = path.with_name(path.name + ".data")
  external = any(t.ByteSize() > EXTERNAL_DATA_BYTES for t in proto.graph.initializer)
  onnx.save_model(proto, str(path), save_as_external_data=external, all_tensors_to_one_file=True,
                  location=data.name, size_threshold=EXTERNAL_DATA_BYTES, convert_attribute=False)
  return [path.name] + ([data.name] if data.exists() else [])

"""ONNX files with jax2onnx: one `<name>.onnx` per exported function, weights inside as constants.

jax2onnx traces the function (weights closed over) and converts each JAX primitive to ONNX operators; the
dynamic dimensions are symbolic (`jax.export.symbolic_shape`) and keep their names in the ONNX graph. Weights
over 1 MB go to a `<name>.onnx.data` file next to it (ONNX external data), which onnxruntime reads by itself.

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
  import jax2onnx
  import onnx

  return {"jax2onnx": getattr(jax2onnx, "__version__", "unknown"), "onnx": onnx.__version__, "opset": str(OPSET)}


def write(function: ExportFunction, weights: dict, folder: pathlib.Path) -> list[str]:
  """Writes `<folder>/<function.name>.onnx` (+ `.onnx.data` for large weights); returns the file names written."""
  import jax2onnx

  path = folder / f"{function.name}.onnx"
  with _quiet_logs():
    jax2onnx.to_onnx(function.bound(weights), function.abstract_inputs(), model_name=f"xclip_{function.name}",
                     opset=OPSET, return_mode="file", output_path=str(path),
                     input_names=[spec.name for spec in function.inputs],
                     output_names=[spec.name for spec in function.outputs])
  data = path.with_name(path.name + ".data")
  return [path.name] + ([data.name] if data.exists() else [])

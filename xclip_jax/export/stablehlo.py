"""StableHLO artifacts with `jax.export`: `stablehlo/<name>.jax_export` per function + one `weights.safetensors`.

An artifact is `jax.export.export(jax.jit(fn))(weights, *inputs).serialize()`: the StableHLO module with its
calling convention, lowered for CPU, CUDA and TPU. `jax.export.deserialize(blob).call(weights, *inputs)` runs
it in any process with jax installed, without this package; `weights` is the dict that
`safetensors.numpy.load_file("stablehlo/weights.safetensors")` returns. The classifier's class embeddings are
constants inside its artifact, as in its ONNX file.
"""

from __future__ import annotations

import pathlib

import jax
import numpy as np
from safetensors.numpy import save_file

from xclip_jax.export.functions import ExportFunction

FOLDER = "stablehlo"
WEIGHTS_FILE = "weights.safetensors"
SUFFIX = ".jax_export"
PLATFORMS = ("cpu", "cuda", "tpu")


def versions() -> dict[str, str]:
  return {"jax": jax.__version__, "platforms": ",".join(PLATFORMS)}


def write_weights(weights: dict[str, np.ndarray], folder: pathlib.Path) -> str:
  (folder / FOLDER).mkdir(exist_ok=True)
  save_file({name: np.ascontiguousarray(value, np.float32) for name, value in weights.items()},
            str(folder / FOLDER / WEIGHTS_FILE), metadata={"format": "xclip_jax.export"})
  return f"{FOLDER}/{WEIGHTS_FILE}"


def export(function: ExportFunction, weights: dict[str, np.ndarray]) -> jax.export.Exported:
  abstract_weights = {name: jax.ShapeDtypeStruct(value.shape, value.dtype) for name, value in weights.items()}
  return jax.export.export(jax.jit(function.fn), platforms=PLATFORMS)(abstract_weights,
                                                                      *function.abstract_inputs())


def write(function: ExportFunction, weights: dict[str, np.ndarray], folder: pathlib.Path) -> list[str]:
  """Writes `<folder>/stablehlo/<function.name>.jax_export`; returns [its path relative to `folder`]."""
  (folder / FOLDER).mkdir(exist_ok=True)
  name = f"{FOLDER}/{function.name}{SUFFIX}"
  (folder / name).write_bytes(export(function, weights).serialize())
  return [name]

"""Serving a model outside JAX: ONNX files (jax2onnx) and StableHLO artifacts (jax.export), with a manifest.

`python -m xclip_jax.export` (`__main__`) or `export_model`; the functions exported are in `functions`,
the writers in `onnx_files` and `stablehlo`, the manifest in `manifest`. docs/export.md.
"""

from xclip_jax.export.exporter import FORMATS, ExportError, export_model

__all__ = ["FORMATS", "ExportError", "export_model"]

"""manifest.json: everything a serving process needs besides the model files, in plain JSON.

The input section states how the project's test pipeline turns a video into the model's input: which frames
(`data.sampling.segment_test`, what the one view builder `data.views.ViewSpec` uses for one clip), the short-side
resize and the centre crop (`ViewSpec.views`), the mean and std (`data.device_ops`). The values are
read from those modules here, so the manifest follows them.
"""

from __future__ import annotations

import hashlib
import pathlib
from collections.abc import Sequence
from typing import Any

from xclip_jax.data import device_ops, sampling, transforms
from xclip_jax.data.views import ViewSpec
from xclip_jax.export.functions import BATCH, TEXTS, ExportFunction
from xclip_jax.models.config import ModelConfig
from xclip_jax.tokenizer import EOT_ID, SOT_ID

FORMAT = "xclip_jax.export"
VERSION = 1
FILE = "manifest.json"


def _qualified(function) -> str:
  return f"{function.__module__}.{function.__qualname__}"


def short_side(size: int) -> int:
  """The short side frames are resized to before the centre crop (official 256 for 224), as the view builder."""
  return ViewSpec(frames=1, size=size).short_side


def input_section(config: ModelConfig) -> dict[str, Any]:
  size, frames = config.image_size, config.num_frames
  return {
      "frames": frames,
      "size": size,
      "layout": f"({BATCH}, frames, height, width, channels) = ({BATCH}, {frames}, {size}, {size}, 3), "
                "uint8 RGB 0-255",
      "mean": list(device_ops.IMAGENET_MEAN),
      "std": list(device_ops.IMAGENET_STD),
      "normalization": "inside the model files: (pixel - mean) / std per RGB channel on 0-255 values",
      "sampling": {
          "function": f"{_qualified(ViewSpec)}(frames={frames}, size={size}, clips=1, crops=1)",
          "frame_indices": _qualified(sampling.segment_test),
          "frame_indices_formula": "n = number of decoded frames; index_i = int(i * (n / frames) + (n / frames) / 2) "
                                   "% n for i in 0 .. frames - 1 (centre of each of `frames` equal segments)",
          "orientation": "frames as displayed (the stream's display matrix or rotate tag applied)",
          "resize_short_side": short_side(size),
          "resize": f"bilinear, aspect kept: scale = {short_side(size)} / min(h, w), each side int(side * scale + 0.5) "
                    f"({_qualified(transforms.resize_short)})",
          "crop": f"centre {size} x {size}: left = (w - {size}) // 2, top = (h - {size}) // 2",
          "views": "one clip, one crop. The project's multi-view accuracy averages the probabilities of "
                   "clips x crops views (python -m xclip_jax.predict --clips, --crops)",
      },
  }


def tokenizer_section(config: ModelConfig) -> dict[str, Any]:
  return {
      "kind": "CLIP byte-pair encoding (OpenAI clip.simple_tokenizer; xclip_jax.tokenize, transformers "
              "CLIPTokenizer give the same ids)",
      "context_length": config.context_length,
      "start_token": SOT_ID,
      "end_token": EOT_ID,
      "padding": 0,
      "truncate": "longer texts are cut to context_length tokens, end_token kept last",
      "text": "the class name as given, no template",
  }


def sha256(path: pathlib.Path) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def build(*, config: ModelConfig, source: str, labels: Sequence[str] | None, functions: Sequence[ExportFunction],
          files: dict[str, dict[str, list[str]]], folder: pathlib.Path, versions: dict[str, dict[str, str]],
          weights_file: str | None) -> dict[str, Any]:
  """The manifest of an export folder (`files`: function name -> {format: file name(s)}, relative to `folder`)."""
  listed = {name for by_format in files.values() for names in by_format.values() for name in names}
  listed = sorted(listed | ({weights_file} if weights_file else set()))
  return {
      "format": FORMAT,
      "version": VERSION,
      "model": {"source": source, "config": config.to_dict()},
      "labels": list(labels) if labels is not None else None,
      "input": input_section(config),
      "tokenizer": tokenizer_section(config),
      "dynamic_dimensions": {BATCH: "videos in a call", TEXTS: "texts (class names) in a call"},
      "functions": {f.name: {"summary": f.summary, "inputs": [s.describe() for s in f.inputs],
                             "outputs": [s.describe() for s in f.outputs], "files": files.get(f.name, {})}
                    for f in functions},
      "stablehlo": None if weights_file is None else {
          "weights": weights_file,
          "call": "jax.export.deserialize(open(file, 'rb').read()).call(weights, *inputs), weights = "
                  f"safetensors.numpy.load_file('{weights_file}')",
      },
      "versions": versions,
      "sha256": {name: sha256(folder / name) for name in listed},
  }

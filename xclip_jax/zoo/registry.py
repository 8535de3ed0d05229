"""The released models by name: what each is, where it lives, what it scored.

Three kinds of source: HuggingFace hub repos (`microsoft/xclip-base-patch32`; any other XCLIP repo works
too), the official X-CLIP release files (`k400_16_8`, the release file names) and OpenAI's CLIP archives
(`openai:ViT-B/16`, turned into X-CLIP with freshly initialised X-CLIP modules). Facts and accuracies are
those of the paper / official README (shared reference zoo.md): Kinetics top-1 with 4x3 views, few- and
zero-shot single view.

The download locations can be moved (mirrors, tests) with environment variables: `XCLIP_JAX_RELEASE_URL`
(official release files), `XCLIP_JAX_OPENAI_URL` (OpenAI archives) and huggingface_hub's own `HF_ENDPOINT`.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
from collections.abc import Mapping

from xclip_jax.zoo.errors import UnknownModelError

RELEASE_URL_VARIABLE = "XCLIP_JAX_RELEASE_URL"
OPENAI_URL_VARIABLE = "XCLIP_JAX_OPENAI_URL"
DEFAULT_RELEASE_URL = "https://github.com/nbl97/X-CLIP_Model_Zoo/releases/download/v1.0/"
DEFAULT_OPENAI_URL = "https://openaipublic.azureedge.net/clip/models/"
SOURCES = ("hf", "release", "openai")
OPENAI_PREFIX = "openai:"
DEFAULT_CLIP_FRAMES = 8
HF_REPO_PATTERN = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclasses.dataclass(frozen=True, eq=False)
class ModelInfo:
  """One named model.

  Attributes:
    name: what `xclip_jax.load_model` takes.
    source: "hf" (HuggingFace hub repo), "release" (official X-CLIP release file) or "openai" (CLIP archive).
    location: the hub repo id, the file name under the release URL, or the path under the OpenAI URL.
    architecture: CLIP backbone ("B/32", "B/16", "L/14"); None when unknown (unregistered hub repos).
    frames: frames per clip the model was trained with; None for CLIP (chosen when loading, default 8).
    resolution: input size in pixels (the model's position embeddings; None when unknown).
    trained_on: the training data.
    accuracy: published top-1 (%) by evaluation set, e.g. {"K400": 80.4}; the zero-shot model's are
      zero-shot transfers, the few-shot models' on their own dataset; empty for CLIP.
    sha256: checksum of the file where one is published; for OpenAI archives taken from the location, whose
      second-last part it is.
  """

  name: str
  source: str
  location: str
  architecture: str | None
  frames: int | None
  resolution: int | None
  trained_on: str
  accuracy: Mapping[str, float] = dataclasses.field(default_factory=dict)
  sha256: str | None = None

  def __post_init__(self):
    parts = self.location.split("/")
    if self.source == "openai" and self.sha256 is None and len(parts) >= 2 and _SHA256.fullmatch(parts[-2]):
      object.__setattr__(self, "sha256", parts[-2])  # OpenAI's URLs carry the file's SHA-256
    if self.source not in SOURCES:
      raise ValueError(f"ModelInfo {self.name!r}: source must be one of {SOURCES}, got {self.source!r}.")
    if self.source == "openai" and not self.name.startswith(OPENAI_PREFIX):
      raise ValueError(f"ModelInfo {self.name!r}: CLIP archives are named {OPENAI_PREFIX}<model>.")
    if self.sha256 is not None and not _SHA256.fullmatch(self.sha256):
      raise ValueError(f"ModelInfo {self.name!r}: sha256 must be 64 lower-case hex digits.")

  @property
  def url(self) -> str:
    """Where the weights are downloaded from (read at call time, so the base-URL variables apply)."""
    if self.source == "hf":
      from huggingface_hub import constants  # lazy: light imports for `list`

      return f"{constants.ENDPOINT}/{self.location}"
    variable, default = ((RELEASE_URL_VARIABLE, DEFAULT_RELEASE_URL) if self.source == "release"
                         else (OPENAI_URL_VARIABLE, DEFAULT_OPENAI_URL))
    base = os.environ.get(variable) or default
    return base.rstrip("/") + "/" + self.location

  @property
  def file_name(self) -> str:
    """The downloaded file's name (release and OpenAI sources)."""
    return self.location.rsplit("/", 1)[-1]

  def accuracy_text(self) -> str:
    return ", ".join(f"{where} {value:.1f}" for where, value in self.accuracy.items()) or "-"


def _hf(name: str, architecture: str, frames: int, resolution: int, trained_on: str,
        accuracy: Mapping[str, float]) -> ModelInfo:
  return ModelInfo(name, "hf", name, architecture, frames, resolution, trained_on, dict(accuracy))


def _release(name: str, architecture: str, frames: int, trained_on: str, accuracy: Mapping[str, float]) -> ModelInfo:
  return ModelInfo(name, "release", f"{name}.pth", architecture, frames, 224, trained_on, dict(accuracy))


def _openai(model: str, path: str, architecture: str, resolution: int) -> ModelInfo:
  return ModelInfo(f"{OPENAI_PREFIX}{model}", "openai", path, architecture, None, resolution,
                   "CLIP (OpenAI); X-CLIP modules new")  # sha256: from the path


_ZERO_SHOT = {"HMDB-51": 44.6, "UCF-101": 72.0, "K600": 65.2}  # zero-shot transfer of the K400-trained model
_FEW_SHOT = {"hmdb": ("HMDB-51", (53.0, 57.3, 62.8, 64.0)), "ucf": ("UCF-101", (76.4, 83.4, 88.3, 91.4))}
_SHOTS = (2, 4, 8, 16)


def _builtin_models() -> list[ModelInfo]:
  hf = "microsoft/xclip-"
  models = [
      _hf(f"{hf}base-patch32", "B/32", 8, 224, "Kinetics-400", {"K400": 80.4}),
      _hf(f"{hf}base-patch32-16-frames", "B/32", 16, 224, "Kinetics-400", {"K400": 81.1}),
      _hf(f"{hf}base-patch16", "B/16", 8, 224, "Kinetics-400", {"K400": 83.8}),
      _hf(f"{hf}base-patch16-16-frames", "B/16", 16, 224, "Kinetics-400", {"K400": 84.7}),
      _hf(f"{hf}large-patch14", "L/14", 8, 224, "Kinetics-400", {"K400": 87.1}),
      _hf(f"{hf}large-patch14-16-frames", "L/14", 16, 336, "Kinetics-400", {"K400": 87.7}),
      _hf(f"{hf}base-patch16-kinetics-600", "B/16", 8, 224, "Kinetics-600", {"K600": 85.3}),
      _hf(f"{hf}base-patch16-kinetics-600-16-frames", "B/16", 16, 224, "Kinetics-600", {"K600": 85.8}),
      _hf(f"{hf}large-patch14-kinetics-600", "L/14", 8, 224, "Kinetics-600", {"K600": 88.3}),
      _hf(f"{hf}base-patch16-zero-shot", "B/16", 32, 224, "Kinetics-400 (zero-shot)", _ZERO_SHOT),
  ]
  for key, (dataset, scores) in _FEW_SHOT.items():
    models += [_hf(f"{hf}base-patch16-{key}-{k}-shot", "B/16", 32, 224, f"{dataset} {k}-shot",
                   {dataset: score}) for k, score in zip(_SHOTS, scores, strict=True)]
  models += [
      _release("k400_32_8", "B/32", 8, "Kinetics-400", {"K400": 80.4}),
      _release("k400_32_16", "B/32", 16, "Kinetics-400", {"K400": 81.1}),
      _release("k400_16_8", "B/16", 8, "Kinetics-400", {"K400": 83.8}),
      _release("k400_16_16", "B/16", 16, "Kinetics-400", {"K400": 84.7}),
      _release("k600_16_8", "B/16", 8, "Kinetics-600", {"K600": 85.3}),
      _release("k600_16_16", "B/16", 16, "Kinetics-600", {"K600": 85.8}),
  ]
  for key, (dataset, scores) in _FEW_SHOT.items():
    models += [_release(f"few_{key}_{k}", "B/16", 32, f"{dataset} {k}-shot", {dataset: score})
               for k, score in zip(_SHOTS, scores, strict=True)]
  models += [
      _release("zero", "B/16", 32, "Kinetics-400 (zero-shot)", _ZERO_SHOT),
      _openai("ViT-B/32", "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af/ViT-B-32.pt", "B/32", 224),
      _openai("ViT-B/16", "5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f/ViT-B-16.pt", "B/16", 224),
      _openai("ViT-L/14", "b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836/ViT-L-14.pt", "L/14", 224),
      _openai("ViT-L/14@336px", "3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02/ViT-L-14-336px.pt",
              "L/14", 336),
  ]
  return models


_REGISTRY: dict[str, ModelInfo] = {model.name: model for model in _builtin_models()}


def available_models() -> list[ModelInfo]:
  """Every named model, in registry order (HF hub ids, official release files, OpenAI CLIP)."""
  return list(_REGISTRY.values())


def is_registered(name: str) -> bool:
  return name in _REGISTRY


def register_model(info: ModelInfo) -> ModelInfo:
  """Adds a name (e.g. your own release file on a server named by `XCLIP_JAX_RELEASE_URL`)."""
  if info.name in _REGISTRY:
    raise ValueError(f"A model named {info.name!r} is already registered.")
  _REGISTRY[info.name] = info
  return info


def unregister_model(name: str) -> None:
  """Removes a name added by `register_model` (built-in names can be removed too, for this process)."""
  if _REGISTRY.pop(name, None) is None:
    raise KeyError(f"No model named {name!r} is registered.")


def close_matches(name: str, count: int = 5) -> list[str]:
  by_lower = {known.lower(): known for known in _REGISTRY}
  return [by_lower[m] for m in difflib.get_close_matches(name.lower(), list(by_lower), n=count, cutoff=0.5)]


def unknown_model_message(name: str, why: str) -> str:
  matches = close_matches(name)
  hint = f" Close matches: {', '.join(matches)}." if matches else ""
  return f"{why}.{hint} `python -m xclip_jax.zoo list` shows every name."


def find_model(name: str) -> ModelInfo:
  """The registry entry of `name`; any other hub-id-shaped name is taken as an HF XCLIP repo."""
  if name in _REGISTRY:
    return _REGISTRY[name]
  release = _REGISTRY.get(name.removesuffix(".pth"))
  if release is not None and release.source == "release":  # the release file's own name, k400_16_8.pth
    return release
  if not name.startswith(OPENAI_PREFIX) and HF_REPO_PATTERN.fullmatch(name):
    return ModelInfo(name, "hf", name, None, None, None, "(HF hub repo, not in the registry)")
  raise UnknownModelError(unknown_model_message(name, f"Unknown model name {name!r}"))

"""HuggingFace hub access, through huggingface_hub and its cache.

Everything huggingface_hub users know applies: the cache under `HF_HOME` (or `HF_HUB_CACHE`),
`HF_HUB_OFFLINE=1`, `HF_ENDPOINT`, `HF_TOKEN` / `hf auth login`, and revisions (branch, tag or commit).
A revision is resolved to its commit first (online, or from the cache's refs when offline), so the converted
model can be looked up by commit before any weight file is touched. Weights: `model.safetensors` (read
without torch) where the repo has it, else `pytorch_model.bin`.
"""

from __future__ import annotations

import json
import pathlib

from xclip_jax.zoo.errors import DownloadError, UnknownModelError, ZooError
from xclip_jax.zoo.registry import unknown_model_message

METADATA_FILES = ["config.json", "preprocessor_config.json"]
# Tried in order: safetensors (single or sharded), then the PyTorch pickle (needs torch to read).
WEIGHT_PATTERNS = (["model.safetensors", "model.safetensors.index.json", "model-*-of-*.safetensors"],
                   ["pytorch_model.bin"])
SAMPLE_VIDEO_REPO = "nielsr/video-demo"
SAMPLE_VIDEO_FILE = "eating_spaghetti.mp4"
SAMPLE_VIDEO_LABELS = ("playing sports", "eating spaghetti", "go shopping")  # as in the HF X-CLIP docs


def _cache_hint(repo_id: str, repo_type: str = "model") -> str:
  from huggingface_hub import constants

  fetch = (f"`python -m xclip_jax.zoo download {repo_id}` (or `hf download {repo_id}`)" if repo_type == "model"
           else f"`hf download {repo_id} --repo-type {repo_type}`")
  return (f"huggingface_hub's cache ({constants.HF_HUB_CACHE}) does not hold it. Where there is network, run "
          f"{fetch} and copy that machine's HF cache (HF_HOME) here; HF_HUB_OFFLINE=1 then uses it without "
          f"network.")


def _hub_failure(repo_id: str, what: str, error: BaseException, repo_type: str = "model") -> ZooError:
  from huggingface_hub import errors

  if isinstance(error, errors.RepositoryNotFoundError):
    if repo_type != "model":
      return ZooError(f"No HF hub {repo_type} repo {repo_id!r} (a private or gated repo needs `hf auth login` or "
                      f"HF_TOKEN).")
    return UnknownModelError(unknown_model_message(
        repo_id, f"No HF hub {repo_type} repo {repo_id!r} (a private or gated repo needs `hf auth login` or "
                 f"HF_TOKEN)"))
  if isinstance(error, errors.RevisionNotFoundError):
    return ZooError(f"HF hub repo {repo_id!r} has no revision {what!r}: {error}")
  from huggingface_hub import is_offline_mode

  reason = "HF_HUB_OFFLINE is set" if is_offline_mode() else f"{type(error).__name__}: {str(error).strip().rstrip('.')}"
  return DownloadError(f"Could not get {what} of HF hub repo {repo_id!r}: {reason}. {_cache_hint(repo_id, repo_type)}")


def _hub_errors() -> tuple[type[BaseException], ...]:
  from huggingface_hub import errors

  caught = (errors.HfHubHTTPError, errors.RevisionResolutionError, errors.EntryNotFoundError, OSError)
  try:  # huggingface_hub's HTTP client; a few transport errors (proxy) come through unwrapped
    import httpx2
  except ImportError:
    return caught
  return (*caught, httpx2.HTTPError)


def resolve_commit(repo_id: str, revision: str | None = None, repo_type: str = "model") -> str:
  """The commit a revision (default: main) points to; offline, from the HF cache's refs."""
  import huggingface_hub

  try:  # offline: straight from the cache's refs (no "could not reach the Hub" warning)
    return huggingface_hub.resolve_revision(repo_id, repo_type=repo_type, revision=revision,
                                            local_files_only=huggingface_hub.is_offline_mode()).resolved
  except _hub_errors() as error:
    raise _hub_failure(repo_id, f"revision {revision or 'main'}", error, repo_type=repo_type) from error


def read_config(repo_id: str, commit: str) -> dict:
  """The repo's config.json, checked to be an XCLIP model's (as `XCLIPModel.from_pretrained` requires)."""
  import huggingface_hub

  try:
    path = pathlib.Path(huggingface_hub.hf_hub_download(repo_id, "config.json", revision=commit))
  except _hub_errors() as error:
    raise _hub_failure(repo_id, f"config.json at commit {commit}", error) from error
  try:
    config = json.loads(path.read_text())
  except json.JSONDecodeError as error:
    raise ZooError(f"config.json of HF hub repo {repo_id!r} ({path}) is not valid JSON: {error}") from error
  if config.get("model_type") != "xclip":
    raise ZooError(f"HF hub repo {repo_id!r} holds a {config.get('model_type')!r} model, not an XCLIP model "
                   f"(config.json model_type 'xclip').")
  return config


def snapshot(repo_id: str, commit: str) -> pathlib.Path:
  """A local directory with config.json, preprocessor_config.json (if any) and the weights at `commit`."""
  import huggingface_hub

  from xclip_jax.conversion.convert import HF_WEIGHT_FILES

  folder = None
  for patterns in WEIGHT_PATTERNS:
    try:
      folder = pathlib.Path(huggingface_hub.snapshot_download(repo_id, revision=commit,
                                                              allow_patterns=METADATA_FILES + patterns))
    except _hub_errors() as error:
      raise _hub_failure(repo_id, f"the weights at commit {commit}", error) from error
    if any((folder / name).is_file() for name in HF_WEIGHT_FILES):
      return folder
  raise ZooError(f"HF hub repo {repo_id!r} at commit {commit} ({folder}) holds none of the weight files "
                 f"{', '.join(HF_WEIGHT_FILES)}.")


def crop_size(folder: pathlib.Path) -> int | None:
  """The center-crop size of the repo's preprocessor_config.json, if it has one."""
  path = folder / "preprocessor_config.json"
  if not path.is_file():
    return None
  try:
    crop = json.loads(path.read_text()).get("crop_size")
  except json.JSONDecodeError:
    return None
  if isinstance(crop, dict):
    crop = crop.get("height")
  return int(crop) if isinstance(crop, int | float) else None


def sample_video() -> pathlib.Path:
  """The short clip the HF X-CLIP docs classify against SAMPLE_VIDEO_LABELS (eating spaghetti).

  Fetched once from the HF dataset repo nielsr/video-demo into huggingface_hub's cache (works offline
  from there).
  """
  import huggingface_hub

  try:
    return pathlib.Path(huggingface_hub.hf_hub_download(SAMPLE_VIDEO_REPO, SAMPLE_VIDEO_FILE, repo_type="dataset"))
  except _hub_errors() as error:
    raise _hub_failure(SAMPLE_VIDEO_REPO, SAMPLE_VIDEO_FILE, error, repo_type="dataset") from error

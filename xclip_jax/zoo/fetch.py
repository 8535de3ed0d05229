"""A model name -> a converted-model directory in the cache, downloading and converting only the first time.

The converted directory's name hashes what determines it (see `cache.converted_path`), and it is looked up
before anything is downloaded or converted, so a second load reads it directly: no network, no torch.
"""

from __future__ import annotations

import logging
import os
import pathlib
import sys

from xclip_jax.zoo import cache, hub, registry
from xclip_jax.zoo.download import by_hand_hint, download_file
from xclip_jax.zoo.errors import DownloadError, UnknownModelError, ZooError
from xclip_jax.zoo.registry import ModelInfo

_LOG = logging.getLogger(__name__)
CLIP_SEED = 0  # initialisation seed of the X-CLIP modules added to CLIP (scripts/convert_checkpoint.py's default)


def _say(message: str, progress: bool) -> None:
  if progress:
    print(message, file=sys.stderr, flush=True)


def _is_ready(directory: pathlib.Path) -> bool:
  from xclip_jax import pretrained

  return pretrained.is_pretrained_dir(directory) and (directory / pretrained.PARAMS_FILE).is_file()


def _check_frames(name: str, directory: pathlib.Path, frames: int | None) -> pathlib.Path:
  if frames is not None:
    from xclip_jax import pretrained

    config, _ = pretrained.read_config(directory)
    if config.num_frames != frames:
      raise ValueError(f"{name} was trained with {config.num_frames} frames; it cannot be loaded with frames={frames}.")
  return directory


def _check_facts(info: ModelInfo, config) -> None:
  """Warns when a file does not hold what the registry says (a wrong or replaced file)."""
  expected = (info.frames or config.num_frames, info.resolution or config.image_size)
  if expected != (config.num_frames, config.image_size):
    _LOG.warning("%s: the registry lists %s frames at %s px, but the file holds a %d-frame %d px model; "
                    "using the file's.", info.name, *expected, config.num_frames, config.image_size)


def _convert(info: ModelInfo, source: str, input_path: pathlib.Path, output: pathlib.Path, *, frames: int | None,
             metadata: dict, progress: bool) -> pathlib.Path:
  from xclip_jax import pretrained
  from xclip_jax.conversion import import_checkpoint

  _say(f"Converting {info.name} (once; kept in {output})", progress)
  config, params, provenance = import_checkpoint(source, input_path, frames=frames, seed=CLIP_SEED)
  _check_facts(info, config)
  crop = metadata.get("preprocessor_crop_size")
  if crop is not None and crop != config.image_size:
    _LOG.warning("%s: preprocessor_config.json crops %d px, but the model's position embeddings are for %d px; "
                    "xclip_jax uses %d px.", info.name, crop, config.image_size, config.image_size)
  try:
    pretrained.save_pretrained(output, config, params, metadata={**provenance, **metadata, "name": info.name})
  except FileExistsError:
    if not _is_ready(output):  # else another process converted the same model meanwhile: use it
      raise
  return output


def _fetch_hf(info: ModelInfo, revision: str | None, frames: int | None, progress: bool) -> pathlib.Path:
  repo_id = info.location
  commit = hub.resolve_commit(repo_id, revision)
  output = cache.converted_path(info.name, {"source": "hf", "repo": repo_id, "commit": commit})
  if _is_ready(output):
    return output
  hub.read_config(repo_id, commit)
  folder = hub.snapshot(repo_id, commit)
  metadata = {"hf_repo": repo_id, "hf_revision": revision or "main", "hf_commit": commit,
              "preprocessor_crop_size": hub.crop_size(folder)}
  return _convert(info, "hf", folder, output, frames=frames, metadata=metadata, progress=progress)


def _file_output(info: ModelInfo, content_sha256: str, frames: int) -> pathlib.Path:
  identity = {"source": info.source, "sha256": content_sha256}
  if info.source == "openai":
    identity.update(frames=frames, seed=CLIP_SEED)
    return cache.converted_path(f"openai_{pathlib.Path(info.file_name).stem}-{frames}f", identity)
  return cache.converted_path(info.name, identity)


def _ensure_file(info: ModelInfo, destination: pathlib.Path, progress: bool) -> str:
  """The downloaded (or hand-placed) file's SHA-256, downloading it if absent and checking it if published."""
  if destination.exists():
    digest = cache.file_sha256(destination)
    if info.sha256 is not None and digest != info.sha256:
      raise ZooError(f"{destination} has SHA-256 {digest}, not the published {info.sha256}: it is corrupt or "
                     f"another file. Delete it to download it again. "
                     f"{by_hand_hint(info.url, destination, info.sha256)}")
    return digest
  _say(f"Downloading {info.name} from {info.url}", progress)
  digest = download_file(info.url, destination, sha256=info.sha256, progress=progress)
  cache.write_sha256_record(destination, digest)
  return digest


def _fetch_file(info: ModelInfo, frames: int, progress: bool) -> pathlib.Path:
  destination = cache.download_path(info.source, info.file_name)
  # Known content (published checksum, or the record of an earlier download): maybe converted already.
  known = info.sha256 or (cache.file_sha256(destination) if destination.exists() else
                          cache.recorded_sha256(destination))
  if known is not None and _is_ready(output := _file_output(info, known, frames)):
    return output
  digest = _ensure_file(info, destination, progress)
  output = _file_output(info, digest, frames)
  if _is_ready(output):
    return output
  source = "openai" if info.source == "openai" else "xclip"
  metadata = {"url": info.url, "sha256": digest, "download": str(destination)}
  return _convert(info, source, destination, output, frames=frames if source == "openai" else None,
                  metadata=metadata, progress=progress)


def fetch(name: str, *, frames: int | None = None, revision: str | None = None, progress: bool = True
          ) -> pathlib.Path:
  """Downloads and converts a named model once; returns its converted directory in the cache.

  Args:
    name: a registry name (`xclip_jax.available_models()`), any HF hub id of an XCLIP model, or
      `openai:<CLIP model>`.
    frames: frames per clip. CLIP (openai:) is turned into an X-CLIP of this many frames (default 8);
      for X-CLIP models it must match the trained model when given.
    revision: branch, tag or commit of an HF hub repo (default main).
    progress: show progress bars and what is being done (on stderr).

  Raises:
    UnknownModelError: no such name (the message lists close matches); also a FileNotFoundError.
    DownloadError: no network, a failed, cut or corrupt download (the message says how to provide the
      file by hand); nothing partial is left in the cache.
    ValueError: frames or revision do not apply.
  """
  info = registry.find_model(name)
  if revision is not None and info.source != "hf":
    raise ValueError(f"revision={revision!r} applies to HF hub repos; {name} is a released file.")
  if frames is not None and (not isinstance(frames, int) or frames < 1):
    raise ValueError(f"frames must be a positive integer, got {frames!r}.")
  if frames is not None and info.frames is not None and frames != info.frames:
    raise ValueError(f"{name} was trained with {info.frames} frames; it cannot be loaded with frames={frames}.")
  if info.source == "hf":
    return _check_frames(name, _fetch_hf(info, revision, frames, progress), frames)
  if info.source == "openai":
    return _fetch_file(info, frames or registry.DEFAULT_CLIP_FRAMES, progress)
  return _check_frames(name, _fetch_file(info, 0, progress), frames)


def resolve(name_or_path: str | os.PathLike, *, frames: int | None = None, revision: str | None = None,
            progress: bool = True) -> pathlib.Path:
  """A local file or directory as it is (os.PathLike is always a path), a gs:// URL as an `epath.Path`;
  otherwise a name, fetched."""
  from xclip_jax import storage

  if storage.is_remote(name_or_path):
    if revision is not None:
      raise ValueError(f"revision={revision!r} applies to HF hub names, not to the path {name_or_path}.")
    return storage.path(name_or_path)
  if isinstance(name_or_path, os.PathLike) or os.path.exists(name_or_path):
    if revision is not None:
      raise ValueError(f"revision={revision!r} applies to HF hub names, not to the local path {name_or_path}.")
    return pathlib.Path(name_or_path)
  name = str(name_or_path)
  try:
    return fetch(name, frames=frames, revision=revision, progress=progress)
  except UnknownModelError as error:
    raise UnknownModelError(f"No file or directory {name!r}, and not a model name: {error}") from None
  except DownloadError as error:
    if registry.is_registered(name):
      raise
    raise DownloadError(f"No file or directory {name!r}; as an HF hub id: {error}") from error

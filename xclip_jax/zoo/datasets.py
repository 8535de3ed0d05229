"""Small public labelled video sets by name, for trying a model out: downloaded once, extracted once.

    root = xclip_jax.zoo.sample_dataset("ucf101-subset")    # .../UCF101_subset with train/ val/ test/
    dataset = labelled_videos.labelled_set(root / "test", readable_names=True)

The archive comes through huggingface_hub (its cache, HF_HOME, HF_HUB_OFFLINE, HF_ENDPOINT, tokens as for
models); it is extracted into `$XCLIP_JAX_CACHE/datasets/<name>-<commit>/`, all at once: a temporary
folder beside it is renamed into place only when every member is out, so an interrupted extraction leaves
nothing that a later call could mistake for the data set. Members go through tarfile's "data" filter:
absolute paths are made relative to that folder, and members that would still land outside it (`..`, links
pointing out) or device files are refused, naming the archive and the member.
"""

from __future__ import annotations

import dataclasses
import pathlib
import sys
import tarfile
import zlib

from xclip_jax import atomic_io
from xclip_jax.zoo import cache, hub
from xclip_jax.zoo.errors import ZooError


@dataclasses.dataclass(frozen=True)
class SampleDataset:
  """A labelled video set kept as one archive in an HF dataset repo.

  Attributes:
    name: what `sample_dataset` takes.
    repo_id, filename: the HF dataset repo and the archive in it (a .tar, .tar.gz, .tgz, ...).
    root: the folder the archive holds (what `sample_dataset` returns).
    description: what is in it.
  """

  name: str
  repo_id: str
  filename: str
  root: str
  description: str


SAMPLE_DATASETS = {d.name: d for d in [
    SampleDataset("ucf101-subset", "sayakpaul/ucf101-subset", "UCF101_subset.tar.gz", "UCF101_subset",
                  "10 UCF-101 classes (ApplyEyeMakeup ... BenchPress) as .avi files in train/, val/ and test/, "
                  "one sub-folder per class; the HF video classification tutorial's set (171 MB)"),
]}


def _find(name: str) -> SampleDataset:
  if name not in SAMPLE_DATASETS:
    raise ZooError(f"Unknown sample data set {name!r}; choose one of {', '.join(SAMPLE_DATASETS)}.")
  return SAMPLE_DATASETS[name]


def _download(dataset: SampleDataset, commit: str) -> pathlib.Path:
  import huggingface_hub

  try:
    return pathlib.Path(huggingface_hub.hf_hub_download(dataset.repo_id, dataset.filename, repo_type="dataset",
                                                        revision=commit))
  except hub._hub_errors() as error:
    raise hub._hub_failure(dataset.repo_id, dataset.filename, error, repo_type="dataset") from error


def _counted(archive: tarfile.TarFile, archive_path: pathlib.Path, progress: bool):
  from tqdm.auto import tqdm

  with tqdm(desc=f"Extracting {archive_path.name}", unit=" files", disable=not progress, file=sys.stderr) as bar:
    for member in archive:
      yield member
      bar.update(1)


def extract_archive(archive_path: pathlib.Path, output: pathlib.Path, *, progress: bool = True) -> pathlib.Path:
  """Extracts a tar archive (any compression) into `output`, which appears only once complete.

  Members go through tarfile's "data" filter: absolute paths become relative to `output`; `..`, links out of
  `output` and device files are refused. A corrupt archive or a refused member raises ZooError naming the
  archive (and the member), and nothing is left at `output`.
  """
  try:
    with atomic_io.atomic_directory(output) as staging, tarfile.open(archive_path, "r:*") as archive:
      archive.extractall(staging, members=_counted(archive, archive_path, progress), filter="data")
  except tarfile.FilterError as error:
    raise ZooError(f"{archive_path}: refusing to extract member {error.tarinfo.name!r}: {error}") from None
  except FileExistsError:
    if output.is_dir():  # another process extracted it meanwhile
      return output
    raise
  except (tarfile.TarError, EOFError, zlib.error, OSError) as error:
    raise ZooError(f"{archive_path}: cannot extract it ({type(error).__name__}: {error}). The file may be "
                   f"corrupt: delete it from huggingface_hub's cache to download it again.") from error
  return output


def sample_dataset(name: str = "ucf101-subset", *, revision: str | None = None, progress: bool = True
                   ) -> pathlib.Path:
  """The extracted folder of a sample data set (`SAMPLE_DATASETS`), downloading and extracting it once.

  Offline (HF_HUB_OFFLINE=1, or no network) it is read from the caches; if they do not hold it the error
  says how to bring the archive over.
  """
  dataset = _find(name)
  commit = hub.resolve_commit(dataset.repo_id, revision, repo_type="dataset")
  output = cache.cache_dir() / "datasets" / f"{dataset.name}-{commit[:12]}"
  if not output.is_dir():
    extract_archive(_download(dataset, commit), output, progress=progress)
  root = output / dataset.root
  if not root.is_dir():
    inside = sorted(p.name for p in output.iterdir())
    raise ZooError(f"{dataset.repo_id}/{dataset.filename} at commit {commit} holds {inside}, not the folder "
                   f"{dataset.root!r} ({output}).")
  return root

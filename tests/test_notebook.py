"""notebooks/colab_evaluation.ipynb executed end to end, offline, in a real kernel of this venv.

Parameters are injected after its "parameters" cell as papermill does: no install, a tiny random X-CLIP
loaded by name from an HF hub cache (huggingface_hub's layout, HF_HUB_OFFLINE=1), the sample video from the
same cache (dataset repo), and as the labelled set either synthetic videos with a label list or a TFDS split
(tfds.testing.mock_data, started inside the kernel). Also: the notebook is stored without outputs, and the
code path it runs imports none of the training extras.
"""

from __future__ import annotations

import pathlib
import re

import nbformat
import numpy as np
import pytest

from tests import data_fixtures, notebook_runner, zoo_fixtures

NOTEBOOK = zoo_fixtures.REPO_ROOT / "notebooks" / "colab_evaluation.ipynb"
MODEL_REPO = "xclip-jax-tests/tiny-xclip"
COMMIT = "1" * 40
FRAMES = 4
TRAINING_EXTRAS = ("tensorflow", "tensorboard", "tensorflow_datasets", "clu", "grain", "array_record",
                   "ml_collections", "torch")


@pytest.fixture(scope="module")
def offline_world(tmp_path_factory):
  """An HF cache with a tiny random XCLIP model repo and the sample-video dataset repo, and synthetic videos."""
  root = tmp_path_factory.mktemp("notebook")
  hub_cache = root / "hf_home" / "hub"
  model_files = zoo_fixtures.hf_model_files(root / "hf_model", frames=FRAMES, seed=0)
  zoo_fixtures.add_hf_repo(hub_cache, MODEL_REPO, {COMMIT: model_files}, {"main": COMMIT})
  frames = np.random.default_rng(0).integers(0, 256, (24, 48, 64, 3), np.uint8)
  video = data_fixtures.write_video(str(root / "spaghetti.mp4"), frames)
  zoo_fixtures.add_hf_repo(hub_cache, "nielsr/video-demo", {"2" * 40: {"eating_spaghetti.mp4": pathlib.Path(video)
                                                                       .read_bytes()}},
                           {"main": "2" * 40}, repo_type="dataset")
  from xclip_jax.data import synthetic

  synthetic.generate(str(root / "synthetic"), size=32, frames=8, train_per_class=0, val_per_class=0,
                     zero_shot_per_class=2, few_shot_train_per_class=0, style="plain", quiet=True)
  notebook_runner.write_kernelspec(root / "jupyter")
  env = {"HF_HOME": str(root / "hf_home"), "HF_HUB_OFFLINE": "1", "XCLIP_JAX_CACHE": str(root / "xclip_cache"),
         "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "", "TF_CPP_MIN_LOG_LEVEL": "3", "HF_HUB_DISABLE_TELEMETRY": "1",
         "JUPYTER_PATH": str(root / "jupyter"), "TFDS_DATA_DIR": str(root / "tfds")}
  return {"root": root, "env": env, "video": video, "model_dir": root / "hf_model",
          "synthetic": root / "synthetic"}


def _run(world, monkeypatch, name: str, parameters: dict, setup: str = "") -> nbformat.NotebookNode:
  monkeypatch.setenv("JUPYTER_PATH", world["env"]["JUPYTER_PATH"])  # the kernelspec of this interpreter
  notebook = notebook_runner.inject_parameters(nbformat.read(NOTEBOOK, as_version=4), {
      "INSTALL": False, "MODEL": MODEL_REPO, "CLIPS": 1, "CROPS": 1, "BATCH_SIZE": 4, "WORST": 2,
      "THROUGHPUT_REPETITIONS": 2, **parameters}, setup=setup)
  workdir = world["root"] / name
  workdir.mkdir()
  executed = notebook_runner.execute(notebook, cwd=workdir, env=world["env"], timeout=300)
  nbformat.write(executed, workdir / "executed.ipynb")  # to look at when a test fails
  return executed


def _cell(notebook, snippet: str):
  [cell] = [c for c in notebook.cells if c.cell_type == "code" and snippet in c.source]
  return cell


def _check_common(executed) -> None:
  assert notebook_runner.errors(executed) == []
  figure_cells = [c for c in executed.cells if "figure" in notebook_runner.tags(c)]
  assert len(figure_cells) == 5
  for cell in figure_cells:  # every figure cell drew exactly its figure, as a PNG
    assert notebook_runner.images(cell) == 1, cell.source
  other = [c for c in executed.cells if c.cell_type == "code" and "figure" not in notebook_runner.tags(c)]
  assert sum(notebook_runner.images(c) for c in other) == 0
  assert "INSTALL is False" in notebook_runner.text(_cell(executed, "def jax_requirement"))
  assert "platform cpu" in notebook_runner.text(_cell(executed, "format_devices"))
  assert "microsoft/xclip-base-patch32" in notebook_runner.text(_cell(executed, "format_table"))
  assert f"frames {FRAMES}" in notebook_runner.text(_cell(executed, "load_model(MODEL"))
  assert re.search(r"[\d.]+ clips/s .* on cpu", notebook_runner.text(_cell(executed, "measure_throughput")))


def test_notebook_runs_offline_on_synthetic_videos(offline_world, monkeypatch):
  synthetic = offline_world["synthetic"]
  executed = _run(offline_world, monkeypatch, "folder", {
      "EVAL_SET": str(synthetic), "LABEL_LIST": str(synthetic / "zero_shot" / "val.txt"),
      "CLASS_CSV": str(synthetic / "zero_shot" / "classes.csv"), "READABLE_NAMES": False})
  _check_common(executed)
  assert "8 videos of 4 classes: circle moving left, square moving right" in notebook_runner.text(
      _cell(executed, "open_set(EVAL_SET"))
  evaluation = notebook_runner.text(_cell(executed, "evaluate_labelled_set"))
  match = re.search(r"top-1 ([\d.]+)%\s+top-5 ([\d.]+)%\s+\(chance 25\.0%; 8 videos, 1x1 views, 0 unreadable\)",
                    evaluation)
  assert match, evaluation
  assert float(match.group(1)) * 8 / 100 == pytest.approx(round(float(match.group(1)) * 8 / 100), abs=0.01)
  assert float(match.group(2)) == 100.0  # 4 classes: the true one is always among the top 5
  # The zero-shot probabilities printed are those of the named model: the same weights loaded from the
  # HF directory in this process give the same numbers.
  import xclip_jax
  from xclip_jax import zoo
  from xclip_jax.evaluation import video_files

  model = xclip_jax.load_model(offline_world["model_dir"])
  labels = list(zoo.SAMPLE_VIDEO_LABELS)
  [prediction] = video_files.classify_videos(model, [offline_world["video"]], labels, progress=False)
  printed = dict((name, float(p)) for p, name in (line.split(maxsplit=1) for line in notebook_runner.text(
      _cell(executed, "classify_videos(model, [video]")).splitlines() if re.match(r"\s*[\d.]+\s+\w", line)))
  assert printed == {name: pytest.approx(p, abs=1.5e-3) for name, p in prediction.top(labels, len(labels))}


def test_notebook_runs_offline_on_a_tfds_split(offline_world, monkeypatch):
  setup = ("import tensorflow_datasets as tfds\n"
           "_mock = tfds.testing.mock_data(num_examples=4, policy=tfds.testing.MockPolicy.USE_CODE)\n"
           "_mock.__enter__()")
  executed = _run(offline_world, monkeypatch, "tfds", {"EVAL_SET": "tfds:ucf101/ucf101_1_256:test",
                                                        "READABLE_NAMES": True}, setup=setup)
  _check_common(executed)
  assert "4 videos of 101 classes: apply eye makeup, apply lipstick, archery" in notebook_runner.text(
      _cell(executed, "open_set(EVAL_SET"))
  evaluation = notebook_runner.text(_cell(executed, "evaluate_labelled_set"))
  assert re.search(r"top-1 [\d.]+%\s+top-5 [\d.]+%\s+\(chance 1\.0%; 4 videos, 1x1 views, 0 unreadable\)",
                   evaluation), evaluation


def test_notebook_is_stored_clean():
  notebook = nbformat.read(NOTEBOOK, as_version=4)
  nbformat.validate(notebook)
  assert notebook.metadata.kernelspec.name == "python3"
  code = [c for c in notebook.cells if c.cell_type == "code"]
  assert all(not c.outputs and c.execution_count is None for c in code)
  assert [notebook_runner.PARAMETERS_TAG in notebook_runner.tags(c) for c in code].count(True) == 1
  badge = ("https://colab.research.google.com/github/xclip-jax/xclip_jax/blob/main/notebooks/"
           "colab_evaluation.ipynb")
  assert badge in notebook.cells[0].source
  assert badge in (zoo_fixtures.REPO_ROOT / "README.md").read_text()


def test_the_notebook_path_imports_no_training_extras(offline_world, tmp_path):
  """What the notebook runs (load by name, classify, evaluate, plot, time) needs only the core dependencies,
  so `pip install xclip_jax` beside Colab's TensorFlow works."""
  synthetic = offline_world["synthetic"]
  code = f"""
import json, sys
import xclip_jax
from xclip_jax import zoo
from xclip_jax.evaluation import labelled_videos, plots, throughput, video_files
model = xclip_jax.load_model({MODEL_REPO!r})
video = zoo.sample_video()
plots.frame_grid(video_files.sampled_frames(video, 4)[0]).savefig({str(tmp_path / 'a.png')!r})
video_files.classify_videos(model, [video], list(zoo.SAMPLE_VIDEO_LABELS), progress=False)
dataset = labelled_videos.open_set({str(synthetic)!r}, label_list={str(synthetic / 'zero_shot' / 'val.txt')!r},
                                   class_csv={str(synthetic / 'zero_shot' / 'classes.csv')!r}, max_videos=2)
report = labelled_videos.evaluate_labelled_set(model, dataset, progress=False)
plots.worst_videos(report, n=1).savefig({str(tmp_path / 'b.png')!r})
throughput.measure_throughput(model, batch_size=2, repetitions=1)
print(json.dumps(sorted({{m.split(".")[0] for m in sys.modules}})))
"""
  env = {k: v for k, v in offline_world["env"].items() if k != "JUPYTER_PATH"}
  imported = zoo_fixtures.run_python(code, env)
  assert "jax" in imported and "av" in imported and "matplotlib" in imported
  assert [m for m in TRAINING_EXTRAS if m in imported] == []


def test_notebook_cells_are_valid_python():
  """Every code cell compiles once IPython magics (`%matplotlib inline`) are set aside."""
  for cell in nbformat.read(NOTEBOOK, as_version=4).cells:
    if cell.cell_type == "code":
      source = "\n".join(line for line in cell.source.splitlines() if not line.lstrip().startswith("%"))
      compile(source, "<cell>", "exec")


def _install_cell_namespace(**parameters) -> dict:
  """Runs the install cell's code (with `parameters`) in a fresh namespace and returns it."""
  [cell] = [c for c in nbformat.read(NOTEBOOK, as_version=4).cells if "def jax_requirement" in c.source]
  namespace = dict(parameters)
  exec(compile(cell.source, "<install cell>", "exec"), namespace)
  return namespace


def test_install_cell_pins_what_the_project_pins(capsys):
  namespace = _install_cell_namespace(INSTALL=True)  # xclip_jax is installed here: nothing to do
  assert capsys.readouterr().out.strip() == f"xclip_jax {namespace['XCLIP_JAX_VERSION']} is already installed"
  pyproject = (zoo_fixtures.REPO_ROOT / "pyproject.toml").read_text()
  requirements = (zoo_fixtures.REPO_ROOT / "requirements.txt").read_text().splitlines()
  assert f'version = "{namespace["XCLIP_JAX_VERSION"]}"' in pyproject
  assert f"jax=={namespace['JAX_VERSION']}" in requirements and f"flax=={namespace['FLAX_VERSION']}" in requirements
  assert namespace["REPO_URL"] == "https://github.com/xclip-jax/xclip_jax"


@pytest.mark.parametrize("smi_output, expected", [
    ("550.54.15, 7.5", "jax[cuda12]"),   # driver older than 580: CUDA 12 wheels
    ("580.65.06, 9.0", "jax[cuda13]"),   # CUDA 13 needs driver 580+ ...
    ("590.10, 7.0", "jax[cuda12]"),      # ... and compute capability 7.5+
    (None, "jax"),                       # no nvidia-smi: CPU
])
def test_install_cell_picks_the_jax_build(tmp_path, monkeypatch, smi_output, expected):
  namespace = _install_cell_namespace(INSTALL=False)
  for variable in ("TPU_ACCELERATOR_TYPE", "COLAB_TPU_ADDR"):
    monkeypatch.delenv(variable, raising=False)
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir()
  if smi_output is not None:  # a stand-in for nvidia-smi answering the cell's query
    script = bin_dir / "nvidia-smi"
    script.write_text(f'#!/bin/sh\n[ "$1" = "--query-gpu=driver_version,compute_cap" ] && echo "{smi_output}"\n')
    script.chmod(0o755)
  monkeypatch.setenv("PATH", str(bin_dir))
  if pathlib.Path("/dev/accel0").exists() or list(pathlib.Path("/dev").glob("vfio/[0-9]*")):
    pytest.skip("this machine has TPU devices")
  assert namespace["jax_requirement"]() == f"{expected}=={namespace['JAX_VERSION']}"
  monkeypatch.setenv("TPU_ACCELERATOR_TYPE", "v5litepod-1")
  assert namespace["jax_requirement"]() == f"jax[tpu]=={namespace['JAX_VERSION']}"

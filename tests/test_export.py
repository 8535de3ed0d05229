"""python -m xclip_jax.export: ONNX files that onnxruntime runs with the JAX model's answers, StableHLO artifacts
that run without the model code, the manifest, bad input, and the docs example that classifies a video.

The ONNX and StableHLO files are run in fresh processes that check which modules they imported: the ONNX side
imports neither JAX nor xclip_jax, the StableHLO side no xclip_jax and no flax.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("jax2onnx")

import xclip_jax
from tests import data_fixtures, zoo_fixtures
from tests.references import max_abs_diff
from xclip_jax import pretrained
from xclip_jax.evaluation import video_files
from xclip_jax.export import __main__ as export_cli

TOLERANCE = 1e-4
LABELS = ["juggling balls", "playing piano", "a cat on a sofa"]
REPO = zoo_fixtures.REPO_ROOT


def run_isolated(code: str, *args: str, timeout: float = 300) -> dict:
  """Runs `code` in a fresh interpreter (no PYTHONPATH: this checkout cannot be imported by accident) and returns
  the JSON on its last stdout line."""
  env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "XLA_FLAGS")}
  result = subprocess.run([sys.executable, "-c", code, *args], env={**env, "JAX_PLATFORMS": "cpu"},
                          capture_output=True, text=True, timeout=timeout, cwd="/")
  assert result.returncode == 0, f"subprocess failed:\n{result.stdout}\n{result.stderr}"
  return json.loads(result.stdout.strip().splitlines()[-1])


# Both runners read an .npz with "in.<case>.<function>.<input>" and "out.<case>.<function>.<output>" arrays, run
# each function of each case, and print max |result - expected| per output and the modules they must not import.
ONNX_RUNNER = r"""
import json, sys
import numpy as np
import onnxruntime
folder, cases = sys.argv[1], np.load(sys.argv[2])
diffs, shapes = {}, {}
for case, name in sorted({tuple(k.split(".")[1:3]) for k in cases.files}):
  session = onnxruntime.InferenceSession(f"{folder}/{name}.onnx", providers=["CPUExecutionProvider"])
  outputs = session.run(None, {i.name: cases[f"in.{case}.{name}.{i.name}"] for i in session.get_inputs()})
  for spec, value in zip(session.get_outputs(), outputs, strict=True):
    key = f"{case}.{name}.{spec.name}"
    shapes[key] = list(value.shape)
    diffs[key] = float(np.max(np.abs(value.astype(np.float64) - cases[f"out.{key}"])))
banned = sorted(m for m in sys.modules if m.split(".")[0] in ("jax", "jaxlib", "xclip_jax", "flax", "torch"))
print(json.dumps({"diffs": diffs, "shapes": shapes, "banned": banned}))
"""

STABLEHLO_RUNNER = r"""
import json, sys
import jax
import numpy as np
from safetensors.numpy import load_file
folder, cases = sys.argv[1], np.load(sys.argv[2])
functions = json.load(open(f"{folder}/manifest.json"))["functions"]
weights = load_file(f"{folder}/stablehlo/weights.safetensors")
diffs = {}
for case, name in sorted({tuple(k.split(".")[1:3]) for k in cases.files}):
  with open(f"{folder}/stablehlo/{name}.jax_export", "rb") as f:
    exported = jax.export.deserialize(f.read())
  outputs = exported.call(weights, *(cases[f"in.{case}.{name}.{i['name']}"] for i in functions[name]["inputs"]))
  for spec, value in zip(functions[name]["outputs"], outputs, strict=True):
    key = f"{case}.{name}.{spec['name']}"
    diffs[key] = float(np.max(np.abs(np.asarray(value, np.float64) - cases[f"out.{key}"])))
banned = sorted(m for m in sys.modules if m.split(".")[0] in ("xclip_jax", "flax", "torch"))
print(json.dumps({"diffs": diffs, "banned": banned}))
"""


def reference_cases(model: xclip_jax.InferenceModel, labels: list[str] | None, path: pathlib.Path) -> dict:
  """Inputs and the JAX model's outputs for each exported function, at two batch sizes / text counts."""
  config = model.config
  rng = np.random.default_rng(7)
  cases = {}
  for case, (batch, texts) in {"a": (1, 2), "b": (3, 5)}.items():
    video = rng.integers(0, 256, (batch, config.num_frames, config.image_size, config.image_size, 3), np.uint8)
    tokens = xclip_jax.tokenize([f"class number {i}" for i in range(texts)])
    features = model.encode_video(xclip_jax.normalize_frames(video))
    text_features = np.asarray(model.encode_text(tokens))
    logits = np.asarray(model.logits(features, text_features))
    outputs = {
        "video_encoder": {"video": video},
        "text_encoder": {"tokens": tokens},
        "logits": {"video_embedding": np.asarray(features.embedding), "prompt_context":
                   np.asarray(features.prompt_context), "text_features": text_features},
    }
    expected = {
        "video_encoder": {"video_embedding": features.embedding, "prompt_context": features.prompt_context},
        "text_encoder": {"text_features": text_features},
        "logits": {"logits": logits, "probabilities": softmax(logits)},
    }
    if labels is not None:
      class_logits = np.asarray(model(xclip_jax.normalize_frames(video), xclip_jax.tokenize(labels)))
      outputs["classifier"] = {"video": video}
      expected["classifier"] = {"logits": class_logits, "probabilities": softmax(class_logits)}
    for name, inputs in outputs.items():
      cases.update({f"in.{case}.{name}.{k}": v for k, v in inputs.items()})
      cases.update({f"out.{case}.{name}.{k}": np.asarray(v, np.float64) for k, v in expected[name].items()})
  np.savez(path, **cases)
  return cases


def softmax(logits: np.ndarray) -> np.ndarray:
  e = np.exp(logits - logits.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> pathlib.Path:
  """A random tiny model (frames 4, 32 px) and its export with LABELS, through the command line."""
  root = tmp_path_factory.mktemp("export")
  config = zoo_fixtures.tiny_xclip_config(4)
  pretrained.save_pretrained(root / "model", config, zoo_fixtures.random_params(config, seed=5))
  assert export_cli.main(["--checkpoint", str(root / "model"), "--out", str(root / "out"), "--labels",
                          ",".join(LABELS), "--no-progress"]) == 0
  return root


@pytest.fixture(scope="module")
def cases(exported) -> dict:
  """The JAX model's outputs for inputs of each exported function (exported / "cases.npz")."""
  return reference_cases(xclip_jax.load_model(exported / "model"), LABELS, exported / "cases.npz")


def test_onnx_gives_the_jax_models_outputs_in_a_process_without_jax(exported, cases):
  result = run_isolated(ONNX_RUNNER, str(exported / "out"), str(exported / "cases.npz"))
  assert result["banned"] == []
  for key, diff in sorted(result["diffs"].items()):
    print(f"{key}: max |onnxruntime - jax| = {diff:.2e}")
  assert len(result["diffs"]) == 2 * 7  # two cases x (classifier 2 + video 2 + text 1 + logits 2) outputs
  assert max(result["diffs"].values()) < TOLERANCE
  # Dynamic batch and text count: the shapes follow the inputs. And the test can fail: outputs differ by video.
  assert result["shapes"]["b.classifier.logits"] == [3, len(LABELS)]
  assert result["shapes"]["b.logits.probabilities"] == [3, 5]
  assert max_abs_diff(cases["out.b.classifier.logits"][0], cases["out.b.classifier.logits"][1]) > 1e-3


def test_stablehlo_runs_without_the_model_code(exported, cases):
  # One case (3 videos, 5 texts): each shape is a compile in the fresh process, and ONNX covers the dynamic sizes.
  np.savez(exported / "cases_b.npz", **{k: v for k, v in cases.items() if k.split(".")[1] == "b"})
  result = run_isolated(STABLEHLO_RUNNER, str(exported / "out"), str(exported / "cases_b.npz"))
  assert result["banned"] == []
  for key, diff in sorted(result["diffs"].items()):
    print(f"{key}: max |stablehlo - jax| = {diff:.2e}")
  assert len(result["diffs"]) == 7
  assert max(result["diffs"].values()) < TOLERANCE


def test_an_hf_xclip_directory_exports_with_the_pytorch_models_logits(tmp_path):
  from tests.test_convert_hf import hf_outputs, make_hf_model

  hf_model = make_hf_model("small")
  hf_model.save_pretrained(tmp_path / "hf")
  assert export_cli.main(["--checkpoint", str(tmp_path / "hf"), "--out", str(tmp_path / "out"), "--labels",
                          ",".join(LABELS), "--format", "onnx", "--no-progress"]) == 0
  vision = hf_model.config.vision_config
  video = np.random.default_rng(11).integers(0, 256, (2, vision.num_frames, vision.image_size, vision.image_size, 3),
                                             np.uint8)
  expected = hf_outputs(hf_model, np.asarray(xclip_jax.normalize_frames(video)), xclip_jax.tokenize(LABELS))["logits"]
  np.savez(tmp_path / "cases.npz", **{"in.a.classifier.video": video, "out.a.classifier.logits": expected,
                                      "out.a.classifier.probabilities": softmax(expected)})
  result = run_isolated(ONNX_RUNNER, str(tmp_path / "out"), str(tmp_path / "cases.npz"))
  print(result["diffs"])
  assert result["banned"] == []
  assert max(result["diffs"].values()) < TOLERANCE
  assert max_abs_diff(expected[0], expected[1]) > 1e-3


def test_manifest_describes_the_files(exported):
  import onnx

  out = exported / "out"
  manifest = json.loads((out / "manifest.json").read_text())
  model = xclip_jax.load_model(exported / "model")
  config = model.config
  assert manifest["labels"] == LABELS
  assert (manifest["input"]["frames"], manifest["input"]["size"]) == (config.num_frames, config.image_size)
  assert manifest["input"]["sampling"]["resize_short_side"] == int(256 / 224 * config.image_size)
  # The sampling functions it names exist; the formula it states gives their indices.
  sampling = manifest["input"]["sampling"]
  named = {}
  for qualified in (sampling["function"].split("(")[0], sampling["frame_indices"]):
    module, name = qualified.rsplit(".", 1)
    named[qualified] = getattr(importlib.import_module(module), name)
  frame_indices = named[sampling["frame_indices"]]
  for n in (4, 7, 30, 301):
    t = config.num_frames
    formula = [int(i * (n / t) + (n / t) / 2) % n for i in range(t)]
    assert formula == list(frame_indices(n, t))
  assert set(manifest["functions"]) == {"classifier", "video_encoder", "text_encoder", "logits"}
  for name, function in manifest["functions"].items():
    graph = onnx.load(out / function["files"]["onnx"][0], load_external_data=False).graph
    for declared, actual in [(function["inputs"], graph.input), (function["outputs"], graph.output)]:
      assert [d["name"] for d in declared] == [a.name for a in actual], name
      for d, a in zip(declared, actual, strict=True):
        dims = [dim.dim_param or dim.dim_value for dim in a.type.tensor_type.shape.dim]
        assert dims == d["shape"], (name, d["name"])
        assert onnx.helper.tensor_dtype_to_np_dtype(a.type.tensor_type.elem_type) == np.dtype(d["dtype"])
  for name, digest in manifest["sha256"].items():
    assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest, name
  written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
  assert written == sorted([*manifest["sha256"], "manifest.json"])
  assert all(p.stat().st_mode & 0o044 == 0o044 for p in out.rglob("*"))  # readable by a server's user


def test_bad_input_is_one_line_exit_2_and_writes_nothing(exported, tmp_path, capsys):
  model = str(exported / "model")
  cases = {
      "model": (["--checkpoint", str(tmp_path / "no_model"), "--out", str(tmp_path / "o")], "no_model"),
      "labels": (["--checkpoint", model, "--out", str(tmp_path / "o"), "--labels-file", str(tmp_path / "none.txt")],
                 "none.txt"),
      "format": (["--checkpoint", model, "--out", str(tmp_path / "o"), "--format", "onnx,tflite"], "'tflite'"),
      "out": (["--checkpoint", model, "--out", str(exported / "out")], "already exists"),
  }
  before = sorted(os.listdir(exported / "out"))
  for case, (argv, named) in cases.items():
    assert export_cli.main(argv) == 2, case
    err = capsys.readouterr().err
    print(f"{case}: {err.strip()}")
    assert len(err.strip().splitlines()) == 1 and err.startswith("export: error:") and named in err, case
    assert os.listdir(tmp_path) == [], case
  assert sorted(os.listdir(exported / "out")) == before


def test_ctrl_c_during_an_export_leaves_nothing(exported, tmp_path):
  """A real Ctrl-C (SIGINT) once the staging folder exists: exit 130, one line, no folder left."""
  process = subprocess.Popen(
      [sys.executable, "-m", "xclip_jax.export", "--checkpoint", str(exported / "model"), "--out",
       str(tmp_path / "out"), "--format", "onnx,stablehlo", "--no-progress"],
      cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stderr=subprocess.PIPE, text=True)
  deadline = time.monotonic() + 240
  while not any(p.name.startswith(".out.tmp-") for p in tmp_path.iterdir()):
    assert process.poll() is None and time.monotonic() < deadline, "the export ended before its staging folder"
    time.sleep(0.02)
  process.send_signal(signal.SIGINT)
  _, err = process.communicate(timeout=120)
  print(err)
  assert process.returncode == 130
  assert err.strip().splitlines() == [f"export: interrupted; nothing was written ({tmp_path / 'out'} was not created)"]
  assert os.listdir(tmp_path) == []  # neither the output nor the staging folder


def test_the_same_function_converts_to_the_same_bytes(exported, tmp_path):
  from xclip_jax.export import onnx_files
  from xclip_jax.export.functions import ExportedModel

  model = ExportedModel(xclip_jax.load_model(exported / "model", attention_implementation="xla"))
  logits = [f for f in model.functions() if f.name == "logits"][0]
  for run in ("a", "b"):
    (tmp_path / run).mkdir()
    onnx_files.write(logits, model.weights, tmp_path / run)
  assert (tmp_path / "a" / "logits.onnx").read_bytes() == (tmp_path / "b" / "logits.onnx").read_bytes()


def test_prune_removes_what_no_output_reads_and_keeps_what_a_loop_body_reads():
  import onnx
  from onnx import TensorProto, helper

  from xclip_jax.export import onnx_files

  tensor = lambda name: helper.make_tensor(name, TensorProto.FLOAT, [1], [1.0])
  body = helper.make_graph(  # a Loop body that reads `outer`, a weight of the enclosing graph
      [helper.make_node("Identity", ["cond_in"], ["cond_out"]),
       helper.make_node("Add", ["acc_in", "outer"], ["acc_out"])],
      "body", [helper.make_tensor_value_info(n, t, s) for n, t, s in
               [("i", TensorProto.INT64, []), ("cond_in", TensorProto.BOOL, []), ("acc_in", TensorProto.FLOAT, [1])]],
      [helper.make_tensor_value_info(n, t, s) for n, t, s in
       [("cond_out", TensorProto.BOOL, []), ("acc_out", TensorProto.FLOAT, [1])]])
  graph = helper.make_graph(
      [helper.make_node("Loop", ["trips", "", "x"], ["looped"], body=body),
       helper.make_node("Mul", ["x", "used"], ["y"]),
       helper.make_node("Mul", ["x", "dead_weight"], ["dead_1"]),
       helper.make_node("Neg", ["dead_1"], ["dead_2"])],
      "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
      [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1]) for n in ("y", "looped")],
      [tensor("used"), tensor("outer"), tensor("dead_weight"), tensor("unread"),
       helper.make_tensor("trips", TensorProto.INT64, [], [2])])
  assert onnx_files.prune(graph) == 4  # two dead nodes (a chain), then the weights only they read, and "unread"
  assert [n.op_type for n in graph.node] == ["Loop", "Mul"]
  assert sorted(t.name for t in graph.initializer) == ["outer", "trips", "used"]
  onnx.checker.check_graph(graph)


def test_benchmark_script_runs_on_an_export(exported, capsys):
  from scripts import benchmark_export

  assert benchmark_export.main(["--export", str(exported / "out"), "--batches", "1,2", "--rounds", "2",
                                "--repeats", "1"]) == 0
  out = capsys.readouterr().out
  print(out)
  assert re.search(r"max \|logits onnxruntime - jax\| = \S+ \(3 classes", out)
  for runtime in ("jax", "onnxruntime"):
    for batch in (1, 2):
      assert re.search(rf"^\| {runtime} \| {batch} \| [\d.]+ \([\d.]+-[\d.]+\) \| ", out, re.M), (runtime, batch)


def docs_example() -> str:
  """The python block of docs/export.md that classifies a video (the one that imports onnxruntime)."""
  blocks = re.findall(r"```python\n(.*?)```", (REPO / "docs" / "export.md").read_text(), re.S)
  [example] = [b for b in blocks if "import onnxruntime" in b and "import av" in b]
  return example


def test_the_docs_example_classifies_a_video_with_onnxruntime_pyav_and_numpy(exported, tmp_path):
  config = xclip_jax.load_model(exported / "model").config
  # 36 x 48: the short side already at 256/224 x 32, so the example's frames are the project's to the bit.
  rng = np.random.default_rng(3)
  frames = np.repeat(rng.integers(0, 256, (11, 9, 12, 3), np.uint8), 4, axis=1).repeat(4, axis=2)
  video = data_fixtures.write_video(str(tmp_path / "clip.mp4"), frames)
  script = tmp_path / "classify_onnx.py"
  script.write_text(docs_example())
  runner = (f"import json, runpy, sys\nsys.argv = [{str(script)!r}] + sys.argv[1:]\n"
            f"runpy.run_path({str(script)!r}, run_name='__main__')\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('jax', 'xclip_jax', 'flax', 'torch', 'PIL', 'cv2'))))")
  env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
  result = subprocess.run([sys.executable, "-c", runner, str(exported / "out"), video], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr
  *rows, banned = result.stdout.strip().splitlines()
  print("\n".join(rows))
  assert json.loads(banned) == []
  printed = {label: float(p) for p, label in (row.split(maxsplit=1) for row in rows)}
  model = xclip_jax.load_model(exported / "model")
  views = video_files.video_views(video, frames=config.num_frames, size=config.image_size)
  expected = softmax(np.asarray(model(xclip_jax.normalize_frames(views), xclip_jax.tokenize(LABELS))))[0]
  assert list(printed) == [LABELS[k] for k in np.argsort(-expected)]
  assert max_abs_diff([printed[label] for label in LABELS], expected) < TOLERANCE

"""Parity with transformers' XCLIPModel: convert a random HF model, compare logits and embeddings.

Also the way back (`--to hf`, `--to official`) and conversion errors.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import xclip_jax  # noqa: E402
from scripts import convert_checkpoint  # noqa: E402
from tests.references import max_abs_diff, random_videos, randomize_  # noqa: E402
from xclip_jax.conversion import ConversionError, import_checkpoint  # noqa: E402

TOLERANCE = 1e-4
TEXTS = ["triangle moving left", "Playing Guitar", "a video of juggling balls", "ApplyEyeMakeup"]

# name -> (HF config kwargs). "large_heads" mimics HF's large checkpoints: MIT/prompt heads != width // 64.
HF_CONFIGS = {
    "small": dict(
        text=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2),
        vision=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                    image_size=32, patch_size=8, num_frames=4, mit_hidden_size=32, mit_intermediate_size=64,
                    mit_num_attention_heads=2),
        top=dict(projection_dim=32, prompt_layers=2, prompt_num_attention_heads=2)),
    "large_heads": dict(
        text=dict(hidden_size=96, intermediate_size=192, num_hidden_layers=2, num_attention_heads=3),
        vision=dict(hidden_size=96, intermediate_size=160, num_hidden_layers=3, num_attention_heads=6,
                    image_size=28, patch_size=14, num_frames=3, mit_hidden_size=48, mit_intermediate_size=80,
                    mit_num_attention_heads=8),
        top=dict(projection_dim=48, prompt_layers=2, prompt_num_attention_heads=8)),
}


def make_hf_model(name: str, seed: int = 0):
  spec = HF_CONFIGS[name]
  config = transformers.XCLIPConfig(text_config=spec["text"], vision_config=spec["vision"], **spec["top"])
  torch.manual_seed(seed)
  model = transformers.XCLIPModel(config).eval()
  randomize_(model, seed)
  return model


def hf_outputs(model, videos: np.ndarray, tokens: np.ndarray) -> dict[str, np.ndarray]:
  pixel_values = torch.from_numpy(videos.transpose(0, 1, 4, 2, 3).copy())
  input_ids = torch.from_numpy(tokens.astype(np.int64))
  with torch.no_grad():
    out = model(input_ids=input_ids, pixel_values=pixel_values)
    video = model.get_video_features(pixel_values=pixel_values)
    text = model.get_text_features(input_ids=input_ids)
  as_numpy = lambda x: (x.pooler_output if hasattr(x, "pooler_output") else x).numpy()
  return {"logits": out.logits_per_video.numpy(), "video": as_numpy(video), "text": as_numpy(text)}


def our_outputs(model: xclip_jax.InferenceModel, videos: np.ndarray, tokens: np.ndarray) -> dict[str, np.ndarray]:
  text = model.encode_text(tokens)
  video = model.encode_video(videos)
  return {"logits": np.asarray(model.logits(video, text)), "video": np.asarray(video.embedding),
          "text": np.asarray(text)}


@pytest.fixture(scope="module", params=sorted(HF_CONFIGS))
def converted(request, tmp_path_factory):
  """(HF model, its saved directory, our converted directory)."""
  root = tmp_path_factory.mktemp(request.param)
  hf_model = make_hf_model(request.param)
  hf_model.save_pretrained(root / "hf")
  assert convert_checkpoint.main(["--source", "hf", "--input", str(root / "hf"), "--output", str(root / "jax")]) == 0
  return hf_model, root


def test_logits_and_embeddings_match_hf(converted):
  hf_model, root = converted
  model = xclip_jax.load_model(root / "jax")
  config = model.config
  videos = random_videos(2, config.num_frames, config.image_size, seed=1)
  tokens = xclip_jax.tokenize(TEXTS)
  ours, theirs = our_outputs(model, videos, tokens), hf_outputs(hf_model, videos, tokens)
  for key in ("logits", "video", "text"):
    diff = max_abs_diff(ours[key], theirs[key])
    print(f"[{root.name}] {key}: shape {ours[key].shape}, max |ours - HF| = {diff:.2e}")
    assert ours[key].shape == theirs[key].shape
    assert diff < TOLERANCE, f"{key} differs from HF by {diff}"
  # The test must be able to fail: logits depend on the video.
  assert max_abs_diff(theirs["logits"][0], theirs["logits"][1]) > 1e-3


def test_heads_come_from_the_hf_config(converted):
  hf_model, root = converted
  config = xclip_jax.load_model(root / "jax").config
  assert config.mit_heads == hf_model.config.vision_config.mit_num_attention_heads
  assert config.prompt_heads == hf_model.config.prompt_num_attention_heads


def test_round_trip_to_hf_gives_the_same_model(converted):
  hf_model, root = converted
  out = root / "back_to_hf"
  assert convert_checkpoint.main(["--source", "jax", "--input", str(root / "jax"), "--to", "hf",
                                  "--output", str(out)]) == 0
  reloaded = transformers.XCLIPModel.from_pretrained(out).eval()
  original = hf_model.state_dict()
  for key, value in reloaded.state_dict().items():
    assert torch.equal(value, original[key]), key
  config = hf_model.config.vision_config
  videos = random_videos(2, config.num_frames, config.image_size, seed=2)
  tokens = xclip_jax.tokenize(TEXTS[:3])
  diff = max_abs_diff(hf_outputs(reloaded, videos, tokens)["logits"], hf_outputs(hf_model, videos, tokens)["logits"])
  print(f"[{root.name}] round trip logits max diff {diff:.2e}")
  assert diff == 0.0


def test_official_layout_round_trip(converted, tmp_path):
  """--to official writes {'model': state_dict} with official names; --source xclip reads it back."""
  hf_model, root = converted
  pth = tmp_path / "xclip.pth"
  assert convert_checkpoint.main(["--source", "jax", "--input", str(root / "jax"), "--to", "official",
                                  "--output", str(pth)]) == 0
  checkpoint = torch.load(pth, weights_only=True)
  assert "visual.transformer.resblocks.0.message_attn.in_proj_weight" in checkpoint["model"]
  assert "prompts_generator.decoder.1.mlp.3.weight" in checkpoint["model"]
  config_hf, params_hf, _ = import_checkpoint("jax", root / "jax")
  config_official, params_official, _ = import_checkpoint("xclip", pth)
  # Head counts of the official format are width // 64; everything with shapes is read back exactly.
  assert config_official.replace(mit_heads=config_hf.mit_heads, prompt_heads=config_hf.prompt_heads,
                                 vision_heads=config_hf.vision_heads, text_heads=config_hf.text_heads) == config_hf
  assert params_official.keys() == params_hf.keys()
  for path, value in params_hf.items():
    np.testing.assert_array_equal(params_official[path], value, err_msg=str(path))


def test_official_checkpoint_with_pickled_config_object(converted, tmp_path):
  """Official checkpoints also pickle a yacs config; it must not stop (or execute during) loading."""
  _, root = converted
  pth = tmp_path / "official.pth"
  assert convert_checkpoint.main(["--source", "jax", "--input", str(root / "jax"), "--to", "official",
                                  "--output", str(pth)]) == 0
  module = type(pathlib)("fake_yacs_config")
  exec("class CfgNode(dict):\n  pass\n", module.__dict__)  # a class unknown when the file is loaded
  import sys

  sys.modules["fake_yacs_config"] = module
  try:
    node = module.CfgNode(DATA={"NUM_FRAMES": 4})
    checkpoint = torch.load(pth, weights_only=True)
    torch.save({"model": checkpoint["model"], "config": node, "epoch": 29, "max_accuracy": 83.8}, pth)
  finally:
    del sys.modules["fake_yacs_config"]
  _, params, _ = import_checkpoint("xclip", pth)
  _, reference, _ = import_checkpoint("jax", root / "jax")
  assert all(np.array_equal(params[p], reference[p]) for p in reference)


def test_missing_unused_and_misshaped_tensors_are_named(tmp_path):
  hf_model = make_hf_model("small")
  hf_model.save_pretrained(tmp_path / "hf")
  from safetensors.numpy import load_file, save_file

  weights = load_file(tmp_path / "hf" / "model.safetensors")
  del weights["mit.encoder.layers.0.mlp.fc1.bias"]
  weights["vision_model.encoder.layers.0.message_fc.weight"] = np.zeros((3, 3), np.float32)
  weights["extra.tensor"] = np.zeros((2,), np.float32)
  save_file(weights, tmp_path / "hf" / "model.safetensors", metadata={"format": "pt"})
  with pytest.raises(ConversionError) as error:
    import_checkpoint("hf", tmp_path / "hf")
  message = str(error.value)
  print(message)
  assert "missing tensor 'mit.encoder.layers.0.mlp.fc1.bias'" in message
  assert "unused tensor 'extra.tensor'" in message
  assert "visual/resblocks/0/message_fc/kernel: expected (64, 64), got (3, 3)" in message
  assert str(tmp_path / "hf") in message


def test_failed_conversion_leaves_no_output_and_keeps_existing(tmp_path, capsys):
  (tmp_path / "hf").mkdir()
  (tmp_path / "hf" / "config.json").write_text(json.dumps({"model_type": "xclip"}))
  (tmp_path / "hf" / "model.safetensors").write_bytes(b"not a safetensors file")
  assert convert_checkpoint.main(["--source", "hf", "--input", str(tmp_path / "hf"),
                                  "--output", str(tmp_path / "out")]) == 1
  assert "error" in capsys.readouterr().err
  assert not (tmp_path / "out").exists()
  assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]  # no staging leftovers

  hf_model = make_hf_model("small")
  hf_model.save_pretrained(tmp_path / "good")
  (tmp_path / "existing").mkdir()
  (tmp_path / "existing" / "keep.txt").write_text("precious")
  assert convert_checkpoint.main(["--source", "hf", "--input", str(tmp_path / "good"),
                                  "--output", str(tmp_path / "existing")]) == 1
  assert "already exists" in capsys.readouterr().err
  assert (tmp_path / "existing" / "keep.txt").read_text() == "precious"


def test_frames_must_match_the_checkpoint(converted, capsys):
  _, root = converted
  frames = xclip_jax.load_model(root / "jax").config.num_frames
  assert convert_checkpoint.main(["--source", "hf", "--input", str(root / "hf"), "--output", str(root / "x"),
                                  "--frames", str(frames + 1)]) == 1
  assert "--frames" in capsys.readouterr().err


def test_videos_of_the_wrong_shape_are_rejected_clearly(converted):
  _, root = converted
  model = xclip_jax.load_model(root / "jax")
  config = model.config
  with pytest.raises(ValueError, match=f"{config.num_frames} frames at {config.image_size}px"):
    model.encode_video(np.zeros((1, config.num_frames + 1, config.image_size, config.image_size, 3), np.float32))


def test_load_model_reads_hf_directories_directly(converted):
  hf_model, root = converted
  direct = xclip_jax.load_model(root / "hf")
  converted_model = xclip_jax.load_model(root / "jax")
  config = direct.config
  videos = random_videos(1, config.num_frames, config.image_size, seed=3)
  tokens = xclip_jax.tokenize(TEXTS[:2])
  assert max_abs_diff(direct(videos, tokens), converted_model(videos, tokens)) == 0.0
  probabilities = direct.classify(videos, TEXTS[:2])
  np.testing.assert_allclose(probabilities.sum(-1), 1.0, rtol=1e-5)

"""OpenAI CLIP -> X-CLIP: a random OpenAI-architecture CLIP, saved as a TorchScript archive with fp16
weights like the released ViT-*.pt files, converted and compared with OpenAI's own forward."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import jax.numpy as jnp  # noqa: E402

import xclip_jax  # noqa: E402
from scripts import convert_checkpoint  # noqa: E402
from tests.references import max_abs_diff, openai_clip_file, random_videos, randomize_  # noqa: E402
from xclip_jax.conversion import ConversionError, import_checkpoint  # noqa: E402
from xclip_jax.conversion.convert import is_xclip_module  # noqa: E402
from xclip_jax.models.params import model_from_params  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")

TOLERANCE = 1e-4
FRAMES = 3
CLIP_ARGS = dict(embed_dim=32, image_resolution=32, vision_layers=2, vision_width=128, vision_patch_size=8,
                 context_length=77, vocab_size=49408, transformer_width=128, transformer_heads=2, transformer_layers=2)
TEXTS = ["square growing", "circle moving right", "Juggling Balls"]


@pytest.fixture(scope="module")
def openai_clip(tmp_path_factory):
  """(fp32 reference CLIP holding the fp16-rounded weights, path of the fp16 TorchScript archive)."""
  clip_model = openai_clip_file("model")
  torch.manual_seed(0)
  reference = clip_model.CLIP(**CLIP_ARGS).eval()
  randomize_(reference, seed=0)
  with torch.no_grad():  # released archives hold fp16 weights: compare against the same rounded values
    for param in reference.parameters():
      param.copy_(param.half().float())
  archive_model = clip_model.CLIP(**CLIP_ARGS).eval()
  archive_model.load_state_dict(reference.state_dict())
  clip_model.convert_weights(archive_model)  # OpenAI's own fp16 conversion, as in the released files
  image = torch.zeros(1, 3, 32, 32, dtype=torch.float16)
  text = torch.zeros(1, 77, dtype=torch.long)
  traced = torch.jit.trace(archive_model, (image, text), check_trace=False)
  path = tmp_path_factory.mktemp("openai") / "ViT-tiny.pt"
  traced.save(str(path))
  return reference, path


@pytest.fixture(scope="module")
def converted(openai_clip, tmp_path_factory):
  _, archive = openai_clip
  output = tmp_path_factory.mktemp("converted") / "xclip"
  assert convert_checkpoint.main(["--source", "openai", "--input", str(archive), "--output", str(output),
                                  "--frames", str(FRAMES)]) == 0
  return output


def test_archive_really_is_torchscript_with_fp16_weights(openai_clip):
  _, archive = openai_clip
  state = torch.jit.load(str(archive)).state_dict()
  assert state["visual.conv1.weight"].dtype == torch.float16


def test_text_features_equal_clip_encode_text(openai_clip, converted):
  reference, _ = openai_clip
  model = xclip_jax.load_model(converted)
  tokens = xclip_jax.tokenize(TEXTS)
  with torch.no_grad():
    expected = reference.encode_text(torch.from_numpy(tokens.astype(np.int64))).numpy()
  diff = max_abs_diff(model.encode_text(tokens), expected)
  print(f"text features: max |ours - CLIP.encode_text| = {diff:.2e} (scale {np.abs(expected).max():.2f})")
  assert diff < TOLERANCE


def test_with_ablations_off_the_model_is_clip_with_mean_pooling(openai_clip, converted):
  reference, _ = openai_clip
  config, params, _ = import_checkpoint("jax", converted)
  clip_only = config.replace(use_cross_frame=False, use_mit=False, use_prompt=False)
  model = xclip_jax.InferenceModel(model_from_params(
      clip_only, {p: v for p, v in params.items() if not is_xclip_module(p)}))
  videos = random_videos(2, FRAMES, config.image_size, seed=5)
  frames = torch.from_numpy(videos.reshape(-1, *videos.shape[2:]).transpose(0, 3, 1, 2).copy())
  tokens = xclip_jax.tokenize(TEXTS)
  with torch.no_grad():
    expected_frames = reference.encode_image(frames).numpy().reshape(2, FRAMES, -1)
    text = reference.encode_text(torch.from_numpy(tokens.astype(np.int64))).numpy()
  frame_features, _ = model.module.encode_frames(jnp.asarray(videos))
  diff = max_abs_diff(frame_features, expected_frames)
  print(f"per-frame features: max |ours - CLIP.encode_image| = {diff:.2e}")
  assert diff < TOLERANCE
  # Logits: 100 * cosine(mean over frames of CLIP image features, CLIP text features).
  pooled = expected_frames.mean(axis=1)
  unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)
  expected_logits = np.exp(reference.logit_scale.item()) * unit(pooled) @ unit(text).T
  logits_diff = max_abs_diff(model(videos, tokens), expected_logits)
  print(f"CLIP mean-pooling logits: max diff {logits_diff:.2e}")
  assert logits_diff < 10 * TOLERANCE  # logits are scaled by 100


def test_new_modules_start_from_the_official_initialisation(converted):
  config, params, _ = import_checkpoint("jax", converted)
  width = config.vision_width
  alpha = params[("prompts_generator", "alpha")]
  np.testing.assert_array_equal(alpha, np.full_like(alpha, 0.1))
  np.testing.assert_array_equal(params[("visual", "resblocks", 0, "message_ln", "scale")], np.ones(width))
  np.testing.assert_array_equal(params[("mit", "transformer", "resblocks", 0, "attn", "query", "bias")],
                                np.zeros(config.embed_dim))
  message_fc = params[("visual", "resblocks", 1, "message_fc", "kernel")]
  assert np.abs(message_fc).max() <= width**-0.5  # PyTorch Linear default: U(+-1/sqrt(fan_in))
  assert 0.8 < params[("prompts_visual_proj",)].std() < 1.2  # torch.randn(D, E): std 1
  assert 0.015 < params[("mit", "positional_embedding")].std() < 0.025  # trunc-normal 0.02


def test_full_xclip_from_clip_runs_and_differs_from_clip(openai_clip, converted):
  model = xclip_jax.load_model(converted)
  videos = random_videos(2, FRAMES, model.config.image_size, seed=6)
  logits = np.asarray(model(videos, xclip_jax.tokenize(TEXTS)))
  assert logits.shape == (2, len(TEXTS)) and np.isfinite(logits).all()


def test_errors_name_the_problem(openai_clip, tmp_path):
  reference, archive = openai_clip
  with pytest.raises(ConversionError, match="convert it with --source xclip"):
    state = reference.state_dict()
    state["mit.positional_embedding"] = torch.zeros(1, 8, 32)
    torch.save(state, tmp_path / "mixed.pt")
    import_checkpoint("openai", tmp_path / "mixed.pt")
  with pytest.raises(ConversionError, match="--source openai"):
    import_checkpoint("xclip", archive)
  with pytest.raises(ConversionError, match="ResNet CLIP"):
    torch.save({"visual.layer1.0.conv1.weight": torch.zeros(1)}, tmp_path / "rn50.pt")
    import_checkpoint("openai", tmp_path / "rn50.pt")
  with pytest.raises(FileNotFoundError, match="no_such.pt"):
    import_checkpoint("openai", tmp_path / "no_such.pt")
  state = reference.state_dict()
  del state["visual.ln_post.weight"]
  torch.save(state, tmp_path / "incomplete.pt")
  with pytest.raises(ConversionError, match=r"missing tensor 'visual.ln_post.weight'"):
    import_checkpoint("openai", tmp_path / "incomplete.pt")


def test_missing_torch_gives_the_install_command(monkeypatch, openai_clip):
  _, archive = openai_clip
  monkeypatch.setitem(__import__("sys").modules, "torch", None)
  with pytest.raises(ImportError, match=r"pip install torch==2.13.0"):
    import_checkpoint("openai", archive)

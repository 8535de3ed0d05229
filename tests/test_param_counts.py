"""Parameter counts per variant, checked against OpenAI's CLIP and HuggingFace's XCLIPModel.

Both references are built on PyTorch's meta device, so even L/14@336 allocates nothing; torch is only
imported here (the test is skipped without it).
"""

from __future__ import annotations

import importlib.util
import pathlib
import sysconfig

import pytest

from xclip_jax import perf
from xclip_jax.models.config import VARIANTS, ModelConfig, variant_config

CASES = [(variant, 8) for variant in VARIANTS] + [("L/14@336", 16)]
CASE_IDS = [f"{variant}-{frames}" for variant, frames in CASES]


def _config(variant: str, frames: int) -> ModelConfig:
  return variant_config(variant, frames=frames)


def test_param_count_table():
  rows = []
  for variant, frames in CASES:
    counts = perf.count_parameters(_config(variant, frames))
    assert counts["total"] == counts["clip"] + counts["message"] + counts["mit"] + counts["prompts"]
    rows.append({"variant": variant, "frames": frames, **counts})
  millions = lambda n: f"{n / 1e6:.3f}M"
  columns = [("variant", "variant", str), ("frames", "T", str)]
  columns += [(group, group, millions) for group in perf.PARAM_GROUPS if group != "logit_scale"]
  columns += [("clip", "CLIP part", millions), ("total", "total", millions), ("total", "total (exact)", str)]
  print()
  print(perf.format_table(rows, columns))


def test_ablations_remove_their_parameters():
  config = variant_config("tiny")
  full = perf.count_parameters(config)
  clip_only = perf.count_parameters(config.replace(use_cross_frame=False, use_mit=False, use_prompt=False))
  assert clip_only["message"] == clip_only["mit"] == clip_only["prompts"] == 0
  assert clip_only["total"] == clip_only["clip"] == full["clip"]
  # Frames only change the MIT's temporal position embedding (T x E).
  sixteen = perf.count_parameters(config.replace(num_frames=16))
  assert sixteen["total"] - full["total"] == 8 * config.embed_dim


def _openai_clip_module():
  """`clip/model.py` of the openai-clip package, loaded by path: `clip/__init__.py` needs torchvision."""
  pytest.importorskip("torch")
  path = pathlib.Path(sysconfig.get_paths()["purelib"]) / "clip" / "model.py"
  if not path.exists():
    pytest.skip("openai-clip is not installed")
  spec = importlib.util.spec_from_file_location("_openai_clip_model", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.mark.parametrize(("variant", "frames"), CASES, ids=CASE_IDS)
def test_clip_part_matches_openai_clip(variant, frames):
  clip_model = _openai_clip_module()  # skips without torch or openai-clip
  import torch
  c = _config(variant, frames)
  # OpenAI's CLIP derives heads (width // 64) and MLP widths (4 x width) itself; neither changes the count
  # except through the MLP width, which every config here keeps at 4 x width.
  assert c.vision_mlp_dim == 4 * c.vision_width and c.text_mlp_dim == 4 * c.text_width
  with torch.device("meta"):
    reference = clip_model.CLIP(
        embed_dim=c.embed_dim, image_resolution=c.image_size, vision_layers=c.vision_layers,
        vision_width=c.vision_width, vision_patch_size=c.patch_size, context_length=c.context_length,
        vocab_size=c.vocab_size, transformer_width=c.text_width, transformer_heads=c.text_heads,
        transformer_layers=c.text_layers)
  expected = sum(p.numel() for p in reference.parameters())
  counts = perf.count_parameters(c)
  print(f"{variant}-{frames}: CLIP part {counts['clip']:,} vs OpenAI CLIP {expected:,}")
  assert counts["clip"] == expected
  assert counts["text"] + counts["logit_scale"] == expected - sum(p.numel() for p in reference.visual.parameters())


@pytest.mark.parametrize(("variant", "frames"), CASES, ids=CASE_IDS)
def test_total_matches_transformers_xclip(variant, frames):
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  c = _config(variant, frames)
  hf_config = transformers.XCLIPConfig(
      text_config=dict(
          vocab_size=c.vocab_size, hidden_size=c.text_width, intermediate_size=c.text_mlp_dim,
          num_hidden_layers=c.text_layers, num_attention_heads=c.text_heads,
          max_position_embeddings=c.context_length),
      vision_config=dict(
          hidden_size=c.vision_width, intermediate_size=c.vision_mlp_dim, num_hidden_layers=c.vision_layers,
          num_attention_heads=c.vision_heads, patch_size=c.patch_size, image_size=c.image_size,
          num_frames=c.num_frames, mit_hidden_size=c.embed_dim, mit_intermediate_size=c.mit_mlp_dim,
          mit_num_hidden_layers=c.mit_layers, mit_num_attention_heads=c.mit_heads),
      projection_dim=c.embed_dim, prompt_layers=c.prompt_layers, prompt_num_attention_heads=c.prompt_heads)
  with torch.device("meta"):
    reference = transformers.XCLIPModel(hf_config)
  # Parameters only: the position_ids buffers are non-persistent (not in the state dict, not weights).
  expected = sum(p.numel() for p in reference.parameters())
  assert expected == sum(t.numel() for t in reference.state_dict().values())
  counts = perf.count_parameters(c)
  print(f"{variant}-{frames}: total {counts['total']:,} vs transformers XCLIPModel {expected:,}")
  assert counts["total"] == expected
  assert counts["mit"] == sum(p.numel() for p in reference.mit.parameters())
  assert counts["message"] == sum(p.numel() for name, p in reference.vision_model.named_parameters()
                                  if ".message_" in name)

"""The official X-CLIP / OpenAI CLIP state-dict layout (microsoft/VideoX `models/xclip.py`).

X-CLIP keeps CLIP's key names, so one table covers OpenAI CLIP archives (whose keys are the CLIP subset)
and official X-CLIP checkpoints. Architecture hyper-parameters are read off tensor shapes the way
OpenAI's `build_model` does, heads being width // 64 everywhere as in the official code.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np

from xclip_jax.conversion import rules as r
from xclip_jax.models.config import ModelConfig

# Entries of OpenAI's TorchScript state dicts that are metadata, not weights (`build_model` drops them).
OPENAI_METADATA_KEYS = ("input_resolution", "context_length", "vocab_size")


def clip_block_rules(source: str, target: r.Path) -> list[r.Rule]:
  """CLIP's ResidualAttentionBlock: attn (packed), ln_1, mlp.c_fc/c_proj, ln_2."""
  return (r.packed_attention(f"{source}.attn", target + ("attn",))
          + r.layer_norm(f"{source}.ln_1", target + ("ln_1",))
          + r.linear(f"{source}.mlp.c_fc", target + ("mlp", "fc1"))
          + r.linear(f"{source}.mlp.c_proj", target + ("mlp", "fc2"))
          + r.layer_norm(f"{source}.ln_2", target + ("ln_2",)))


def clip_rules(config: ModelConfig) -> list[r.Rule]:
  """The CLIP part: vision tower without message modules, text tower, logit scale."""
  rules = (r.conv_kernel("visual.conv1.weight", ("visual", "conv1"))
           + r.copy("visual.class_embedding", ("visual", "class_embedding"))
           + r.copy("visual.positional_embedding", ("visual", "positional_embedding"))
           + r.layer_norm("visual.ln_pre", ("visual", "ln_pre")))
  for i in range(config.vision_layers):
    rules += clip_block_rules(f"visual.transformer.resblocks.{i}", ("visual", "resblocks", i))
  rules += (r.layer_norm("visual.ln_post", ("visual", "ln_post"))
            + r.copy("visual.proj", ("visual", "proj"))
            + r.copy("token_embedding.weight", ("text", "token_embedding"))
            + r.copy("positional_embedding", ("text", "positional_embedding")))
  for i in range(config.text_layers):
    rules += clip_block_rules(f"transformer.resblocks.{i}", ("text", "transformer", "resblocks", i))
  rules += (r.layer_norm("ln_final", ("text", "ln_final"))
            + r.copy("text_projection", ("text", "text_projection"))
            + r.copy("logit_scale", ("logit_scale",)))
  return rules


def xclip_module_rules(config: ModelConfig) -> list[r.Rule]:
  """The modules X-CLIP adds to CLIP: message tokens, MIT, prompt generator."""
  rules: list[r.Rule] = []
  if config.use_cross_frame:
    for i in range(config.vision_layers):
      source, target = f"visual.transformer.resblocks.{i}", ("visual", "resblocks", i)
      rules += (r.linear(f"{source}.message_fc", target + ("message_fc",))
                + r.layer_norm(f"{source}.message_ln", target + ("message_ln",))
                + r.packed_attention(f"{source}.message_attn", target + ("message_attn",)))
  if config.use_mit:
    rules += r.copy("mit.positional_embedding", ("mit", "positional_embedding"))
    for i in range(config.mit_layers):
      rules += clip_block_rules(f"mit.resblocks.{i}", ("mit", "transformer", "resblocks", i))
  if config.use_prompt:
    rules += (r.layer_norm("prompts_visual_ln", ("prompts_visual_ln",))
              + r.copy("prompts_visual_proj", ("prompts_visual_proj",))
              + r.layer_norm("prompts_generator.norm", ("prompts_generator", "norm")))
    for j in range(config.prompt_layers):
      source, target = f"prompts_generator.decoder.{j}", ("prompts_generator", "decoder", j)
      rules += (r.split_attention(f"{source}.cross_attn", target + ("cross_attn",),
                                  names=("q_proj", "k_proj", "v_proj", "proj"), qkv_bias=False)
                + r.layer_norm(f"{source}.norm1", target + ("norm1",))
                + r.layer_norm(f"{source}.norm3", target + ("norm3",))
                + r.linear(f"{source}.mlp.0", target + ("mlp", "fc1"))
                + r.linear(f"{source}.mlp.3", target + ("mlp", "fc2")))
    rules += r.copy("prompts_generator.alpha", ("prompts_generator", "alpha"))
  return rules


def official_rules(config: ModelConfig) -> list[r.Rule]:
  return clip_rules(config) + xclip_module_rules(config)


def _count(state: Mapping[str, np.ndarray], pattern: str) -> int:
  regex = re.compile(pattern)
  return len({m.group(1) for key in state if (m := regex.fullmatch(key))})


def _shape(state: Mapping[str, np.ndarray], key: str, source_name: str) -> tuple[int, ...]:
  if key not in state:
    raise r.ConversionError(f"{source_name}: expected tensor '{key}' is missing; is this a CLIP ViT / X-CLIP "
                            f"checkpoint? (found {len(state)} tensors, e.g. {sorted(state)[:5]})")
  return tuple(np.shape(state[key]))


def infer_config(state: Mapping[str, np.ndarray], *, source_name: str, frames: int | None = None
                 ) -> ModelConfig:
  """Reads the architecture off an official X-CLIP or OpenAI CLIP state dict.

  For OpenAI CLIP (no `mit.*` keys) the X-CLIP modules are all enabled with the released settings and
  `frames` (default 8). For X-CLIP checkpoints, `frames` must match the checkpoint's MIT if given.
  """
  if any(key.startswith("visual.layer1.") for key in state):
    raise r.ConversionError(f"{source_name} is a ResNet CLIP; X-CLIP is built on the ViT CLIP models "
                            f"(ViT-B/32, ViT-B/16, ViT-L/14, ViT-L/14@336px).")
  vision_width, _, patch, _ = _shape(state, "visual.conv1.weight", source_name)
  positions = _shape(state, "visual.positional_embedding", source_name)[0]
  grid = round((positions - 1) ** 0.5)
  if grid * grid + 1 != positions:
    raise r.ConversionError(f"{source_name}: visual.positional_embedding has {positions} rows, not 1 + a square.")
  text_width = _shape(state, "ln_final.weight", source_name)[0]
  context_length, _ = _shape(state, "positional_embedding", source_name)
  vocab_size, _ = _shape(state, "token_embedding.weight", source_name)
  embed_dim = _shape(state, "text_projection", source_name)[1]
  vision_mlp = _shape(state, "visual.transformer.resblocks.0.mlp.c_fc.weight", source_name)[0]
  text_mlp = _shape(state, "transformer.resblocks.0.mlp.c_fc.weight", source_name)[0]
  is_xclip = any(key.startswith(("mit.", "prompts_", "visual.transformer.resblocks.0.message_")) for key in state)
  values = dict(
      image_size=grid * patch, patch_size=patch,
      vision_width=vision_width,
      vision_layers=_count(state, r"visual\.transformer\.resblocks\.(\d+)\.attn\.in_proj_weight"),
      vision_heads=vision_width // 64, vision_mlp_dim=vision_mlp,
      text_width=text_width, text_layers=_count(state, r"transformer\.resblocks\.(\d+)\.attn\.in_proj_weight"),
      text_heads=text_width // 64, text_mlp_dim=text_mlp, vocab_size=vocab_size, context_length=context_length,
      embed_dim=embed_dim, mit_heads=max(embed_dim // 64, 1), mit_mlp_dim=4 * embed_dim,
      prompt_heads=max(embed_dim // 64, 1), num_frames=frames or 8,
  )
  if is_xclip:
    values.update(
        use_cross_frame="visual.transformer.resblocks.0.message_fc.weight" in state,
        use_mit="mit.positional_embedding" in state,
        use_prompt="prompts_generator.alpha" in state,
    )
    if values["use_mit"]:
      checkpoint_frames = _shape(state, "mit.positional_embedding", source_name)[1]
      if frames is not None and frames != checkpoint_frames:
        raise r.ConversionError(f"{source_name} was trained with {checkpoint_frames} frames (mit.positional_embedding"
                                f" {_shape(state, 'mit.positional_embedding', source_name)}), but --frames={frames}.")
      values.update(num_frames=checkpoint_frames,
                    mit_layers=_count(state, r"mit\.resblocks\.(\d+)\.attn\.in_proj_weight"),
                    mit_mlp_dim=_shape(state, "mit.resblocks.0.mlp.c_fc.weight", source_name)[0])
    if values["use_prompt"]:
      values["prompt_layers"] = _count(state, r"prompts_generator\.decoder\.(\d+)\.norm1\.weight")
  return ModelConfig(**values)

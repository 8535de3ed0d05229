"""HuggingFace `XCLIPModel` layout: config.json <-> ModelConfig and state-dict keys <-> our parameters.

HF splits every attention into q/k/v/out Linear layers, stores the two projections as Linear layers
(transposed) and reads the MIT and prompt-generator head counts from its config (which may differ from
the official width // 64, e.g. on the large models).
"""

from __future__ import annotations

from typing import Any

from xclip_jax.conversion import rules as r
from xclip_jax.models.config import ModelConfig

# Defaults of transformers' XCLIP configs, for config.json files that omit fields.
_TEXT_DEFAULTS = dict(vocab_size=49408, hidden_size=512, intermediate_size=2048, num_hidden_layers=12,
                      num_attention_heads=8, max_position_embeddings=77, hidden_act="quick_gelu",
                      layer_norm_eps=1e-5)
_VISION_DEFAULTS = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                        mit_hidden_size=512, mit_intermediate_size=2048, mit_num_hidden_layers=1,
                        mit_num_attention_heads=8, image_size=224, patch_size=32, num_frames=8,
                        hidden_act="quick_gelu", layer_norm_eps=1e-5, num_channels=3)
_TOP_DEFAULTS = dict(projection_dim=512, prompt_layers=2, prompt_alpha=0.1, prompt_hidden_act="quick_gelu",
                     prompt_num_attention_heads=8)
# Non-persistent buffers that some saved state dicts still contain.
IGNORED_KEYS = ("text_model.embeddings.position_ids", "vision_model.embeddings.position_ids")


def config_from_hf(hf: dict[str, Any], *, source_name: str, frames: int | None = None) -> ModelConfig:
  """Builds our config from an HF XCLIPConfig dict (config.json)."""
  if hf.get("model_type") not in (None, "xclip"):
    raise r.ConversionError(f"{source_name}: model_type is {hf.get('model_type')!r}, expected 'xclip'.")
  text = {**_TEXT_DEFAULTS, **(hf.get("text_config") or {})}
  vision = {**_VISION_DEFAULTS, **(hf.get("vision_config") or {})}
  top = {**_TOP_DEFAULTS, **hf}
  for where, act in (("text_config.hidden_act", text["hidden_act"]), ("vision_config.hidden_act", vision["hidden_act"]),
                     ("prompt_hidden_act", top["prompt_hidden_act"])):
    if act != "quick_gelu":
      raise r.ConversionError(f"{source_name}: {where} is {act!r}; X-CLIP uses quick_gelu throughout.")
  if vision["mit_hidden_size"] != top["projection_dim"]:
    raise r.ConversionError(f"{source_name}: vision_config.mit_hidden_size ({vision['mit_hidden_size']}) must equal "
                            f"projection_dim ({top['projection_dim']}); the MIT adds its output to its input.")
  if frames is not None and frames != vision["num_frames"]:
    raise r.ConversionError(f"{source_name} was built for {vision['num_frames']} frames "
                            f"(vision_config.num_frames) but --frames={frames}.")
  image_size, patch_size = vision["image_size"], vision["patch_size"]
  if isinstance(image_size, list | tuple):
    image_size = image_size[0]
  if isinstance(patch_size, list | tuple):
    patch_size = patch_size[0]
  return ModelConfig(
      image_size=image_size, patch_size=patch_size, vision_width=vision["hidden_size"],
      vision_layers=vision["num_hidden_layers"], vision_heads=vision["num_attention_heads"],
      vision_mlp_dim=vision["intermediate_size"], text_width=text["hidden_size"],
      text_layers=text["num_hidden_layers"], text_heads=text["num_attention_heads"],
      text_mlp_dim=text["intermediate_size"], vocab_size=text["vocab_size"],
      context_length=text["max_position_embeddings"], embed_dim=top["projection_dim"],
      num_frames=vision["num_frames"], mit_layers=vision["mit_num_hidden_layers"],
      mit_heads=vision["mit_num_attention_heads"], mit_mlp_dim=vision["mit_intermediate_size"],
      prompt_layers=top["prompt_layers"], prompt_heads=top["prompt_num_attention_heads"],
      prompt_alpha=float(top["prompt_alpha"]), layer_norm_eps=float(vision["layer_norm_eps"]),
  )


def config_to_hf(config: ModelConfig) -> dict[str, Any]:
  """An HF XCLIPConfig dict that `XCLIPModel.from_pretrained` rebuilds our architecture from."""
  if not (config.use_cross_frame and config.use_mit and config.use_prompt):
    raise r.ConversionError("HF XCLIPModel has no ablation switches: only models with cross-frame communication, "
                            "MIT and prompt generator enabled can be exported to HF.")
  return {
      "architectures": ["XCLIPModel"],
      "model_type": "xclip",
      "projection_dim": config.embed_dim,
      "prompt_layers": config.prompt_layers,
      "prompt_alpha": config.prompt_alpha,
      "prompt_hidden_act": "quick_gelu",
      "prompt_num_attention_heads": config.prompt_heads,
      "prompt_attention_dropout": 0.0,
      "prompt_projection_dropout": 0.0,
      "logit_scale_init_value": 2.6592,
      "text_config": {
          "model_type": "xclip_text_model", "vocab_size": config.vocab_size, "hidden_size": config.text_width,
          "intermediate_size": config.text_mlp_dim, "num_hidden_layers": config.text_layers,
          "num_attention_heads": config.text_heads, "max_position_embeddings": config.context_length,
          "hidden_act": "quick_gelu", "layer_norm_eps": config.layer_norm_eps,
      },
      "vision_config": {
          "model_type": "xclip_vision_model", "hidden_size": config.vision_width,
          "intermediate_size": config.vision_mlp_dim, "num_hidden_layers": config.vision_layers,
          "num_attention_heads": config.vision_heads, "image_size": config.image_size,
          "patch_size": config.patch_size, "num_frames": config.num_frames, "num_channels": 3,
          "mit_hidden_size": config.embed_dim, "mit_intermediate_size": config.mit_mlp_dim,
          "mit_num_hidden_layers": config.mit_layers, "mit_num_attention_heads": config.mit_heads,
          "hidden_act": "quick_gelu", "layer_norm_eps": config.layer_norm_eps, "drop_path_rate": 0.0,
      },
  }


def _hf_block_rules(source: str, target: r.Path) -> list[r.Rule]:
  """HF's CLIP encoder layer: self_attn (split q/k/v), layer_norm1, mlp.fc1/fc2, layer_norm2."""
  return (r.split_attention(f"{source}.self_attn", target + ("attn",))
          + r.layer_norm(f"{source}.layer_norm1", target + ("ln_1",))
          + r.linear(f"{source}.mlp.fc1", target + ("mlp", "fc1"))
          + r.linear(f"{source}.mlp.fc2", target + ("mlp", "fc2"))
          + r.layer_norm(f"{source}.layer_norm2", target + ("ln_2",)))


def hf_rules(config: ModelConfig) -> list[r.Rule]:
  """Every tensor of an HF XCLIPModel state dict, for a config with all X-CLIP modules enabled."""
  rules = (r.conv_kernel("vision_model.embeddings.patch_embedding.weight", ("visual", "conv1"))
           + r.copy("vision_model.embeddings.class_embedding", ("visual", "class_embedding"))
           + r.copy("vision_model.embeddings.position_embedding.weight", ("visual", "positional_embedding"))
           + r.layer_norm("vision_model.pre_layernorm", ("visual", "ln_pre")))
  for i in range(config.vision_layers):
    source, target = f"vision_model.encoder.layers.{i}", ("visual", "resblocks", i)
    rules += (_hf_block_rules(source, target)
              + r.linear(f"{source}.message_fc", target + ("message_fc",))
              + r.layer_norm(f"{source}.message_ln", target + ("message_ln",))
              + r.split_attention(f"{source}.message_attn", target + ("message_attn",)))
  rules += (r.layer_norm("vision_model.post_layernorm", ("visual", "ln_post"))
            + r.transposed("visual_projection.weight", ("visual", "proj"))
            + r.copy("text_model.embeddings.token_embedding.weight", ("text", "token_embedding"))
            + r.copy("text_model.embeddings.position_embedding.weight", ("text", "positional_embedding")))
  for i in range(config.text_layers):
    rules += _hf_block_rules(f"text_model.encoder.layers.{i}", ("text", "transformer", "resblocks", i))
  rules += (r.layer_norm("text_model.final_layer_norm", ("text", "ln_final"))
            + r.transposed("text_projection.weight", ("text", "text_projection"))
            + r.copy("logit_scale", ("logit_scale",))
            + r.copy("mit.position_embedding", ("mit", "positional_embedding")))
  for i in range(config.mit_layers):
    rules += _hf_block_rules(f"mit.encoder.layers.{i}", ("mit", "transformer", "resblocks", i))
  rules += (r.layer_norm("prompts_visual_layernorm", ("prompts_visual_ln",))
            + r.copy("prompts_visual_projection", ("prompts_visual_proj",))
            + r.layer_norm("prompts_generator.layernorm", ("prompts_generator", "norm")))
  for j in range(config.prompt_layers):
    source, target = f"prompts_generator.decoder.{j}", ("prompts_generator", "decoder", j)
    rules += (r.split_attention(f"{source}.cross_attn", target + ("cross_attn",),
                                names=("q_proj", "k_proj", "v_proj", "proj"), qkv_bias=False)
              + r.layer_norm(f"{source}.norm1", target + ("norm1",))
              + r.layer_norm(f"{source}.norm3", target + ("norm3",))
              + r.linear(f"{source}.mlp.0", target + ("mlp", "fc1"))
              + r.linear(f"{source}.mlp.3", target + ("mlp", "fc2")))
  return rules + r.copy("prompts_generator.alpha", ("prompts_generator", "alpha"))

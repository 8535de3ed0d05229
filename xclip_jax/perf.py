"""Model cost accounting: FLOPs per view as the X-CLIP paper counted them, and parameter counts.

FLOP convention (paper Tab. 1, VideoX issue #66): fvcore's `FlopCountAnalysis` on one video (1, T, 3, H, W)
plus ONE 77-token text, traced with PyTorch 1.11. fvcore counts one *multiply-add* as one "flop" and only
handles the ops in its `_DEFAULT_SUPPORTED_OPS` table (fvcore/nn/flop_count.py); everything else is skipped
with a warning. What that means for X-CLIP:

Counted (multiply-adds):
  * `aten::linear` / `aten::addmm` / `aten::matmul` / `aten::mm`: prod(input shape) x out_features, so biases
    are free. Covers every nn.Linear, the packed q/k/v in-projection and out-projection of
    `nn.MultiheadAttention`, `ln_post(..) @ proj`, `@ prompts_visual_proj`, `@ text_projection`, and the
    prompt generator's `q @ k^T` and `attn @ v` (4-D `@`).
  * `aten::bmm`: PyTorch 1.11's `_scaled_dot_product_attention` does `bmm(q, k^T)`, then `attn += mask`,
    then `bmm(attn, v)`, so both attention products count, the text tower's causal one included. (PyTorch
    >= 1.12 uses `baddbmm(mask, q, k^T)` for masked attention, which fvcore does not count; that would drop
    12 x 77^2 x W_t multiply-adds, ~0.04 GFLOPs for B, ~0.05 for L: immaterial.)
  * `aten::_convolution`: batch x prod(kernel shape) x prod(output spatial), i.e. the patch embedding as a
    matmul.
  * `aten::einsum`: the final `einsum("bd,bkd->bk")` (numpy's einsum_path count / 2 = B x K x E).
  * `aten::layer_norm` (present since fvcore 2021-03, before the paper): 5 x numel(input) with an affine
    transform. Every LayerNorm call is counted where it is *called*: the CCT block calls `message_ln` three
    times (separately for q, k and v), so it counts three times; the prompt generator's `norm1` once.

Not counted (no handle in fvcore's table): softmax, QuickGELU (sigmoid, mul), residual adds, positional
embedding adds, the attention scale and mask add, `mean` over frames/tokens, `norm` and the division of the
L2 normalisation, `exp(logit_scale)` and its product, embedding lookup, argmax/indexing, reshapes, concat.
`nn.MultiheadAttention` in PyTorch 1.11 has no fused fast path, so its projections and bmm's are all seen.

With this, `flops_per_view` is within 0.3% of every row of the paper's Tab. 1 (B/32: +0.15%/+0.10%,
B/16: +0.05%/-0.02%, L/14-8: +0.24%, L/14@336-16: -0.27%) and of the README's 571 GFLOPs for B/16-32.

XLA's `cost_analysis()['flops']` counts 2 per multiply-add of every dot *and* one per elementwise op
(softmax, QuickGELU, residual adds, LayerNorm arithmetic). Measured on CPU, XLA / (2 x this count) is
1.002-1.003 for the B and L variants (elementwise work is O(width) per token against O(width^2)
multiply-adds; 1.02-1.04 for the width-64 test config). See `xla_flops` and tests/test_perf.py.
"""

from __future__ import annotations

import collections
import functools
from collections.abc import Callable

import numpy as np

from xclip_jax.models.config import ModelConfig, variant_config

# fvcore norm_flop_counter: 5 flops per element with an affine transform (4 without).
LAYER_NORM_FLOPS_PER_ELEMENT = 5

# Paper Tab. 1 (K400, GFLOPs per view), keyed by (variant, frames).
PAPER_GFLOPS = {
    ("B/32", 8): 39.0,
    ("B/32", 16): 75.0,
    ("B/16", 8): 145.0,
    ("B/16", 16): 287.0,
    ("L/14", 8): 658.0,
    ("L/14@336", 16): 3086.0,
    ("B/16", 32): 571.0,  # README model zoo (zero-/few-shot models), not Tab. 1.
}


def _config(variant: str | ModelConfig, frames: int | None) -> ModelConfig:
  if isinstance(variant, ModelConfig):
    return variant if frames is None else variant.replace(num_frames=frames)
  return variant_config(variant, frames=8 if frames is None else frames)


def _linear(tokens: int, d_in: int, d_out: int) -> int:
  return tokens * d_in * d_out


def _attention_products(groups: int, q_len: int, kv_len: int, width: int) -> int:
  """q k^T plus attn v over all heads: 2 x Lq x Lk x width per group (batch element)."""
  return 2 * groups * q_len * kv_len * width


def _self_attention(groups: int, length: int, width: int) -> int:
  """nn.MultiheadAttention: q/k/v in-projection, the two bmm's and the out-projection."""
  tokens = groups * length
  return 4 * _linear(tokens, width, width) + _attention_products(groups, length, length, width)


def _mlp(tokens: int, width: int, hidden: int) -> int:
  return _linear(tokens, width, hidden) + _linear(tokens, hidden, width)


def flops_breakdown(config: ModelConfig, *, num_classes: int = 1, count_layer_norm: bool = True
                    ) -> dict[str, float]:
  """Multiply-adds per component for one video plus `num_classes` texts (fvcore convention).

  The paper's numbers are `num_classes=1`. With K classes the text tower runs K times and the prompt
  generator has K queries; the video tower is unchanged. `count_layer_norm=False` leaves only the
  matmul/conv/einsum multiply-adds (the usual MFU numerator, and a strict lower bound of XLA's count / 2).
  """
  norm_factor = LAYER_NORM_FLOPS_PER_ELEMENT if count_layer_norm else 0

  def _layer_norm(elements: int) -> int:
    return norm_factor * elements

  def _residual_block(groups: int, length: int, width: int, hidden: int) -> int:
    """CLIP's pre-LN ResidualAttentionBlock (text tower, MIT)."""
    tokens = groups * length
    return (_layer_norm(tokens * width) + _self_attention(groups, length, width)
            + _layer_norm(tokens * width) + _mlp(tokens, width, hidden))

  c = config
  frames, width, patch = c.num_frames, c.vision_width, c.patch_size
  patches = c.num_patches
  length = patches + 1  # class + patch tokens per frame
  embed = c.embed_dim
  counts: dict[str, int] = collections.OrderedDict()

  # Vision tower, one frame batch of T frames.
  counts["vision.patch_embed"] = frames * patches * (3 * patch * patch) * width + _layer_norm(frames * length * width)
  attn_length = length + 1 if c.use_cross_frame else length  # message token joins the intra-frame attention
  per_layer_message = 0
  if c.use_cross_frame:
    per_layer_message = (_linear(frames, width, width)  # message_fc on the class tokens
                         + 3 * _layer_norm(frames * width)  # message_ln called separately for q, k and v
                         + _self_attention(1, frames, width))  # attention over the T message tokens
  counts["vision.message"] = c.vision_layers * per_layer_message
  counts["vision.attention"] = c.vision_layers * (_layer_norm(frames * attn_length * width)
                                                  + _self_attention(frames, attn_length, width))
  counts["vision.mlp"] = c.vision_layers * (_layer_norm(frames * length * width)
                                            + _mlp(frames * length, width, c.vision_mlp_dim))
  counts["vision.head"] = _layer_norm(frames * width) + _linear(frames, width, embed)  # ln_post, proj

  # Video-level modules.
  counts["prompts.visual_proj"] = (
      _layer_norm(frames * patches * width) + _linear(frames * patches, width, embed) if c.use_prompt else 0)
  counts["mit"] = c.mit_layers * _residual_block(1, frames, embed, c.mit_mlp_dim) if c.use_mit else 0

  # Text tower: K sequences of context_length tokens (padding included: the model always runs all 77).
  text_tokens = num_classes * c.context_length
  counts["text"] = (c.text_layers * _residual_block(num_classes, c.context_length, c.text_width, c.text_mlp_dim)
                    + _layer_norm(text_tokens * c.text_width) + _linear(num_classes, c.text_width, embed))

  # Prompt generator: K class queries attend to the N frame-averaged patch tokens of the video.
  prompt = 0
  if c.use_prompt:
    prompt = _layer_norm(patches * embed)  # `norm` on the visual context, once
    per_layer = (_layer_norm(num_classes * embed)  # norm1
                 + _linear(num_classes, embed, embed)  # q_proj on the class embeddings
                 + 2 * _linear(patches, embed, embed)  # k_proj and v_proj act on the N context tokens
                 + _attention_products(1, num_classes, patches, embed)
                 + _linear(num_classes, embed, embed)  # proj
                 + _layer_norm(num_classes * embed)  # norm3
                 + _mlp(num_classes, embed, 4 * embed))
    prompt += c.prompt_layers * per_layer
  counts["prompts.generator"] = prompt
  counts["similarity"] = num_classes * embed  # einsum("bd,bkd->bk")
  return {name: float(value) for name, value in counts.items()}


def flops_per_view(variant: str | ModelConfig, frames: int | None = None, *, num_classes: int = 1,
                   count_layer_norm: bool = True) -> float:
  """Multiply-adds ("FLOPs" as fvcore and the paper count them) of one view: one video + one text.

  Args:
    variant: a named variant ("B/16", ...) or a `ModelConfig` (its ablation switches are honoured).
    frames: frames per clip; default 8 for a name, the config's own for a `ModelConfig`.
    num_classes: texts per view; the paper's numbers use 1.
    count_layer_norm: fvcore counts 5 per LayerNorm element; False gives matmul multiply-adds only.
  """
  breakdown = flops_breakdown(_config(variant, frames), num_classes=num_classes, count_layer_norm=count_layer_norm)
  return sum(breakdown.values())


def format_flops_breakdown(config: ModelConfig, *, num_classes: int = 1) -> str:
  """A small table of GFLOPs (multiply-adds) and shares per component."""
  breakdown = flops_breakdown(config, num_classes=num_classes)
  total = sum(breakdown.values())
  lines = [f"{'component':<22}{'GFLOPs':>10}{'share':>9}"]
  lines += [f"{name:<22}{value / 1e9:>10.3f}{value / total:>9.2%}" for name, value in breakdown.items()]
  lines.append(f"{'total':<22}{total / 1e9:>10.3f}{1:>9.2%}")
  return "\n".join(lines)


def print_flops_breakdown(config: ModelConfig, *, num_classes: int = 1) -> None:
  print(format_flops_breakdown(config, num_classes=num_classes))


@functools.lru_cache(maxsize=8)
def _abstract_model(config: ModelConfig):
  """The model with ShapeDtypeStruct parameters: nothing is allocated, even for L/14@336.

  Cached (callers here only read it): tracing the constructor still takes ~0.5 s for L/14 on 2 CPU cores
  (it took ~8 s while nnx.Rngs counted the draws; see `xclip_jax.models.layers.KeySequence`).
  """
  from flax import nnx

  from xclip_jax.models.xclip import create_model

  return nnx.eval_shape(lambda: create_model(config))


def xla_cost_analysis(config: ModelConfig, *, num_classes: int = 1, compile: bool = True) -> dict[str, float]:
  """XLA's cost analysis of the jitted forward of one view (B=1, K texts), built from abstract inputs.

  With `compile=True` the optimised HLO is analysed (what runs); otherwise the lowered, unoptimised one.
  Nothing is executed and no parameter is materialised.
  """
  import jax
  import jax.numpy as jnp
  from flax import nnx

  graphdef, state = nnx.split(_abstract_model(config))

  def forward(state, videos, tokens):
    return nnx.merge(graphdef, state)(videos, tokens)

  videos = jax.ShapeDtypeStruct((1, config.num_frames, config.image_size, config.image_size, 3), jnp.float32)
  tokens = jax.ShapeDtypeStruct((num_classes, config.context_length), jnp.int32)
  stage = jax.jit(forward).lower(state, videos, tokens)
  if compile:
    stage = stage.compile()
  costs = stage.cost_analysis()
  if isinstance(costs, list | tuple):  # older jax returned one dict per computation
    costs = costs[0]
  return {key: float(value) for key, value in costs.items()}


def xla_flops(config: ModelConfig, *, num_classes: int = 1, compile: bool = True) -> float:
  """XLA's FLOP count of one view (2 per multiply-add, plus elementwise work)."""
  return xla_cost_analysis(config, num_classes=num_classes, compile=compile)["flops"]


# Parameter groups, following the official optimizer's name rules (`utils/optimizer.py`).
PARAM_GROUPS = ("visual", "message", "mit", "prompts", "text", "logit_scale")


def _param_group(path: tuple) -> str:
  names = [str(part) for part in path]
  top = names[0]
  if top == "visual":
    return "message" if any(name.startswith("message_") for name in names) else "visual"
  if top.startswith("prompts"):
    return "prompts"
  if top in ("mit", "text", "logit_scale"):
    return top
  raise ValueError(f"Parameter {'/'.join(names)} belongs to no known group; update xclip_jax.perf.")


def count_parameters(config: ModelConfig) -> dict[str, int]:
  """Parameter counts per group, read from the model's abstract NNX state (no formulas, no allocation).

  Groups: `visual` (CLIP's vision tower without the cross-frame message modules), `message`
  (message_fc/ln/attn of every CCT block), `mit`, `prompts` (prompts_visual_ln/proj + generator), `text`
  (CLIP's text tower incl. projection), `logit_scale`; plus `clip` = visual + text + logit_scale (what
  OpenAI's CLIP has) and `total`.
  """
  from flax import nnx

  state = nnx.state(_abstract_model(config), nnx.Param)
  counts = dict.fromkeys(PARAM_GROUPS, 0)
  for path, leaf in nnx.to_flat_state(state):
    value = leaf.get_value() if hasattr(leaf, "get_value") else leaf.value
    counts[_param_group(path)] += int(np.prod(value.shape, dtype=np.int64))
  counts["clip"] = counts["visual"] + counts["text"] + counts["logit_scale"]
  counts["total"] = sum(counts[group] for group in PARAM_GROUPS)
  return counts


def format_table(rows: list[dict[str, object]], columns: list[tuple[str, str, Callable[[object], str]]]) -> str:
  """Fixed-width table: columns are (key, header, formatter)."""
  cells = [[header for _, header, _ in columns]]
  cells += [[fmt(row[key]) for key, _, fmt in columns] for row in rows]
  widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
  return "\n".join("  ".join(cell.rjust(width) for cell, width in zip(line, widths, strict=True))
                   for line in cells)

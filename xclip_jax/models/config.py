"""X-CLIP model configuration and the named variants.

A `ModelConfig` fully describes the architecture (what a checkpoint needs to be rebuilt) plus a few
run-time options (compute dtype, rematerialisation, drop path, attention backend) that do not change
parameter shapes. Converted checkpoints store it as JSON next to the parameters.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

# Released X-CLIP settings (official `xclip.load` defaults, not the `XCLIP.__init__` ones):
# 1 MIT layer, 2 prompt-generator layers, alpha initialised to 0.1.
DEFAULT_MIT_LAYERS = 1
DEFAULT_PROMPT_LAYERS = 2
DEFAULT_PROMPT_ALPHA = 0.1
SUPPORTED_FRAMES = (8, 16, 32)

# Fields that describe how the model runs, not what its parameters are.
ATTENTION_IMPLEMENTATIONS = ("auto", "xla", "cudnn", "heads_first")  # models/layers.py attention_backend
RUNTIME_FIELDS = ("dtype", "remat", "drop_path_rate", "attention_implementation", "scan_layers")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Architecture and run-time options of an X-CLIP model.

  Attributes mirror the official names where possible; every attention head count is explicit because
  HuggingFace configs may differ from the official `width // 64` rule (MIT and prompt generator).
  """

  # Vision tower (CLIP ViT with cross-frame communication).
  image_size: int = 224
  patch_size: int = 16
  vision_width: int = 768
  vision_layers: int = 12
  vision_heads: int = 12
  vision_mlp_dim: int = 3072
  # Text tower (CLIP text transformer).
  text_width: int = 512
  text_layers: int = 12
  text_heads: int = 8
  text_mlp_dim: int = 2048
  vocab_size: int = 49408
  context_length: int = 77
  # Joint embedding.
  embed_dim: int = 512
  # Video-level modules.
  num_frames: int = 8
  mit_layers: int = DEFAULT_MIT_LAYERS
  mit_heads: int = 8
  mit_mlp_dim: int = 2048
  prompt_layers: int = DEFAULT_PROMPT_LAYERS
  prompt_heads: int = 8
  prompt_alpha: float = DEFAULT_PROMPT_ALPHA
  layer_norm_eps: float = 1e-5
  # Initial std of the video tower's position embeddings: the ViT's spatial one and the MIT's temporal one
  # (the only signal of frame order: message tokens attend across frames without one). 0 = the official
  # init (CLIP's width**-0.5; trunc-normal 0.02), made for fine-tuning a pretrained CLIP. Trained from scratch
  # (the demo), motion is learned late and by luck unless they start at the scale of the tokens they are
  # added to (about 1). Only the initialisation depends on it.
  video_position_init_std: float = 0.0
  # Ablation switches of the paper (Tab. 6). All three off gives CLIP with mean pooling over frames.
  use_cross_frame: bool = True
  use_mit: bool = True
  use_prompt: bool = True
  # Run-time options (do not change parameter shapes).
  # Compute dtype: "float32" or "bfloat16". Parameters stay float32; only a model loaded for inference holds
  # its products' weights in this dtype (layers.store_weights_in_compute_dtype).
  dtype: str = "float32"
  remat: bool = False  # rematerialise each transformer block in the backward pass.
  drop_path_rate: float = 0.0  # stochastic depth, linear schedule over vision layers (official: 0).
  # "auto" (cuDNN on GPU when it applies, heads_first on CPU, else xla), "xla", "cudnn" or "heads_first".
  attention_implementation: str = "auto"
  # Stack each tower's block parameters (leading layer axis) and run them with lax.scan: one compiled block
  # per tower instead of one per layer. Saved models and converters keep the per-layer layout.
  scan_layers: bool = False

  def __post_init__(self):
    checks = [
        (self.image_size % self.patch_size == 0, "image_size must be a multiple of patch_size"),
        (self.vision_width % self.vision_heads == 0, "vision_width must be divisible by vision_heads"),
        (self.text_width % self.text_heads == 0, "text_width must be divisible by text_heads"),
        (self.embed_dim % self.mit_heads == 0, "embed_dim must be divisible by mit_heads"),
        (self.embed_dim % self.prompt_heads == 0, "embed_dim must be divisible by prompt_heads"),
        (self.num_frames >= 1, "num_frames must be >= 1"),
        (self.video_position_init_std >= 0, "video_position_init_std must be >= 0 (0: official init)"),
        (self.dtype in ("float32", "bfloat16", "float16"), "dtype must be float32, bfloat16 or float16"),
        (self.attention_implementation in ATTENTION_IMPLEMENTATIONS,
         f"attention_implementation must be one of {', '.join(ATTENTION_IMPLEMENTATIONS)}"),
        (0.0 <= self.drop_path_rate < 1.0, "drop_path_rate must be in [0, 1)"),
    ]
    for ok, message in checks:
      if not ok:
        raise ValueError(f"Invalid ModelConfig: {message} (got {self.describe()}).")

  @property
  def grid_size(self) -> int:
    return self.image_size // self.patch_size

  @property
  def num_patches(self) -> int:
    return self.grid_size**2

  def describe(self) -> str:
    return (f"image {self.image_size}, patch {self.patch_size}, vision {self.vision_width}x"
            f"{self.vision_layers} ({self.vision_heads} heads), text {self.text_width}x{self.text_layers} "
            f"({self.text_heads} heads), embed {self.embed_dim}, frames {self.num_frames}, "
            f"mit heads {self.mit_heads}, prompt heads {self.prompt_heads}, dtype {self.dtype}")

  def replace(self, **changes: Any) -> ModelConfig:
    return dataclasses.replace(self, **changes)

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, values: dict[str, Any], source: str = "config") -> ModelConfig:
    """Builds a config, naming unknown or badly typed fields instead of failing deep inside."""
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
      raise ValueError(f"{source}: unknown model config field(s) {unknown}; known fields: {sorted(known)}.")
    cleaned = {}
    for name, value in values.items():
      expected = type(getattr(cls(), name))
      if expected is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
      if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        raise ValueError(f"{source}: field '{name}' must be {expected.__name__}, got {value!r}.")
      cleaned[name] = value
    return cls(**cleaned)


# Width, layers, heads of CLIP's vision towers and the matching text tower / joint embedding.
_VISION_SIZES = {
    # name: (vision width, vision layers, text width, embed dim)
    "B": (768, 12, 512, 512),
    "L": (1024, 24, 768, 768),
}
_TINY = dict(
    image_size=32, patch_size=8, vision_width=64, vision_layers=2, vision_heads=2, vision_mlp_dim=256,
    text_width=64, text_layers=2, text_heads=2, text_mlp_dim=256, embed_dim=32, mit_heads=2, mit_mlp_dim=128,
    prompt_heads=2,
)
VARIANTS = ("B/32", "B/16", "L/14", "L/14@336", "tiny")


def variant_config(variant: str, frames: int = 8, **overrides: Any) -> ModelConfig:
  """Returns the released X-CLIP architecture for a CLIP variant name.

  Args:
    variant: "B/32", "B/16", "L/14", "L/14@336" (as OpenAI names them) or "tiny" (tests, demo).
    frames: frames per clip; the released models use 8, 16 or 32 (tiny accepts any).
    **overrides: any `ModelConfig` field, e.g. `dtype="bfloat16"` or `use_mit=False`.
  """
  if variant == "tiny":
    return ModelConfig(num_frames=frames, **{**_TINY, **overrides})
  match = re.fullmatch(r"([BL])/(\d+)(?:@(\d+))?", variant)
  if match is None or variant not in VARIANTS:
    raise ValueError(f"Unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}.")
  if frames not in SUPPORTED_FRAMES:
    raise ValueError(f"Variant {variant} is released with {SUPPORTED_FRAMES} frames, got frames={frames}.")
  size, patch, resolution = match.group(1), int(match.group(2)), int(match.group(3) or 224)
  vision_width, vision_layers, text_width, embed_dim = _VISION_SIZES[size]
  base = dict(
      image_size=resolution, patch_size=patch,
      vision_width=vision_width, vision_layers=vision_layers, vision_heads=vision_width // 64,
      vision_mlp_dim=4 * vision_width,
      text_width=text_width, text_layers=12, text_heads=text_width // 64, text_mlp_dim=4 * text_width,
      embed_dim=embed_dim, num_frames=frames,
      # Official heads rule: width // 64 for the MIT and the prompt generator too.
      mit_heads=embed_dim // 64, mit_mlp_dim=4 * embed_dim, prompt_heads=embed_dim // 64,
  )
  return ModelConfig(**{**base, **overrides})

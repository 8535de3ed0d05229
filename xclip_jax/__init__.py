"""xclip_jax: X-CLIP video recognition (Ni et al., ECCV 2022) in JAX/Flax.

    import xclip_jax
    model = xclip_jax.load_model("ckpt/xclip_b16_8f")
    text = model.encode_text(xclip_jax.tokenize(["archery", "juggling balls"]))
    logits = model(videos, text_features=text)  # videos: (B, T, H, W, 3) float32, ImageNet-normalised
"""

from xclip_jax.inference import InferenceModel, load_model, normalize_frames
from xclip_jax.models import VARIANTS, XCLIP, ModelConfig, create_model, variant_config
from xclip_jax.tokenizer import tokenize

__all__ = [
    "VARIANTS", "XCLIP", "InferenceModel", "ModelConfig", "create_model", "load_model", "normalize_frames",
    "tokenize", "variant_config",
]

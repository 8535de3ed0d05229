"""X-CLIP model definition in Flax NNX."""

from xclip_jax.models.config import VARIANTS, ModelConfig, variant_config
from xclip_jax.models.xclip import XCLIP, VideoFeatures, create_model

__all__ = ["VARIANTS", "XCLIP", "ModelConfig", "VideoFeatures", "create_model", "variant_config"]

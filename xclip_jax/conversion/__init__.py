"""Checkpoint conversion between OpenAI CLIP, official X-CLIP, HuggingFace and xclip_jax."""

from xclip_jax.conversion.convert import SOURCES, TARGETS, export_checkpoint, import_checkpoint
from xclip_jax.conversion.rules import ConversionError

__all__ = ["SOURCES", "TARGETS", "ConversionError", "export_checkpoint", "import_checkpoint"]

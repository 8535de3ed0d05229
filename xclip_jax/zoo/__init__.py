"""Released X-CLIP and CLIP models by name: `xclip_jax.load_model("microsoft/xclip-base-patch32")`.

    xclip_jax.available_models()             # every name, with architecture, frames, resolution, accuracy
    xclip_jax.load_model("k400_16_8")        # official release file; also any HF XCLIP repo id
    xclip_jax.load_model("openai:ViT-B/16", frames=8)   # CLIP turned into X-CLIP (new modules initialised)
    python -m xclip_jax.zoo list | download NAME

Files are downloaded once (checked, atomically) and converted once into `$XCLIP_JAX_CACHE`
(default ~/.cache/xclip_jax); HF repos go through huggingface_hub and its cache.

registry: the names; download: one file into the cache; hub: HuggingFace access; cache: where things go;
fetch: name -> converted directory; datasets: small labelled video sets by name (`sample_dataset`); cli: the
command line. Importing this package is light (no JAX).
"""

from xclip_jax.zoo.cache import cache_dir
from xclip_jax.zoo.datasets import SAMPLE_DATASETS, sample_dataset
from xclip_jax.zoo.errors import DownloadError, UnknownModelError, ZooError
from xclip_jax.zoo.fetch import fetch, resolve
from xclip_jax.zoo.hub import SAMPLE_VIDEO_LABELS, sample_video
from xclip_jax.zoo.registry import ModelInfo, available_models, find_model, register_model, unregister_model

__all__ = ["SAMPLE_DATASETS", "SAMPLE_VIDEO_LABELS", "DownloadError", "ModelInfo", "UnknownModelError", "ZooError",
           "available_models", "cache_dir", "fetch", "find_model", "register_model", "resolve", "sample_dataset",
           "sample_video", "unregister_model"]

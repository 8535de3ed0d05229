"""xclip_jax: X-CLIP video recognition in JAX/Flax."""

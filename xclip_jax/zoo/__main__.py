"""`python -m xclip_jax.zoo`: see xclip_jax/zoo/cli.py."""

from xclip_jax import cli
from xclip_jax.zoo.cli import main

cli.run(main, prog="xclip_jax.zoo")

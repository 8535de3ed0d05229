"""python -m xclip_jax.search index|query|info (see xclip_jax/search/cli.py)."""

from xclip_jax import cli
from xclip_jax.search.cli import main

if __name__ == "__main__":
  cli.run(main, prog="xclip_jax.search", interrupted="the parts of an index written so far are kept and the same "
                                                     "command continues from them")

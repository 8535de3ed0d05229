"""python -m xclip_jax.search index|query|info (see xclip_jax/search/cli.py)."""

import sys

from xclip_jax.search.cli import main

if __name__ == "__main__":
  sys.exit(main())

"""`python -m xclip_jax.zoo`: see xclip_jax/zoo/cli.py."""

import sys

from xclip_jax.zoo.cli import main

sys.exit(main())

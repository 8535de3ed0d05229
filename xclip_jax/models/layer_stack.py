"""A stack of blocks of one structure: built in one vectorised step, run as a loop or as a scan.

Two layouts of the same parameters (`ModelConfig.scan_layers`):
  * per layer (default): an `nnx.List` of block modules, parameters at `.../resblocks/<i>/...`, applied
    by a Python loop, so the compiled program holds one copy of the block per layer;
  * stacked: one block module whose parameters have a leading layer axis (logical axis `layers`), at
    `.../resblocks/...`, applied with `jax.lax.scan`: one compiled body for all layers (as MaxText's
    scan_layers), which compiles faster for deep towers.
Checkpoint files and converters always use the per-layer layout; `xclip_jax.models.params` converts.

Either way the blocks are initialised together: one `jax.vmap`-ed constructor, layer i drawing the keys
that a sequential `[make_block(rngs) for _ in range(count)]` would have given it (it starts where layer
i - 1 stopped), so the values do not depend on the layout, and an initialisation program holds one random
draw per parameter of a block instead of one per parameter of every layer (faster to compile).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from xclip_jax import sharding
from xclip_jax.models import layers

STACK_KEY = "resblocks"  # the attribute holding a stack, in every tower


def init_blocks(make_block: Callable[[layers.KeySequence], nnx.Module], count: int, rngs: layers.KeySequence, *,
                stacked: bool) -> nnx.Module:
  """`count` blocks from `make_block(rngs)`: an nnx.List of per-layer modules, or one stacked module."""
  probe = layers.KeySequence(rngs.key)
  jax.eval_shape(lambda: nnx.state(make_block(probe)))  # jax's, not nnx's: no mesh lookups of axis names
  draws = probe.count  # keys drawn by one block
  offsets = rngs.skip(count * draws) + draws * jnp.arange(count, dtype=jnp.uint32)
  graphdefs = []

  def init(offset: jax.Array) -> nnx.State:
    graphdef, state = nnx.split(make_block(layers.KeySequence(rngs.key, offset)))
    graphdefs.append(graphdef)
    return state

  state = jax.vmap(init)(offsets)
  graphdef = graphdefs[0]
  if stacked:
    state = jax.tree.map(_add_layer_axis, state, is_leaf=lambda x: isinstance(x, nnx.Variable))
    return nnx.merge(graphdef, state)
  return nnx.List([nnx.merge(graphdef, jax.tree.map(lambda value, i=i: value[i], state)) for i in range(count)])


def _add_layer_axis(variable: nnx.Variable) -> nnx.Variable:
  logical = variable.get_metadata().get("out_sharding")
  if logical is not None:
    variable.set_metadata(out_sharding=(layers.LAYERS, *logical))
  return variable


def _apply_block(block: nnx.Module, x: jax.Array, layer: int, *args) -> jax.Array:
  return sharding.constrain_batch(block(sharding.constrain_batch(x), *args, layer=layer))


def run_blocks(blocks: nnx.Module, x: jax.Array, *args, remat: bool = False) -> jax.Array:
  """Applies the blocks in order as `block(x, *args, layer=i)`.

  With `remat`, each block's activations are recomputed in the backward pass instead of stored.
  """
  if isinstance(blocks, nnx.List):
    apply = nnx.remat(_apply_block, static_argnums=(2,)) if remat else _apply_block
    for layer, block in enumerate(blocks):
      x = apply(block, x, layer, *args)
    return x
  graphdef, state = nnx.split(blocks)

  def body(carry: jax.Array, layer_and_state: tuple[jax.Array, nnx.State]) -> tuple[jax.Array, None]:
    layer, layer_state = layer_and_state
    return _apply_block(nnx.merge(graphdef, layer_state), carry, layer, *args), None

  if remat:
    body = jax.checkpoint(body, prevent_cse=False)
  count = jax.tree.leaves(state)[0].shape[0]
  x, _ = jax.lax.scan(body, x, (jnp.arange(count), state))
  return x

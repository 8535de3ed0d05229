"""Device mesh and the mapping of logical axis names onto it.

The mesh has three named axes: `data` (pure data parallelism), `fsdp` (data parallelism with parameters
and optimizer state sharded) and `tensor` (attention heads / MLP hidden sharded). Parameters carry logical
axis names (see `xclip_jax.models.layers`); `LOGICAL_RULES` maps them onto mesh axes. Batches are split
over `data` and `fsdp` together.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import jax
import numpy as np
from flax import nnx
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

MESH_AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")

# Ordered (logical axis, mesh axis) pairs; logical names absent here are replicated.
LOGICAL_RULES: tuple[tuple[str, str | None], ...] = (
    ("embed", "fsdp"),
    ("heads", "tensor"),
    ("mlp", "tensor"),
    ("vocab", "tensor"),
    ("joint", "tensor"),
    ("norm", None),
    ("layers", None),  # the layer axis of stacked (scanned) blocks
)


def mesh_shape(axis_sizes: Mapping[str, int], device_count: int) -> tuple[int, ...]:
  """Resolves one -1 entry so that the axes multiply to the device count; validates the rest."""
  unknown = [name for name in MESH_AXES if int(axis_sizes.get(name, 1)) == -1]
  extra = sorted(set(axis_sizes) - set(MESH_AXES))
  if extra:
    raise ValueError(f"config.mesh has unknown axes {extra}; allowed: {MESH_AXES}.")
  if len(unknown) > 1:
    raise ValueError(f"config.mesh: at most one axis may be -1, got {unknown}.")
  known = int(np.prod([int(axis_sizes.get(name, 1)) for name in MESH_AXES if name not in unknown]))
  if known <= 0 or device_count % known:
    raise ValueError(f"config.mesh {dict(axis_sizes)} does not divide the {device_count} available devices.")
  sizes = {name: int(axis_sizes.get(name, 1)) for name in MESH_AXES}
  if unknown:
    sizes[unknown[0]] = device_count // known
  if int(np.prod(list(sizes.values()))) != device_count:
    raise ValueError(f"config.mesh {dict(axis_sizes)} uses {int(np.prod(list(sizes.values())))} devices, "
                     f"but {device_count} are available.")
  return tuple(sizes[name] for name in MESH_AXES)


def make_mesh(axis_sizes: Mapping[str, int], devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A (data, fsdp, tensor) mesh over all (global) devices, with Auto axes for logical-rule sharding."""
  devices = list(devices) if devices is not None else jax.devices()
  shape = mesh_shape(axis_sizes, len(devices))
  return jax.make_mesh(shape, MESH_AXES, axis_types=(AxisType.Auto,) * len(MESH_AXES), devices=devices)


def logical_to_mesh_spec(logical: Sequence[str | None] | None, shape: Sequence[int], mesh: Mesh,
                         rules: Sequence[tuple[str, str | None]] = LOGICAL_RULES) -> PartitionSpec:
  """Maps logical names to mesh axes; a dimension not divisible by its mesh axis stays replicated."""
  if not logical:
    return PartitionSpec()
  table = dict(rules)
  axes = []
  used: set[str] = set()
  for name, size in zip(logical, shape, strict=True):
    axis = table.get(name) if name is not None else None
    if axis is not None and (axis in used or size % mesh.shape[axis]):
      axis = None
    if axis is not None:
      used.add(axis)
    axes.append(axis)
  return PartitionSpec(*axes)


def state_shardings(abstract_state: nnx.State, mesh: Mesh,
                    rules: Sequence[tuple[str, str | None]] = LOGICAL_RULES) -> nnx.State:
  """NamedShardings for an (abstract) nnx state, from each variable's logical `out_sharding` names.

  Optimizer moments inherit their parameter's names (nnx.Optimizer copies the metadata), so parameters
  and optimizer state are sharded alike.
  """
  def one(variable: nnx.Variable) -> nnx.Variable:
    logical = variable.get_metadata().get("out_sharding")
    spec = logical_to_mesh_spec(logical, variable.shape, mesh, rules) if getattr(variable, "shape", None) else \
        PartitionSpec()
    return variable.replace(NamedSharding(mesh, spec))
  return jax.tree.map(one, abstract_state, is_leaf=lambda x: isinstance(x, nnx.Variable))


def batch_sharding(mesh: Mesh, ndim: int) -> NamedSharding:
  """Leading (batch) dimension split over data and fsdp, the rest replicated."""
  return NamedSharding(mesh, PartitionSpec(BATCH_AXES, *([None] * (ndim - 1))))


def batch_shards(mesh: Mesh) -> int:
  """How many ways a batch is split: the product of the mesh's batch axes (data x fsdp)."""
  return int(np.prod([mesh.shape[a] for a in BATCH_AXES if a in mesh.shape]))


def round_up_to_shards(rows: int, mesh: Mesh) -> int:
  """`rows` rounded up to a multiple of the batch shards, so that every device gets whole rows."""
  shards = batch_shards(mesh)
  return -(-int(rows) // shards) * shards


def constrain_batch(x: jax.Array) -> jax.Array:
  """Pins an activation's leading (batch) dimension to the batch axes of the mesh in scope, the rest unsplit.

  Without it XLA's sharding propagation may follow the fsdp-sharded weights instead and split activations
  along their width, then gather whole activations per layer: compiled for a v5e-256 with fsdp=256, the
  L/14@336 train step asked for 44 GiB of temporaries per chip (1 clip per chip) and all-gathered ~100 GiB
  per layer. No-op outside a mesh, and when the batch does not split evenly (e.g. 400 class texts on 256 chips).
  """
  mesh = jax.sharding.get_abstract_mesh()
  if mesh.empty:
    return x
  axes = tuple(a for a in BATCH_AXES if a in mesh.axis_names and mesh.shape[a] > 1)
  shards = int(np.prod([mesh.shape[a] for a in axes])) if axes else 1
  if shards == 1 or x.ndim == 0 or x.shape[0] % shards:
    return x
  return jax.lax.with_sharding_constraint(x, PartitionSpec(axes, *([None] * (x.ndim - 1))))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def log_mesh(mesh: Mesh) -> None:
  logging.info("Mesh %s over %d devices (%d processes): %s", dict(mesh.shape), mesh.size, jax.process_count(),
               mesh.devices.flat[0].platform)


# How long a process waits for the others before its first run of a program: a pod's slowest host may compile a
# full-size model for many minutes after the fastest.
ALIGN_TIMEOUT_S = 3600


class ProcessAligned:
  """A jitted program whose first run on each input signature starts on every process together.

  In a multi-process run the program is compiled ahead of time, then each process waits at a barrier of the
  coordination service before running it. Why: a collective gives the peers only a short time to show up (CPU
  collectives through gloo: 30 s), and a process that compiles, or reads its first batch, more slowly than
  the others (a loaded machine, a slow bucket) would fail the run there. In one process this is the jitted
  program itself.
  """

  def __init__(self, jitted, name: str, timeout_s: float = ALIGN_TIMEOUT_S):
    self.jitted = jitted
    self.name = name
    self._timeout_ms = int(timeout_s * 1000)
    self._compiled: dict = {}

  def __call__(self, *args):
    if jax.process_count() == 1:
      return self.jitted(*args)
    leaves, tree = jax.tree.flatten(args)
    signature = (tree, tuple((np.shape(leaf), getattr(leaf, "dtype", type(leaf)), getattr(leaf, "sharding", None))
                             for leaf in leaves))
    compiled = self._compiled.get(signature)
    if compiled is None:
      compiled = self.jitted.lower(*args).compile()
      self._compiled[signature] = compiled
      barrier = f"xclip_jax/{self.name}/{len(self._compiled)}"
      logging.info("%s compiled; waiting for the other processes (barrier %s)", self.name, barrier)
      # The coordination service's barrier, no collective: Orbax's public wrapper of JAX's distributed client
      # (JAX itself has none: multihost_utils.sync_global_devices runs a collective). Multi-process runs only,
      # which have the [train] extra.
      from orbax.checkpoint import multihost

      multihost.get_barrier_sync_fn()(key=barrier, timeout_ms=self._timeout_ms)
    return compiled(*args)

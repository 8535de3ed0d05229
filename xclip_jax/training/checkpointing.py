"""Training checkpoints: Orbax CheckpointManager (asynchronous) behind a small interface.

A checkpoint holds the training state (model + optimizer, step included), each process's grain iterator
state (so a resumed run sees the same data order) and a JSON record (run config, model config, step).
Arrays are restored onto an abstract target carrying the *current* mesh's shardings, so a checkpoint
written on one device count restores onto another. Keeping Orbax behind this file means a later move to
Orbax v1 touches nothing else.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import grain
import jax
import orbax.checkpoint as ocp
from flax import nnx
from flax.traverse_util import flatten_dict, unflatten_dict

from xclip_jax import model_reader, storage
from xclip_jax.model_reader import DATA, META, SEPARATOR, STATE


def _to_flat(state: nnx.State) -> dict[str, Any]:
  """nnx state -> flat {"model.visual.conv1": array}: string keys Orbax stores the same on every version.

  Non-array leaves (optax's MaskedNode placeholders) carry no data and are left out.
  """
  return {SEPARATOR.join(map(str, path)): value for path, value in flatten_dict(nnx.to_pure_dict(state)).items()
          if hasattr(value, "shape")}


def _from_flat(flat: dict[str, Any], target: nnx.State) -> nnx.State:
  """Puts restored arrays into a copy of `target` (whose non-array leaves are kept)."""
  target_flat = flatten_dict(nnx.to_pure_dict(target))
  keys = {SEPARATOR.join(map(str, path)): path for path, value in target_flat.items() if hasattr(value, "shape")}
  missing = sorted(set(keys) - set(flat))
  if missing:
    raise ValueError(f"checkpoint lacks {len(missing)} arrays of the training state, e.g. {missing[:5]}")
  target_flat.update({path: flat[key] for key, path in keys.items()})
  restored = jax.tree.map(lambda x: x, target, is_leaf=lambda x: isinstance(x, nnx.Variable))
  nnx.replace_by_pure_dict(restored, unflatten_dict(target_flat))
  return restored


class Checkpointer:
  """Saves/restores (state, data iterator, meta) under `<workdir>/checkpoints/<step>`.

  The directory may be a bucket (gs://...): Orbax then writes into the step folder and marks it complete
  with `commit_success.txt` last (no rename there), and ignores a step folder without it, so a save cut
  off midway leaves the previous complete checkpoint as the latest.
  """

  def __init__(self, directory: str | os.PathLike, *, max_to_keep: int = 3, asynchronous: bool = True):
    self.directory = storage.absolute(directory)
    # cleanup_tmp_directories: a save cut off (a second Ctrl-C, SIGKILL) leaves `<step>.orbax-checkpoint-tmp-*`;
    # the next run deletes it (it was never the latest checkpoint).
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True, cleanup_tmp_directories=True,
                                           enable_async_checkpointing=asynchronous)
    self.manager = ocp.CheckpointManager(
        self.directory, options=options,
        item_handlers={STATE: ocp.StandardCheckpointHandler(), DATA: grain.checkpoint.CheckpointHandler(),
                       META: ocp.JsonCheckpointHandler()})

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self.manager.all_steps())

  def save(self, step: int, state: nnx.State, data_iterator: Any | None, meta: dict[str, Any],
           *, force: bool = False) -> bool:
    """Starts an (asynchronous) save; returns whether one was started."""
    items = {STATE: ocp.args.StandardSave(_to_flat(state)), META: ocp.args.JsonSave(meta)}
    if data_iterator is not None:
      items[DATA] = grain.checkpoint.CheckpointSave(data_iterator)
    saved = self.manager.save(step, args=ocp.args.Composite(**items), force=force)
    if saved:
      logging.info("Saving checkpoint for step %d to %s", step, self.directory)
    return saved

  def restore(self, step: int, abstract_state: nnx.State, data_iterator: Any | None
              ) -> tuple[nnx.State, dict[str, Any]]:
    """Restores the state onto `abstract_state`'s shardings, and the iterator in place (if given)."""
    target = _to_flat(abstract_state)
    items = {STATE: ocp.args.StandardRestore(target), META: ocp.args.JsonRestore()}
    step_dir = self.directory / str(step) / DATA
    if data_iterator is not None and step_dir.exists():
      process_file = step_dir / f"process_{jax.process_index()}-of-{jax.process_count()}.json"
      if process_file.exists():
        items[DATA] = grain.checkpoint.CheckpointRestore(data_iterator)
      else:  # e.g. restored with another process count: the data order cannot be continued exactly
        logging.warning("Checkpoint %d has no data-iterator state for %d processes; the data order restarts.",
                        step, jax.process_count())
    restored = self.manager.restore(step, args=ocp.args.Composite(**items))
    return _from_flat(dict(restored[STATE]), abstract_state), dict(restored[META])

  def read_meta(self, step: int) -> dict[str, Any]:
    return dict(self.manager.restore(step, args=ocp.args.Composite(**{META: ocp.args.JsonRestore()}))[META])

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()


# The reader of a workdir's model lives below the training room (inference reads workdirs too).
load_model_params = model_reader.read_workdir

"""model.scan_layers: stacked block parameters run by lax.scan give the model of the per-layer layout.

Same initial values, same logits (also with drop path and remat), same train step, per-layer parameters
at every boundary (flat_params, checkpoints), and optimizer masks that ignore the layer axis.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from flax.traverse_util import flatten_dict

from tests import training_fixtures
from xclip_jax import sharding
from xclip_jax.evaluation import eval_steps
from xclip_jax.models import layer_stack, layers
from xclip_jax.models.config import variant_config
from xclip_jax.models.params import flat_params, from_layer_params, model_from_params, parameter_shapes
from xclip_jax.models.transformer import ResidualAttentionBlock
from xclip_jax.models.xclip import create_model
from xclip_jax.tokenizer import tokenize
from xclip_jax.training import optimizer, steps, train_state

TOKENS = tokenize(["a circle moving left", "a square", "juggling balls"])


def tiny(**changes):
  return variant_config("tiny", frames=4, vision_layers=3, text_layers=2, mit_layers=2, **changes)


def videos(batch: int = 2, seed: int = 0) -> np.ndarray:
  return np.random.default_rng(seed).normal(size=(batch, 4, 32, 32, 3)).astype(np.float32)


def test_key_sequence_draws_the_keys_of_nnx_rngs():
  reference, ours = nnx.Rngs(params=7), layers.KeySequence(7)
  for _ in range(5):
    np.testing.assert_array_equal(jax.random.key_data(reference.params()), jax.random.key_data(ours.params()))


@pytest.mark.parametrize("stacked", [False, True])
def test_blocks_initialised_together_equal_blocks_built_one_by_one(stacked):
  make = lambda keys: ResidualAttentionBlock(16, 2, 32, rngs=keys)
  sequential_keys = layers.KeySequence(3)
  sequential_keys.params()  # a draw before the stack: the stack must continue from it
  one_by_one = [make(sequential_keys) for _ in range(3)]
  keys = layers.KeySequence(3)
  keys.params()
  blocks = layer_stack.init_blocks(make, 3, keys, stacked=stacked)
  assert keys.count == sequential_keys.count  # later draws are unchanged too
  for i, block in enumerate(one_by_one):
    expected = flatten_dict(nnx.to_pure_dict(nnx.state(block)))
    got = flatten_dict(nnx.to_pure_dict(nnx.state(blocks if stacked else blocks[i])))
    assert expected.keys() == got.keys()
    for path, value in expected.items():
      np.testing.assert_array_equal(got[path][i] if stacked else got[path], value, err_msg=str(path))


def test_both_layouts_initialise_the_same_model():
  per_layer = flat_params(create_model(tiny(), seed=5))
  stacked_model = create_model(tiny(scan_layers=True), seed=5)
  stacked_state = flatten_dict(nnx.to_pure_dict(nnx.state(stacked_model, nnx.Param)))
  assert ("visual", "resblocks", "attn", "query", "kernel") in stacked_state
  assert stacked_state[("visual", "resblocks", "attn", "query", "kernel")].shape == (3, 64, 64)
  stacked = flat_params(stacked_model)  # back to the per-layer layout
  assert stacked.keys() == per_layer.keys() == parameter_shapes(tiny(scan_layers=True)).keys()
  for path, value in per_layer.items():
    np.testing.assert_array_equal(stacked[path], value, err_msg=str(path))


@pytest.mark.parametrize("remat", [False, True])
def test_scanned_layers_give_the_same_logits_and_text_features(remat):
  params = flat_params(create_model(tiny(), seed=1))
  outputs = {}
  for scan in (False, True):
    model = model_from_params(tiny(scan_layers=scan, remat=remat, drop_path_rate=0.3), params)
    text = model.encode_text(jnp.asarray(TOKENS))
    eval_logits = model(jnp.asarray(videos()), text_features=text)
    # Training forward with stochastic depth: the per-layer rates and keys must follow the layer index.
    train_logits = model(jnp.asarray(videos()), text_features=text, drop_rng=jax.random.key(4))
    outputs[scan] = [np.asarray(x) for x in (text, eval_logits, train_logits)]
  for name, a, b in zip(("text", "logits", "logits with drop path"), outputs[False], outputs[True], strict=True):
    print(f"{name}: max |scan - per layer| = {np.max(np.abs(a - b)):.1e}")
    np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5, err_msg=name)
  assert np.max(np.abs(outputs[False][1] - outputs[False][2])) > 1e-3  # drop path did change something


def test_a_train_step_with_scanned_layers_matches_the_per_layer_step():
  """Same initial state, one step on a 2x2 (data, fsdp) mesh: same loss and gradients.

  Plain SGD with unit learning rate makes each update the gradient (AdamW's first step, ~lr * sign(g),
  would magnify rounding where a gradient is ~0, e.g. attention key biases); the trainer test below runs
  the official AdamW on stacked parameters.
  """
  mesh = sharding.make_mesh({"data": 2, "fsdp": 2}, devices=jax.devices()[:4])
  rng = np.random.default_rng(0)
  batch = {"video": rng.integers(0, 256, (4, 4, 32, 32, 3), dtype=np.uint8),
           "label": rng.integers(0, 3, (4,)).astype(np.int32)}
  config = training_fixtures.tiny_config(training_fixtures.REPO)
  results = {}
  for scan in (False, True):
    model_config = tiny(scan_layers=scan)
    _, schedules = optimizer.make_optimizer(config.train, total_steps=10, warmup_steps=0)
    trainable = optimizer.trainable_filter(False)
    state = train_state.create_train_state(model_config, optax.sgd(1.0), trainable, mesh, seed=2)
    text = jax.jit(eval_steps.make_text_encoder(train_state.model_graphdef(model_config)))(
        state.state["model"], jnp.asarray(TOKENS))
    step = jax.jit(steps.make_train_step(state.graphdef, trainable, steps.TrainStepConfig(num_classes=3, mixup=0.0),
                                         schedules), out_shardings=(state.shardings, sharding.replicated(mesh)))
    with jax.set_mesh(mesh):
      new_state, metrics = step(state.state, batch, text, jax.random.key(0))
    model = nnx.merge(train_state.model_graphdef(model_config), jax.device_get(new_state["model"]))
    results[scan] = float(metrics["loss"]), flat_params(model)
  (loss, per_layer), (scan_loss, scanned) = results[False], results[True]
  assert np.isfinite(loss) and scan_loss == pytest.approx(loss, rel=1e-6)
  initial = flat_params(create_model(tiny(), seed=2))
  kernel = ("visual", "resblocks", 2, "mlp", "fc1", "kernel")
  assert np.max(np.abs(per_layer[kernel] - initial[kernel])) > 1e-4  # the step did update the last block
  for path, value in per_layer.items():
    np.testing.assert_allclose(scanned[path] - initial[path], value - initial[path], rtol=1e-4, atol=1e-7,
                               err_msg=str(path))


def test_optimizer_groups_ignore_the_layer_axis():
  state = nnx.state(create_model(tiny(scan_layers=True)), nnx.Param)
  flat = {path: leaf for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]}
  by_name = {"/".join(optimizer._names(path)).removesuffix("/value"): (path, leaf) for path, leaf in flat.items()}
  path, leaf = by_name["visual/resblocks/ln_1/scale"]
  assert leaf.shape == (3, 64) and not optimizer.decays(path, leaf)  # a LayerNorm scale per layer
  path, leaf = by_name["visual/resblocks/mlp/fc1/kernel"]
  assert optimizer.decays(path, leaf)
  path, _ = by_name["visual/resblocks/message_fc/kernel"]
  assert optimizer.parameter_group(path) == "new"


def test_stacking_needs_every_layer():
  params = flat_params(create_model(tiny()))
  del params[("visual", "resblocks", 1, "attn", "query", "kernel")]
  with pytest.raises(ValueError, match="visual/resblocks/attn/query/kernel for scan_layers: layers \\[0, 2\\]"):
    from_layer_params(tiny(scan_layers=True), params)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
  return training_fixtures.make_dataset(tmp_path_factory.mktemp("synthetic") / "data")


def test_scan_layers_checkpoints_read_back_per_layer(dataset, tmp_path):
  """A workdir trained with scan_layers loads as a per-layer model; resuming with the other layout is named."""
  import xclip_jax
  from xclip_jax.training import checkpointing, trainer

  config = training_fixtures.tiny_config(dataset)
  config.model.scan_layers = True
  config.train.total_steps = 1
  outcome = trainer.train(config, tmp_path)
  assert ("visual", "resblocks", "attn", "query", "kernel") in flatten_dict(
      nnx.to_pure_dict(outcome.state.state["model"]))
  model_config, params = checkpointing.load_model_params(tmp_path)
  assert model_config.scan_layers and params.keys() == parameter_shapes(model_config).keys()
  model = xclip_jax.load_model(tmp_path)
  assert model(videos(1, seed=3)[:, :, :, :, :], tokenize(["a circle"])).shape == (1, 1)
  config.model.scan_layers = False
  config.train.total_steps = 2
  with pytest.raises(ValueError, match="stores the layers stacked \\(model.scan_layers=True\\)"):
    trainer.train(config, tmp_path)

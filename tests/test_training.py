"""Training on 8 simulated devices (data=4, fsdp=2): real sharding, then evaluation and results."""

from __future__ import annotations

import json

import jax
import ml_collections
import numpy as np
import pytest
from flax import nnx
from flax.traverse_util import flatten_dict

from tests import training_fixtures
from xclip_jax import protocols
from xclip_jax.training import trainer


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
  return training_fixtures.make_dataset(tmp_path_factory.mktemp("synthetic") / "data")


def _specs(state: nnx.State) -> dict:
  return {path: leaf.sharding.spec for path, leaf in flatten_dict(nnx.to_pure_dict(state)).items()
          if hasattr(leaf, "sharding")}


def test_two_steps_on_data4_fsdp2_then_evaluate(dataset, tmp_path):
  assert jax.device_count() == 8
  config = training_fixtures.tiny_config(dataset, data=4, fsdp=2, tensor=1)
  outcome = trainer.train(config, tmp_path)
  assert outcome.step == 2 and not outcome.preempted
  assert dict(outcome.mesh.shape) == {"data": 4, "fsdp": 2, "tensor": 1}

  # Parameters and AdamW moments really are sharded over fsdp: each device holds half of a kernel.
  params = _specs(outcome.state.state["model"])
  kernel = ("visual", "resblocks", 0, "mlp", "fc1", "kernel")
  assert params[kernel] == jax.P("fsdp", "tensor")
  leaf = flatten_dict(nnx.to_pure_dict(outcome.state.state["model"]))[kernel]
  assert leaf.addressable_shards[0].data.shape == (leaf.shape[0] // 2, leaf.shape[1])
  moments = {path: spec for path, spec in _specs(outcome.state.state["optimizer"]).items() if "mu" in path}
  mu_kernel = [spec for path, spec in moments.items() if path[-len(kernel):] == kernel]
  assert mu_kernel == [jax.P("fsdp", "tensor")]
  sharded = [path for path, spec in params.items() if "fsdp" in str(spec)]
  print(f"{len(sharded)} of {len(params)} parameter arrays sharded over fsdp, e.g. {sharded[:3]}")
  assert len(sharded) > len(params) // 2

  result = outcome.evaluator.evaluate(outcome.state.state["model"], config.data, clips=2, crops=3,
                                      context_length=outcome.model_config.context_length)
  assert result.videos == 16 and result.num_classes == 16 and result.views == "2x3"
  assert 0.0 <= result.top1 <= result.top5 <= 100.0
  assert result.decode_failures == 0

  # Checkpoints and TensorBoard event files are real files.
  assert sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit()) == [1, 2]
  assert list(tmp_path.glob("events.out.tfevents.*"))
  assert json.loads((tmp_path / "config.json").read_text())["protocol"] == "supervised"


def test_supervised_protocol_writes_results_and_evaluate_mode_reads_them(dataset, tmp_path):
  config = training_fixtures.tiny_config(dataset)
  results = protocols.run(config, tmp_path)
  on_disk = json.loads((tmp_path / "results.json").read_text())
  assert on_disk == json.loads(json.dumps(results))
  assert on_disk["final"]["videos"] == 16 and on_disk["step"] == 2
  # Evaluate-only on the same workdir: same model (latest checkpoint), same numbers.
  evaluate = config.copy_and_resolve_references()
  evaluate.mode = "evaluate"
  again = protocols.run(evaluate, tmp_path)
  assert again["final"]["top1"] == pytest.approx(on_disk["final"]["top1"])
  assert again["step"] is None


def test_ablated_model_trains(dataset, tmp_path):
  """All three switches off = CLIP with mean pooling: still a working training run."""
  config = training_fixtures.tiny_config(dataset)
  config.model.use_cross_frame = config.model.use_mit = config.model.use_prompt = False
  config.train.total_steps = 1
  outcome = trainer.train(config, tmp_path)
  names = {path[0] for path in flatten_dict(nnx.to_pure_dict(outcome.state.state["model"]))}
  assert names == {"visual", "text", "logit_scale"}


def test_bad_configuration_is_named(dataset, tmp_path):
  config = training_fixtures.tiny_config(dataset)
  config.model.frames = 8
  assert config.data.num_frames == 8  # one value in a run config (a FieldReference)
  unlinked = ml_collections.ConfigDict(config.to_dict())  # written out and read back: two fields again
  unlinked.data.num_frames = 4
  with pytest.raises(ValueError, match="config.model.frames=8 but config.data.num_frames=4"):
    trainer.train(unlinked, tmp_path / "a")
  config = training_fixtures.tiny_config(dataset, data=3)
  with pytest.raises(ValueError, match="does not divide the 8 available devices"):
    trainer.train(config, tmp_path / "b")
  config = training_fixtures.tiny_config(dataset)
  config.train.grad_accum_steps = 3
  with pytest.raises(ValueError, match="not divisible by train.grad_accum_steps=3"):
    trainer.train(config, tmp_path / "c")


def test_gradient_accumulation_matches_one_big_batch():
  """2 micro-batches of 4 give the loss, gradient and update of one batch of 8 (no mixup: separable loss).

  Plain SGD with unit learning rate makes each parameter's update its gradient, so the updates are compared
  directly; AdamW's first step (~lr * sign(g)) would magnify rounding differences where a gradient is ~0.
  """
  import jax.numpy as jnp
  import optax

  from xclip_jax import sharding
  from xclip_jax.models.config import variant_config
  from xclip_jax.tokenizer import tokenize
  from xclip_jax.training import optimizer, steps, train_state

  config = training_fixtures.tiny_config(training_fixtures.REPO)
  model_config = variant_config("tiny", frames=training_fixtures.FRAMES, **training_fixtures.TINY_MODEL)
  mesh = sharding.make_mesh({"data": 4}, devices=jax.devices()[:4])
  rng = np.random.default_rng(0)
  batch = {"video": rng.integers(0, 256, (8, training_fixtures.FRAMES, 32, 32, 3), dtype=np.uint8),
           "label": rng.integers(0, 3, (8,)).astype(np.int32)}
  tokens = jnp.asarray(tokenize(["a circle", "a square", "a cross"]))
  results = []  # (metrics, parameter updates of the step) per accumulation
  for accumulation in (1, 2):
    _, schedules = optimizer.make_optimizer(config.train, total_steps=10, warmup_steps=0)
    trainable = optimizer.trainable_filter(True)
    state = train_state.create_train_state(model_config, optax.sgd(1.0), trainable, mesh, seed=0)
    before = flatten_dict(jax.device_get(nnx.to_pure_dict(state.state["model"])))
    step_config = steps.TrainStepConfig(num_classes=3, grad_accum_steps=accumulation, train_text=True, mixup=0.0)
    step = jax.jit(steps.make_train_step(state.graphdef, trainable, step_config, schedules))
    with jax.set_mesh(mesh):
      new_state, metrics = step(state.state, batch, tokens, jax.random.key(0))
    after = flatten_dict(jax.device_get(nnx.to_pure_dict(new_state["model"])))
    results.append((jax.device_get(metrics), {p: np.asarray(after[p]) - np.asarray(before[p]) for p in before}))
  (metrics1, updates1), (metrics2, updates2) = results
  print({k: (float(metrics1[k]), float(metrics2[k])) for k in ("loss", "grad_norm")})
  assert float(metrics1["grad_norm"]) > 0
  np.testing.assert_allclose(metrics2["loss"], metrics1["loss"], rtol=1e-5)
  np.testing.assert_allclose(metrics2["grad_norm"], metrics1["grad_norm"], rtol=1e-4)
  total = np.sqrt(sum(np.sum(u**2) for u in updates1.values()))
  assert total > 0
  for path, update in updates1.items():
    error = np.linalg.norm(updates2[path] - update)
    assert error <= 1e-4 * np.linalg.norm(update) + 1e-6 * total, (path, error, np.linalg.norm(update))

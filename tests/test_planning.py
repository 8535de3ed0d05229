"""Planning: the trainer's programs compiled for TPU topologies with XLA's TPU compiler (libtpu), on this CPU.

Nothing here runs on a TPU: the devices are compile-only descriptions of a slice; libtpu is kept off the
network by TPU_SKIP_MDS_QUERY (tests/conftest.py).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from tests import training_fixtures
from xclip_jax import sharding
from xclip_jax.data import synthetic
from xclip_jax.planning import batch_search, compiled, hlo_collectives, planner, report, topologies
from xclip_jax.training import programs, run_model, trainer

# A tiny model whose widths are multiples of TPU tiles (128), so per-chip bytes are not dominated by padding.
TILED_MODEL = dict(training_fixtures.TINY_MODEL, vision_width=128, vision_heads=2, vision_mlp_dim=512, text_width=128,
                   text_heads=2, text_mlp_dim=512, embed_dim=128, mit_heads=2, mit_mlp_dim=512, prompt_heads=2)
NUM_CLASSES = 5
# requirements-dev.txt installs libtpu on Linux x86-64 (the only platform it is built for).
needs_libtpu = pytest.mark.skipif(importlib.util.find_spec("libtpu") is None,
                                  reason="libtpu is not installed (requirements-dev.txt, Linux x86-64)")


def _config(mixup: float = 0.0, **mesh: int) -> ml_collections.ConfigDict:
  """The tiny run, bf16, text tower frozen (the official recipe); mixup (many more ops to compile) only where
  it is the point."""
  config = training_fixtures.tiny_config(training_fixtures.REPO, **mesh)
  config.model.overrides = ml_collections.ConfigDict(TILED_MODEL)
  config.model.dtype = "bfloat16"
  config.train.train_text = False
  config.train.mixup = mixup
  return config


@pytest.fixture(scope="module", params=["v5e-4", "v4-8"])
def fsdp_plan(request):
  """The tiny model's train and eval steps planned with fsdp over all 4 chips of two topologies."""
  config = _config(mixup=0.8, data=1, fsdp=4)
  target = planner.target(request.param)
  return target, planner.plan(config, target, num_classes=NUM_CLASSES, which=("train", "eval"))


@needs_libtpu
def test_tiny_train_and_eval_steps_compile_for_tpu_with_fsdp(fsdp_plan):
  target, plan = fsdp_plan
  assert len(target.devices) == 4 and target.devices[0].platform == "tpu"
  names = [p.name for p in plan.programs]
  assert names[0] == "train step" and any(name.startswith("eval step") for name in names)
  for program in plan.programs:
    assert program.refusal is None and program.fits
    assert program.argument_bytes > 0 and program.code_bytes > 0
    assert 0 < program.total_bytes < target.chip.hbm_bytes
  train = plan.programs[0]
  # XLA reports no temporaries for this tiny model's eval step (per-video probabilities out, no top_k on device).
  assert train.alias_bytes > 0 and train.temp_bytes > 0  # the donated state is updated in place
  # FSDP: parameters are gathered before use and gradients reduced across the 4 chips.
  assert train.collectives.count["all-gather"] > 0
  assert train.collectives.count["reduce-scatter"] + train.collectives.count["all-reduce"] > 0
  assert plan.roofline is not None and plan.roofline.lower_s > 0 and 0 < plan.roofline.mfu_bound < 1
  text = report.format_report(plan)
  assert "fits" in text and "Roofline" in text and "not a measurement" in text


@needs_libtpu
def test_state_per_chip_is_the_state_over_the_fsdp_shards(fsdp_plan):
  _, plan = fsdp_plan
  train = plan.programs[0]
  state_per_chip = plan.parameter_bytes_per_chip + plan.optimizer_bytes_per_chip
  # From the shardings: a quarter of the state per chip, plus the small replicated leaves (norms, scalars).
  assert plan.state_bytes_total / 4 <= state_per_chip <= 1.1 * plan.state_bytes_total / 4
  # The compiler's arguments are that state plus one batch shard (tiny here), within TPU tile padding.
  assert state_per_chip <= train.argument_bytes <= 1.25 * state_per_chip


@needs_libtpu
def test_without_fsdp_every_chip_holds_the_whole_state():
  config = _config(data=4, fsdp=1)
  plan = planner.plan(config, planner.target("v5e-4"), num_classes=NUM_CLASSES, which=("train",))
  train = plan.programs[0]
  assert plan.parameter_bytes_per_chip + plan.optimizer_bytes_per_chip == plan.state_bytes_total
  assert plan.state_bytes_total <= train.argument_bytes <= 1.25 * plan.state_bytes_total


@needs_libtpu
def test_oversized_batch_is_reported_as_not_fitting():
  config = _config(data=1, fsdp=1)
  config.data.batch_size = 1 << 17  # 131072 clips on one v5e chip
  target = planner.target("v5e-1")
  plan = planner.plan(config, target, num_classes=NUM_CLASSES, which=("train",))
  train = plan.programs[0]
  assert plan.fits is False and train.fits is False and train.refusal
  assert train.required_bytes > train.available_bytes > 0.9 * target.chip.hbm_bytes
  text = report.format_report(plan)
  assert "DOES NOT FIT" in text and f"{train.available_bytes / report.GIB:.2f}" in text


def _known_collectives_program(mesh: Mesh):
  """Collectives by construction: 1 all-gather, 1 reduce-scatter, 1 permute, and 3 x 4 all-reduces in nested
  loops, each over (64, 128) float32 shards on 4 devices."""
  spec = P("x", None)

  def body(x):
    gathered = jax.lax.all_gather(x, "x", tiled=True)  # (256, 128): 128 KiB per device
    scattered = jax.lax.psum_scatter(gathered * 2, "x", tiled=True)  # in: (256, 128) = 128 KiB
    shifted = jax.lax.ppermute(scattered, "x", [(i, (i + 1) % 4) for i in range(4)])  # 32 KiB

    def inner(carry, _):
      return jax.lax.psum(carry, "x") * 0.25 + carry, None  # 32 KiB, depends on the carry: stays in the loop

    def outer(carry, _):
      return jax.lax.scan(inner, carry, None, length=4)[0] * 0.5, None

    return jax.lax.scan(outer, shifted, None, length=3)[0]

  function = jax.jit(jax.shard_map(body, mesh=mesh, in_specs=spec, out_specs=spec))
  argument = jax.ShapeDtypeStruct((256, 128), jnp.float32, sharding=NamedSharding(mesh, spec))
  return function, argument


@pytest.mark.parametrize("where", [pytest.param("v5e-4", marks=needs_libtpu), "cpu"])
def test_collective_counter_on_a_program_with_known_collectives(where):
  devices = planner.target(where).devices if where != "cpu" else jax.devices()[:4]
  mesh = Mesh(np.array(devices), ("x",))
  function, argument = _known_collectives_program(mesh)
  with jax.set_mesh(mesh):
    text = function.lower(argument).compile().as_text()
  summary = hlo_collectives.count_collectives(text)
  shard = 64 * 128 * 4
  assert summary.count["all-reduce"] == 12 and summary.bytes["all-reduce"] == 12 * shard
  assert summary.count["all-gather"] == 1 and summary.bytes["all-gather"] == 4 * shard
  assert summary.count["reduce-scatter"] == 1 and summary.bytes["reduce-scatter"] == 4 * shard
  assert summary.count["collective-permute"] == 1 and summary.bytes["collective-permute"] == shard
  assert summary.unknown_loops == 0
  assert sorted(loop["trips"] for loop in summary.loops) == [3, 4]


def test_trip_count_read_from_the_loop_bound():
  hlo = """HloModule m, entry_computation_layout={(f32[8]{0})->f32[8]{0}}

%body (p: (s32[], f32[8])) -> (s32[], f32[8]) {
  %p = (s32[], f32[8]{0}) parameter(0)
  %i = s32[] get-tuple-element(%p), index=0
  %one = s32[] constant(2)
  %next = s32[] add(%i, %one)
  %x = f32[8]{0} get-tuple-element(%p), index=1
  %r = f32[8]{0} all-reduce(%x), replica_groups={{0,1}}, to_apply=%sum
  ROOT %t = (s32[], f32[8]{0}) tuple(%next, %r)
}

%cond (q: (s32[], f32[8])) -> pred[] {
  %q = (s32[], f32[8]{0}) parameter(0)
  %j = s32[] get-tuple-element(%q), index=0
  %n = s32[] constant(11)
  ROOT %lt = pred[] compare(%j, %n), direction=LT
}

ENTRY %main (a: f32[8]) -> f32[8] {
  %a = f32[8]{0} parameter(0)
  %zero = s32[] constant(1)
  %init = (s32[], f32[8]{0}) tuple(%zero, %a)
  %w = (s32[], f32[8]{0}) while(%init), condition=%cond, body=%body
  ROOT %out = f32[8]{0} get-tuple-element(%w), index=1
}
"""
  summary = hlo_collectives.count_collectives(hlo)
  assert summary.loops[0]["trips"] == 5  # i = 1, 3, 5, 7, 9
  assert summary.count["all-reduce"] == 5 and summary.bytes["all-reduce"] == 5 * 32


@needs_libtpu
def test_topology_names():
  assert topologies.lookup("v4-8").chips == 4 and topologies.lookup("v5p-8").chips == 4
  assert topologies.lookup("v5e-256").shape == "v5e:16x16" and topologies.lookup("v5e-256").hosts == 64
  assert topologies.lookup("v6e-8").hosts == 1
  with pytest.raises(ValueError, match=r"Unknown TPU topology 'v5e-12'.*v5e-\{1,4,8,16,32,64,128,256\}"):
    topologies.lookup("v5e-12")
  devices = topologies.devices(topologies.lookup("v5e-16"))
  assert len(devices) == 16 and len({d.process_index for d in devices}) == 4


@needs_libtpu
def test_impossible_plans_are_errors_naming_the_field():
  mesh = sharding.make_mesh({"data": 8})
  model = run_model.model_config_from(_config())
  config = _config()
  config.data.batch_size = 12
  with pytest.raises(ValueError, match=r"data.batch_size=12 / train.grad_accum_steps=1 = 12 clips .* 8 batch shards"):
    programs.check_run(config, model, mesh)
  config.data.batch_size, config.train.grad_accum_steps = 16, 4
  with pytest.raises(ValueError, match=r"= 4 clips per micro-batch do not split over the 8 batch shards"):
    programs.check_run(config, model, mesh)
  config.train.grad_accum_steps = 3
  with pytest.raises(ValueError, match="not divisible by train.grad_accum_steps=3"):
    programs.check_run(config, model, mesh)
  with pytest.raises(ValueError, match=r"config.mesh tensor=4 does not divide the attention heads .*vision 2"):
    programs.check_run(_config(), model, sharding.make_mesh({"data": 2, "tensor": 4}))
  with pytest.raises(ValueError, match="does not divide the 4 available devices"):
    planner.plan(_config(data=3), planner.target("v5e-4"), num_classes=NUM_CLASSES)


@needs_libtpu
def test_eval_batches_are_padded_to_whole_rows_per_chip():
  mesh = Mesh(np.array(planner.target("v5e-16").devices).reshape(16, 1, 1), sharding.MESH_AXES)
  assert programs.eval_batch_size(16, mesh) == 16
  assert programs.eval_batch_size(20, mesh) == 32
  assert programs.eval_batch_spec(_config(), mesh, views=12)["video"].shape[:2] == (16, 12)


def test_plan_and_trainer_compile_one_train_step(tmp_path, monkeypatch):
  """Both paths build the train step with programs.jit_train_step, and the programs they get are identical."""
  built = []
  original = programs.jit_train_step

  def recording(*args, **kwargs):
    built.append(original(*args, **kwargs))
    return built[-1]

  monkeypatch.setattr(programs, "jit_train_step", recording)
  dataset = training_fixtures.make_dataset(tmp_path / "data")
  config = training_fixtures.tiny_config(dataset, data=4, fsdp=2)
  config.train.total_steps = 1
  trainer.train(config, tmp_path / "run")
  mesh = sharding.make_mesh(config.mesh)
  run = planner.build_programs(config, mesh, num_classes=planner.class_count(config), which=("train",))
  assert len(built) == 2 and run.specs[0].function is built[1]
  with jax.set_mesh(mesh):
    texts = [function.lower(*run.specs[0].args).as_text() for function in built]
  assert texts[0] == texts[1]


@needs_libtpu
@pytest.mark.parametrize(("per_clip", "expected", "most_compiles"), [(0.3, 49, 3), (0.02, 573, 6), (20.0, 0, 2)])
def test_find_batch_compiles_few_times(per_clip, expected, most_compiles):
  """The search itself, fed a memory curve (1 GiB + per_clip GiB per clip + a little curvature; the compiler's
  limit 15.75 GiB, stated when it refuses) instead of compiles."""
  calls = []

  def probe(trial):
    per_chip = int(trial.data.batch_size) // 4
    calls.append(per_chip)
    temp = int((per_clip * per_chip + 1e-5 * per_chip**2) * report.GIB)
    other, limit = report.GIB, int(15.75 * report.GIB)
    if temp + other > limit:
      return batch_search.Probe(per_chip, False, temp, 0, limit, 0.0, refused=True)
    return batch_search.Probe(per_chip, True, temp, other, 16 * report.GIB, 0.0)

  target = planner.target("v5e-4")
  found = batch_search.find_largest_batch(_config(data=4), target, NUM_CLASSES, remat=False, probe=probe)
  need = lambda b: (per_clip * b + 1e-5 * b**2 + 1) * report.GIB
  assert found.largest_fitting == expected
  assert expected == 0 or (need(expected) <= 15.75 * report.GIB < need(expected + 1))
  assert len(calls) == len(set(calls)) <= most_compiles, calls


def test_plan_command_json_on_local_devices_runs_the_step(tmp_path):
  config = _config(data=8)
  config.model.dtype = "float32"
  path = training_fixtures.write_config_file(config, tmp_path / "tiny.py")
  result = subprocess.run(
      [training_fixtures.sys.executable, "-m", "xclip_jax.plan", f"--config={path}", "--topology=local",
       "--num-classes=5", "--programs=train", "--local-steps=2", "--json"],
      capture_output=True, text=True, env=training_fixtures.subprocess_env(devices=8), timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  plan = json.loads(result.stdout)
  assert plan["programs"][0]["name"] == "train step" and plan["measured"]["steps"] == 2
  assert plan["measured"]["step_seconds_median"] > 0 and plan["config"]["mesh"] == {"data": 8, "fsdp": 1, "tensor": 1}


def test_plan_command_names_unknown_topologies():
  result = subprocess.run(
      [training_fixtures.sys.executable, "-m", "xclip_jax.plan", "--config=configs/kinetics.py",
       "--topology=v5e-12"], capture_output=True, text=True, env=training_fixtures.subprocess_env(), timeout=120,
      cwd=training_fixtures.REPO)
  assert result.returncode != 0 and "Unknown TPU topology 'v5e-12'" in result.stderr
  assert "v6e-{1,4,8,16,32,64,128,256}" in result.stderr


def test_main_compile_only_prints_the_report_and_trains_nothing(tmp_path):
  config = _config(data=8)
  config.model.dtype = "float32"
  config.data.class_names = ""
  path = training_fixtures.write_config_file(config, tmp_path / "tiny.py")
  dataset = training_fixtures.make_dataset(tmp_path / "data")
  result = subprocess.run(
      training_fixtures.main_command(path, tmp_path / "run", "--config.compile_only=true",
                                     f"--config.data.synthetic_dir={dataset}"),
      capture_output=True, text=True, env=training_fixtures.subprocess_env(devices=8), timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "train step" in result.stdout and "Every figure below is the compiler's" in result.stdout
  assert not (tmp_path / "run" / "checkpoints").exists()


def test_compiled_report_reads_the_tpu_compilers_refusal():
  message = ("RESOURCE_EXHAUSTED: Ran out of memory on HBM, the total memory required for HLO temporaries (20.86G) "
             "exceeds available HBM (15.75G).")
  required, available = compiled.parse_refusal(message)
  assert required == int(20.86 * report.GIB) and available == int(15.75 * report.GIB)
  assert compiled.parse_refusal("XLA:TPU compile permanent error. Used 17.5G of 15.75G hbm.") == (
      int(17.5 * report.GIB), int(15.75 * report.GIB))


def test_plan_of_the_demo_needs_no_data_and_measures_its_own_input(tmp_path):
  """A fresh clone: no runs/demo/data. The classes come from the config (the synthetic task's), and the input
  budget is measured for this run's input (32 px frame shards, 8 frames, its augmentation), not the MP4 rate."""
  result = subprocess.run(
      [training_fixtures.sys.executable, "-m", "xclip_jax.plan", "--config", "configs/demo.py", "--topology", "v5e-4",
       "--programs", "train", "--cache-dir", str(tmp_path / "cache"), "--config.data.synthetic_dir",
       str(tmp_path / "no_data_here")], capture_output=True, text=True, env=training_fixtures.subprocess_env(),
      timeout=900, cwd=training_fixtures.REPO)
  assert result.returncode == 0, result.stderr[-3000:]
  assert not (tmp_path / "no_data_here").exists()
  assert f"{len(synthetic.tasks()['supervised'])} classes" in result.stdout
  [line] = [line for line in result.stdout.splitlines() if line.startswith("Input:")]
  assert ("clips per CPU-second per worker (measured on this machine" in line and "frame shards (32 px stored), 8 "
          "frames a clip at 32 px, colour jitter on the host" in line), line
  assert "enough" in line and "NOT enough" not in line, line

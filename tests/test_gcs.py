"""gs:// everywhere, against a real GCS JSON API server on 127.0.0.1 (fake-gcs-server, tests/gcs_fixtures.py).

The clients are the ones a TPU pod uses (epath through gcsfs, Orbax's tensorstore, array_record's reader),
pointed at the server by environment variables; nothing here reaches another address. Covered: whole-object
writes, an unwritable workdir refused at start-up, the shrunk demo with a bucket workdir (uninterrupted, and
SIGKILLed then resumed to the same parameters), predict writing its CSV to the bucket, two `jax.distributed`
processes training from ArrayRecord shards in the bucket into one bucket workdir (a pod's set-up), and the
server going away during a checkpoint save, then a resume from the last complete checkpoint.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import fsspec.config
import ml_collections
import numpy as np
import portpicker
import pytest

from tests import gcs_fixtures, training_fixtures
from xclip_jax import storage

BUCKET = "xclip-test"


@pytest.fixture(scope="module")
def gcs(tmp_path_factory):
  """One server for the module (filesystem backend: it can be stopped and started again), this process's
  clients pointed at it, and a bucket."""
  root = tmp_path_factory.mktemp("gcs_root")
  server = gcs_fixtures.FakeGcs(root=root).start()
  saved = {k: os.environ.get(k) for k in server.client_env()}
  os.environ.update(server.client_env())
  fsspec.config.set_conf_env(fsspec.config.conf)  # fsspec read the environment when it was imported
  server.create_bucket(BUCKET)
  try:
    yield server
  finally:
    server.stop()
    for key, value in saved.items():
      if value is None:
        os.environ.pop(key, None)
      else:
        os.environ[key] = value


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
  return training_fixtures.make_dataset(tmp_path_factory.mktemp("synthetic") / "data")


def _env(server, devices: int = 1) -> dict[str, str]:
  env = training_fixtures.subprocess_env(devices)
  env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(training_fixtures.REPO), os.environ.get("PYTHONPATH")]))
  env.update(server.client_env())
  return env


def _run(command, server, *, devices: int = 1, timeout: int = 600) -> subprocess.CompletedProcess:
  result = subprocess.run(command, cwd=training_fixtures.REPO, env=_env(server, devices), capture_output=True,
                          text=True, timeout=timeout, check=False)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
  return result


def _objects(url: str) -> list[str]:
  return [os.fspath(p).removeprefix(url.rstrip("/") + "/") for p in storage.files_under(url)]


def _same_params(a: dict, b: dict) -> float:
  assert a.keys() == b.keys()
  return max(float(np.max(np.abs(a[p] - b[p]))) for p in a)


# ---------------------------------------------------------------------------------------------------------
# The storage module itself.


def test_whole_object_writes_keep_the_previous_version_on_failure(gcs, tmp_path):
  base = f"gs://{BUCKET}/unit"
  storage.write_text(f"{base}/results.json", "first\n")
  with pytest.raises(RuntimeError, match="writer failed"), storage.staged_file(f"{base}/results.json") as staging:
    staging.write_text("half of the sec")
    raise RuntimeError("writer failed")
  assert storage.path(f"{base}/results.json").read_text() == "first\n"  # never a partial object
  with storage.staged_file(f"{base}/results.json") as staging:
    staging.write_text("second\n")
  assert storage.path(f"{base}/results.json").read_text() == "second\n"

  with storage.staged_directory(f"{base}/model", last=["config.json"]) as folder:
    (folder / "config.json").write_text("{}")
    (folder / "sub").mkdir()
    (folder / "sub" / "weights.bin").write_bytes(b"\0" * 100)
  assert _objects(f"{base}/model") == ["config.json", "sub/weights.bin"]
  with pytest.raises(FileExistsError, match="not empty"), storage.staged_directory(f"{base}/model"):
    pass
  with storage.staged_directory(f"{base}/model", overwrite=True) as folder:
    (folder / "config.json").write_text('{"v": 2}')
  assert _objects(f"{base}/model") == ["config.json"]  # the old version's other objects are gone
  with storage.local_copy(f"{base}/model") as local:
    assert (local / "config.json").read_text() == '{"v": 2}'
  assert storage.glob(f"{base}/*/config.json") == [f"{base}/model/config.json"]

  from xclip_jax.data import bad_videos

  log = bad_videos.BadVideoLog(f"{base}/bad_videos.tsv")
  log.record(bad_videos.BAD, "gs://x/a.mp4", "cannot open")
  log.record(bad_videos.BAD, "gs://x/a.mp4", "cannot open")
  assert bad_videos.read_log(f"{base}/bad_videos.tsv") == {"gs://x/a.mp4": [2, "cannot open"]}
  assert bad_videos.BadVideoLog(f"{base}/bad_videos.tsv").rows == {"gs://x/a.mp4": [2, "cannot open"]}  # a resume

  assert storage.check_writable(f"{base}/probe") == storage.path(f"{base}/probe")
  assert _objects(f"{base}/probe") == []  # the probe is deleted again
  with pytest.raises(storage.StorageError, match=r"gs://no-such-bucket-x/run: bucket 'no-such-bucket-x' does not"):
    storage.check_writable("gs://no-such-bucket-x/run")
  (tmp_path / "file").write_text("x")
  with pytest.raises(storage.StorageError, match="cannot write to the workdir .*file/run: "):
    storage.check_writable(tmp_path / "file" / "run")


def test_tensorboard_events_reach_the_bucket_while_the_run_goes_on(gcs):
  from xclip_jax.evaluation import report
  from xclip_jax.training import metrics

  logdir = f"gs://{BUCKET}/events"
  writer = metrics.create_writer(logdir, sync_seconds=0)  # upload at every write (the default: every 30 s)
  assert isinstance(writer, metrics.MirroredWriter)
  writer.write_scalars(1, {"loss": 2.0})
  assert list(report.read_scalars(logdir, ("loss",))["loss"][0]) == [1]  # readable from the bucket already
  writer.write_scalars(2, {"loss": 1.0})
  writer.close()
  steps, values = report.read_scalars(logdir, ("loss",))["loss"]
  assert list(steps) == [1, 2] and list(values) == [2.0, 1.0]
  assert len(_objects(logdir)) == 1 and not writer.mirror.local.exists()  # one event file; local copy removed


def test_storage_check_command_exercises_every_client(gcs, capsys):
  assert storage.main(["check", f"gs://{BUCKET}/check"]) == 0
  out = capsys.readouterr().out
  for line in ("write, read back, delete a small object: ok", "Orbax checkpoint save + restore (tensorstore): ok",
               "ArrayRecord shard read (array_record's GCS reader): ok", "usable as a workdir from this machine"):
    assert line in out
  assert _objects(f"gs://{BUCKET}/check") == []  # nothing left behind
  assert storage.main(["check", "gs://no-such-bucket-x/runs"]) == 1
  assert "does not exist" in capsys.readouterr().err


def test_unwritable_workdir_is_refused_at_start_up(gcs, dataset, tmp_path):
  config_file = training_fixtures.write_config_file(training_fixtures.tiny_config(dataset), tmp_path / "tiny.py")
  started = time.perf_counter()
  result = subprocess.run(training_fixtures.main_command(config_file, "gs://no-such-bucket-x/runs/a"),
                          cwd=training_fixtures.REPO, env=_env(gcs), capture_output=True, text=True, timeout=300,
                          check=False)
  assert result.returncode == 1
  assert ("main: error: cannot write to the workdir gs://no-such-bucket-x/runs/a: bucket 'no-such-bucket-x' "
          "does not exist") in result.stderr
  assert "Traceback" not in result.stderr and "Mesh" not in result.stderr  # refused before any work
  print(f"refused after {time.perf_counter() - started:.1f} s (process start-up included)")


# ---------------------------------------------------------------------------------------------------------
# The shrunk demo with a bucket workdir: uninterrupted, and SIGKILLed then resumed.

DEMO = f"{training_fixtures.REPO / 'configs' / 'demo.py'}:shrink=true"


@pytest.fixture(scope="module")
def demo_reference(gcs):
  """The shrunk demo, uninterrupted, workdir in the bucket (its data generated there, under the workdir)."""
  workdir = f"gs://{BUCKET}/demo_reference"
  started = time.perf_counter()
  result = _run([sys.executable, "-m", "xclip_jax.main", f"--config={DEMO}", f"--workdir={workdir}",
                 *training_fixtures.SMALL_DEMO_DATA], gcs, timeout=900)
  print(f"uninterrupted demo: {time.perf_counter() - started:.0f} s")
  return workdir, result


def test_demo_on_a_bucket_writes_everything_there(demo_reference):
  from xclip_jax.evaluation import report

  workdir, result = demo_reference
  objects = _objects(workdir)
  assert storage.path(f"{workdir}/data/manifest.json").exists()  # the data went under the workdir
  for name in ("results.json", "report.png", "supervised/config.json", "few_shot/config.json",
               "supervised/checkpoints/20/commit_success.txt", "few_shot/checkpoints/4/commit_success.txt",
               "supervised/checkpoints/20/data/process_0-of-1.json"):
    assert name in objects, name
  results = json.loads(storage.path(f"{workdir}/results.json").read_text())
  assert results["supervised"]["num_classes"] == 16 and results["report"]["path"] == f"{workdir}/report.png"
  assert f"Report (example videos with their top-3 classes, training curves): {workdir}/report.png" in result.stdout
  # TensorBoard events were uploaded as they were written, and read back from the bucket.
  assert any(o.startswith("supervised/events.out.tfevents.") for o in objects)
  curves = report.read_scalars(f"{workdir}/supervised", ("loss", "eval/top1"))
  assert list(curves["loss"][0]) == [5, 10, 15, 20] and list(curves["eval/top1"][0]) == [10]
  assert not [o for o in objects if ".tmp" in o or "write_check" in o]  # no leftovers


def test_demo_on_a_bucket_killed_and_resumed_ends_with_the_uninterrupted_parameters(gcs, demo_reference, tmp_path):
  from xclip_jax.training.checkpointing import load_model_params

  reference, _ = demo_reference
  workdir = f"gs://{BUCKET}/demo_killed"
  command = [sys.executable, "-m", "xclip_jax.main", f"--config={DEMO}", f"--workdir={workdir}",
             *training_fixtures.SMALL_DEMO_DATA,
             f"--config.data.synthetic_dir={reference}/data"]  # the reference's videos: no second upload
  log_path = tmp_path / "first.log"
  started = time.perf_counter()
  with open(log_path, "w") as log:
    process = subprocess.Popen(command, cwd=training_fixtures.REPO, env=_env(gcs), stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)
    committed = storage.path(f"{workdir}/supervised/checkpoints/10/commit_success.txt")
    deadline = time.time() + 600
    while not committed.exists() and process.poll() is None and time.time() < deadline:
      time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)  # the host goes away: trainer and data workers
    process.wait()
  assert committed.exists(), log_path.read_text()[-3000:]
  assert not storage.path(f"{workdir}/results.json").exists(), "finished before the kill; the test proves nothing"

  result = _run(command, gcs, timeout=900)
  print(f"killed and resumed demo: {time.perf_counter() - started:.0f} s")
  assert f"Resumed from {workdir}/supervised/checkpoints/10 at step 10" in result.stderr
  for stage in ("supervised", "few_shot"):
    _, resumed = load_model_params(f"{workdir}/{stage}")
    _, uninterrupted = load_model_params(f"{reference}/{stage}")
    worst = _same_params(resumed, uninterrupted)
    print(f"{stage}: max |resumed - uninterrupted| = {worst:.2e}")
    assert worst < 1e-6
  ours = json.loads(storage.path(f"{workdir}/results.json").read_text())
  theirs = json.loads(storage.path(f"{reference}/results.json").read_text())
  assert {k: ours[k]["top1"] for k in ("supervised", "zero_shot", "few_shot")} == {
      k: theirs[k]["top1"] for k in ("supervised", "zero_shot", "few_shot")}


def test_predict_reads_and_writes_the_bucket(gcs, demo_reference):
  from xclip_jax import predict

  reference, _ = demo_reference
  videos = f"{reference}/data/videos/zero_shot/val"
  out = f"gs://{BUCKET}/predictions/zero_shot.csv"
  started = time.perf_counter()
  code = predict.main(["--checkpoint", f"{reference}/supervised", "--video", videos, "--labels-file",
                       f"{reference}/data/zero_shot/classes.csv", "--out", out, "--no-progress", "--top", "2"])
  print(f"predict: {time.perf_counter() - started:.1f} s")
  assert code == 0
  rows = storage.path(out).read_text().splitlines()
  listed = sorted(os.fspath(p) for p in storage.files_under(videos) if p.suffix == ".mp4")
  assert rows[0] == "path,status,message,label_1,probability_1,label_2,probability_2"
  assert sorted(r.split(",")[0] for r in rows[1:]) == listed and len(listed) == 4 * 2  # classes x val_per_class
  assert all(r.split(",")[1] == "ok" for r in rows[1:])
  assert predict.main(["--checkpoint", f"{reference}/supervised", "--video", videos, "--labels", "a,b",
                       "--out", "gs://no-such-bucket-x/p.csv"]) == 1  # refused before the work


def test_converter_and_load_model_read_and_write_the_bucket(gcs, tmp_path):
  import xclip_jax
  from scripts import convert_checkpoint
  from xclip_jax import pretrained
  from xclip_jax.models.config import variant_config
  from xclip_jax.models.params import flat_params
  from xclip_jax.models.xclip import create_model

  config = variant_config("tiny", frames=4, **training_fixtures.TINY_MODEL)
  params = flat_params(create_model(config, seed=0))
  local = pretrained.save_pretrained(tmp_path / "local", config, params)
  models = f"gs://{BUCKET}/models"
  assert convert_checkpoint.main(["--source", "jax", "--input", str(local), "--output", f"{models}/jax"]) == 0
  assert _objects(f"{models}/jax") == ["config.json", "params.safetensors"]
  assert convert_checkpoint.main(["--source", "jax", "--input", f"{models}/jax", "--to", "hf",
                                  "--output", f"{models}/hf"]) == 0
  assert convert_checkpoint.main(["--source", "hf", "--input", f"{models}/hf", "--output", str(tmp_path / "back")]) == 0
  assert convert_checkpoint.main(["--source", "jax", "--input", str(local), "--output", f"{models}/jax"]) == 1
  _, back = pretrained.load_pretrained(tmp_path / "back")
  assert _same_params(back, params) == 0.0  # local -> bucket -> HF format in the bucket -> local: unchanged
  model = xclip_jax.load_model(f"{models}/jax")  # read straight from the bucket
  assert model.config == config


# ---------------------------------------------------------------------------------------------------------
# Several processes, ArrayRecord shards, a storage outage during a save.


def test_two_processes_train_from_arrayrecord_shards_in_the_bucket_into_one_bucket_workdir(gcs, dataset, tmp_path):
  """The pod set-up: shards built into the bucket (scripts/build_arrayrecord.py writes locally, uploads), two
  `jax.distributed` processes each reading its own shards from there, one shared gs:// workdir."""
  from scripts import build_arrayrecord

  shards = f"gs://{BUCKET}/arrayrecord"
  for split in ("train", "val"):
    build_arrayrecord.build(str(dataset / "supervised" / f"{split}.txt"), str(dataset),
                            str(dataset / "supervised" / "classes.csv"), f"{shards}/{split}", prefix=split,
                            num_shards=2)
  assert _objects(f"{shards}/train") == ["classes.csv", "train-00000-of-00002.array_record",
                                         "train-00001-of-00002.array_record", "train_manifest.json"]
  config = training_fixtures.tiny_config(dataset, data=4, fsdp=2, tensor=1)
  config.data.source = "arrayrecord"
  config.data.arrayrecord = ml_collections.ConfigDict({"train": f"{shards}/train/train-*.array_record",
                                                       "val": f"{shards}/val/val-*.array_record"})
  config_file = training_fixtures.write_config_file(config, tmp_path / "distributed.py")
  workdir = f"gs://{BUCKET}/distributed"
  port = portpicker.pick_unused_port()
  processes, logs = [], [tmp_path / f"process_{index}.log" for index in range(2)]
  started = time.perf_counter()
  for index in range(2):  # output to files: a full pipe would stall one process and, through it, both
    command = training_fixtures.main_command(config_file, workdir, f"--coordinator-address=localhost:{port}",
                                             "--num-processes=2", f"--process-id={index}")
    with open(logs[index], "w") as log:
      processes.append(subprocess.Popen(command, cwd=training_fixtures.REPO, env=_env(gcs, 4), stdout=log,
                                        stderr=subprocess.STDOUT))
  for process in processes:
    process.wait(timeout=600)
  outputs = [log.read_text() for log in logs]
  print(f"two processes: {time.perf_counter() - started:.0f} s")
  for index, (process, output) in enumerate(zip(processes, outputs, strict=True)):
    assert process.returncode == 0, f"process {index}:\n{output[-4000:]}"
    assert f"Process {index} of 2, 4 local / 8 global devices" in output
    # Each program is compiled, then started on both processes together (sharding.ProcessAligned).
    assert "train step compiled; waiting for the other processes" in output
    assert "32 training videos, 16 classes" in output
  results = json.loads(storage.path(f"{workdir}/results.json").read_text())
  assert results["step"] == 2 and results["final"]["videos"] == 16  # every video counted once across hosts
  objects = _objects(workdir)
  for name in ("checkpoints/2/data/process_0-of-2.json", "checkpoints/2/data/process_1-of-2.json",
               "checkpoints/2/commit_success.txt", "config.json"):
    assert name in objects, name
  assert not [o for o in objects if "write_check" in o]  # both processes' probes are gone


def test_server_lost_during_a_checkpoint_save_then_resume_from_the_last_complete_one(gcs, dataset, tmp_path):
  config = training_fixtures.tiny_config(dataset)
  config.train.total_steps = 6
  config.checkpoint.every_steps = 2
  config.checkpoint.keep = 5
  config.eval.final_clips = 1
  config_file = training_fixtures.write_config_file(config, tmp_path / "outage.py")
  workdir = f"gs://{BUCKET}/outage"
  # The server dies when the second request uploading step 4's arrays arrives: mid-save.
  tripwire = gcs_fixtures.Tripwire(gcs, rb"uploadType=media&name=outage%2Fcheckpoints%2F4%2Fstate%2F", count=2)
  env = _env(gcs)
  env.update(tripwire.client_env())
  started = time.perf_counter()
  log_path = tmp_path / "first.log"
  with open(log_path, "w") as log:
    process = subprocess.Popen(training_fixtures.main_command(config_file, workdir), cwd=training_fixtures.REPO,
                               env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    tripped = tripwire.tripped.wait(timeout=600)
    try:
      process.wait(timeout=5)  # it may give up by itself; else it is stuck retrying: the host is lost
      print(f"the run stopped by itself (exit code {process.returncode})")
    except subprocess.TimeoutExpired:
      os.killpg(process.pid, signal.SIGKILL)
      process.wait()
      print("the run was still retrying after 5 s: killed")
  assert tripped, log_path.read_text()[-3000:]
  gcs.start()  # the same data: the filesystem backend kept every object written before the outage
  objects = _objects(workdir)
  assert "checkpoints/2/commit_success.txt" in objects
  print("step 4 after the outage:", [o for o in objects if o.startswith("checkpoints/4/")])
  assert any(o.startswith("checkpoints/4/") for o in objects), objects  # a partial step 4 ...
  assert "checkpoints/4/commit_success.txt" not in objects  # ... never marked complete

  result = subprocess.run(training_fixtures.main_command(config_file, workdir), cwd=training_fixtures.REPO,
                          env=env, capture_output=True, text=True, timeout=600, check=False)
  tripwire.close()
  print(f"outage and resume: {time.perf_counter() - started:.0f} s")
  assert result.returncode == 0, result.stderr[-6000:]
  assert f"Resumed from {workdir}/checkpoints/2 at step 2" in result.stderr
  objects = _objects(workdir)
  assert {"checkpoints/4/commit_success.txt", "checkpoints/6/commit_success.txt"} <= set(objects)
  assert json.loads(storage.path(f"{workdir}/results.json").read_text())["step"] == 6

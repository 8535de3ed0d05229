"""Two real JAX processes (jax.distributed on CPU) each read their own part of the data: disjoint, complete."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest

from xclip_jax.data import synthetic

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

WORKER = textwrap.dedent("""
    import json, os, sys
    import jax
    jax.distributed.initialize(coordinator_address=f"localhost:{sys.argv[1]}", num_processes=2,
                               process_id=int(sys.argv[2]))
    import numpy as np
    from xclip_jax.data import config, pipeline
    cfg = config.data_config(source="synthetic", synthetic_dir=sys.argv[3], num_frames=2, input_size=32,
                             resize_short=32, batch_size=8, eval_batch_size=6, num_workers=0, seed=3)
    it = pipeline.make_train_iterator(cfg)
    n_local = len(it.source.host_indices(jax.process_index(), jax.process_count()))
    train = [int(i) for _ in range(n_local // 4) for i in next(it)["index"]]  # One epoch of this host.
    ev = pipeline.make_eval_iterator(cfg)
    rows = [(int(i), bool(v)) for b in ev for i, v in zip(b["index"], b["valid"])]
    # The global batch assembles both hosts' rows on a mesh of all devices.
    mesh = jax.make_mesh((jax.device_count(),), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    g = pipeline.global_batch(next(it), mesh)
    out = {"process": jax.process_index(), "count": jax.process_count(), "train": train,
           "eval_rows": rows, "eval_batches": len(ev), "global_shape": list(g["video"].shape)}
    with open(sys.argv[4], "w") as f:
        json.dump(out, f)
""")


def _free_port():
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def test_two_processes_read_disjoint_complete_shards(tmp_path):
  data = str(tmp_path / "data")
  synthetic.generate(data, seed=2, size=32, frames=6, train_per_class=2, val_per_class=1, zero_shot_per_class=1,
                     few_shot_train_per_class=1, quiet=True)  # 32 train videos, 16 val videos.
  script = tmp_path / "worker.py"
  script.write_text(WORKER)
  port = str(_free_port())
  env = dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS="cpu",
             XLA_FLAGS="--xla_force_host_platform_device_count=2")
  procs = [subprocess.Popen([sys.executable, str(script), port, str(i), data, str(tmp_path / f"out{i}.json")],
                            env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
           for i in range(2)]
  logs = [p.communicate(timeout=240)[0] for p in procs]
  for p, log in zip(procs, logs, strict=True):
    if p.returncode != 0:
      pytest.fail(f"worker exited with {p.returncode}:\n{log[-3000:]}")
  outs = [json.loads((tmp_path / f"out{i}.json").read_text()) for i in range(2)]
  assert [o["count"] for o in outs] == [2, 2]
  train = [set(o["train"]) for o in outs]
  assert not train[0] & train[1] and train[0] | train[1] == set(range(32))
  assert all(len(o["train"]) == 16 for o in outs)  # Each host saw each of its videos once in an epoch.
  valid = [[i for i, v in o["eval_rows"] if v] for o in outs]
  assert not set(valid[0]) & set(valid[1]) and sorted(valid[0] + valid[1]) == list(range(16))
  assert outs[0]["eval_batches"] == outs[1]["eval_batches"]  # Lockstep.
  assert outs[0]["global_shape"] == [8, 2, 32, 32, 3]

"""scripts/benchmark_startup.py, cpu_ceiling.py and benchmark_suite.sh run as documented (tiny model; no time asserted).

The figures live in the scripts' output and docs/performance.md; what is checked is that every start-up phase runs with
the project's own functions for both layouts, and that the suite runs a part and refuses an unknown one.
"""

from __future__ import annotations

import json
import re

import pytest

from scripts import benchmark, benchmark_startup, cpu_ceiling
from xclip_jax.models.config import variant_config


def test_startup_benchmark_times_both_layouts(capsys, monkeypatch):
  monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=1")
  assert benchmark_startup.main(["--variant", "tiny", "--frames", "4", "--batch", "2", "--classes", "3",
                                 "--runs", "1", "--label", "here"]) == 0
  out = capsys.readouterr().out
  for layout in ("per-layer", "scan"):
    assert f"tiny {layout} run 1: create " in out and f"| tiny | here | {layout} |" in out


def test_unknown_layout_is_refused_naming_the_flag(capsys):
  with pytest.raises(SystemExit):
    benchmark_startup.main(["--layouts", "stacked"])
  assert "--layouts: unknown ['stacked']" in capsys.readouterr().err


def test_benchmark_suite_runs_a_part_and_refuses_an_unknown_one(tmp_path):
  """scripts/benchmark_suite.sh (the accelerator figures): its `device` part logs what the run sees."""
  import os
  import pathlib
  import subprocess
  import sys

  import jax

  script = pathlib.Path(__file__).resolve().parent.parent / "scripts" / "benchmark_suite.sh"
  done = subprocess.run([str(script), str(tmp_path), "device", "nonsense"], capture_output=True, text=True,
                        env={**os.environ, "PYTHON": sys.executable}, timeout=300)
  assert done.returncode == 1  # the unknown part fails the run; the known one still ran
  assert "unknown part 'nonsense' (choose from: device speed-b" in done.stderr
  assert "== device:" in done.stdout and "exit 0" in done.stdout
  assert jax.__version__ in (tmp_path / "device.log").read_text()


def test_cpu_ceiling_prints_each_librarys_rate_and_the_floor_a_measured_step_is_held_to(tmp_path, capsys):
  """The floor of a row is its step FLOPs at the best float32 rate printed; a peer's float32 step is set
  beside it (the most any float32 implementation could gain over that peer on the CPU)."""
  measured = {"model": "tiny-4", "batch": 2, "row": "infer", "framework": "hf", "dtype": "float32", "ms_per_step": 5.0}
  (tmp_path / "run.json").write_text(json.dumps({"results": [measured]}))
  assert cpu_ceiling.main(["--variant", "tiny", "--frames", "4", "--batch", "2", "--classes", "3", "--repeats", "1",
                           "--libraries", "xla:float32,numpy:float32,xla:bfloat16",
                           "--benchmark-json", str(tmp_path / "run.json")]) == 0
  out = capsys.readouterr().out
  rates = {(row, library, dtype): float(rate) for row, library, dtype, rate in
           re.findall(r"^\| (infer|train) \| (\w+) \| (\w+) \| ([\d.]+) \|", out, re.M)}
  assert set(rates) == {(row, lib, dt) for row in ("infer", "train")
                        for lib, dt in (("xla", "float32"), ("numpy", "float32"), ("xla", "bfloat16"))}
  best = max(rates[("infer", "xla", "float32")], rates[("infer", "numpy", "float32")])
  flops = benchmark.model_flops_per_step(variant_config("tiny", frames=4), "infer", 2, 3, train_text=False)
  floor_ms = float(re.search(r"measured infer hf float32: 5 ms/step, [\d.]+x the float32 floor \(([\d.e+-]+) ms\)",
                             out).group(1))
  assert floor_ms == pytest.approx(flops / best / 1e6, rel=0.05)  # the rates are printed rounded
  assert "the most a float32 implementation could gain over it here" in out


@pytest.mark.parametrize(("flags", "message"), [
    (["--libraries", "numpy:bfloat16"], "--libraries: unknown ['numpy:bfloat16']; choose from xla:float32"),
    (["--benchmark-json", "nowhere.json"], "--benchmark-json nowhere.json: not a scripts/benchmark.py --json file"),
    (["--variant", "B/33"], "--variant B/33: "),
])
def test_cpu_ceiling_refuses_bad_input_in_one_line_naming_it(flags, message, capsys):
  with pytest.raises(SystemExit) as exit_:
    cpu_ceiling.main(flags)
  assert exit_.value.code == 2
  err = capsys.readouterr().err
  assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err

"""scripts/benchmark_startup.py and scripts/benchmark_suite.sh run as documented (tiny model; no time asserted).

The figures live in the scripts' output and docs/performance.md; what is checked is that every start-up phase runs with
the project's own functions for both layouts, and that the suite runs a part and refuses an unknown one.
"""

from __future__ import annotations

import pytest

from scripts import benchmark_startup


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

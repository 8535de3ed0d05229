"""scripts/benchmark_startup.py on the tiny model: every phase is timed in fresh processes, for both layouts.

No time is asserted (the figures live in the script's output and the README); what is checked is that the
phases run with the project's own functions and that the table has a row per layout.
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

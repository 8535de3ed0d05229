"""scripts/benchmark.py end to end on a tiny model: both frameworks run the same model in their own processes.

No speed is asserted (speed targets live in the benchmark's output); what is checked is that the workers
run, report every figure, and that ours and HF's XCLIPModel compute the same first loss and logits from the
weights handed over by the converter (so the two rows really time the same model).
"""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from scripts import benchmark


def test_benchmark_runs_ours_beside_hf_on_the_same_model(tmp_path, monkeypatch, capsys):
  monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=1")  # workers: one CPU device
  out = tmp_path / "results.json"
  assert benchmark.main(["--peer", "hf", "--variant", "tiny", "--frames", "4", "--batch", "2", "--classes", "3",
                         "--steps", "1", "--repeats", "2", "--warmup", "1", "--json", str(out)]) == 0
  results = json.loads(out.read_text())["results"]
  assert [(r["row"], r["framework"]) for r in results] == [("train", "ours"), ("train", "hf"), ("infer", "ours"),
                                                           ("infer", "hf")]
  for r in results:
    assert r["ms_per_step"] > 0 and r["clips_per_s"] > 0 and r["tflops_per_device"] > 0
    assert r["peak_memory_bytes"] > 0 and r["memory_kind"] == "rss" and r["mfu"] is None  # CPU: no peak given
    assert len(r["ms_per_step_blocks"]) == 2
  ours_train, ours_infer = results[0], results[2]
  assert ours_train["compile_s"] > 0 and results[1]["compile_s"] is None
  assert len(ours_infer["check"]) == 2 * 3  # the logits (B, K) of the first inference step
  print("first loss / logits |ours - HF|:", ours_train["check_max_abs_diff"], ours_infer["check_max_abs_diff"])
  assert ours_train["check_max_abs_diff"] < 1e-4 and ours_infer["check_max_abs_diff"] < 1e-4
  assert len(ours_train["speed_vs_peer"]["each"]) == 2
  table = capsys.readouterr().out
  assert "| tiny-4 | train | xclip_jax | 2 | float32 |" in table and "| tiny-4 | infer | HF XCLIPModel |" in table


def test_benchmark_times_ours_against_ours_with_other_xla_flags(tmp_path, monkeypatch, capsys):
  monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=1")
  out = tmp_path / "results.json"
  flag = "--xla_cpu_experimental_ynn_fusion_type="  # matrix products by Eigen instead of YNNPACK
  assert benchmark.main(["--peer", "ours", f"--peer-xla-flags={flag}", "--variant", "tiny", "--frames", "4",
                         "--batch", "2", "--classes", "3", "--steps", "1", "--repeats", "2", "--warmup", "1",
                         "--rows", "infer", "--json", str(out)]) == 0
  ours, peer = json.loads(out.read_text())["results"]
  assert (ours["framework"], peer["framework"]) == ("ours", benchmark.PEER_OURS)
  assert flag not in ours["xla_flags"] and peer["xla_flags"].endswith(flag)  # as each worker process saw them
  assert len(ours["speed_vs_peer"]["each"]) == 2 and ours["check_max_abs_diff"] < 1e-5
  assert "| tiny-4 | infer | xclip_jax, --peer-xla-flags | 2 | float32 |" in capsys.readouterr().out

"""The main job, shortened: `configs/demo.py:shrink=true` end to end in a fresh process (data generation,
supervised training, multi-view evaluation, zero-shot, few-shot fine-tuning, results and table)."""

from __future__ import annotations

import json

from tests import training_fixtures


def test_shortened_demo_end_to_end(tmp_path):
  workdir = tmp_path / "demo"
  result = training_fixtures.run_main(training_fixtures.REPO / "configs" / "demo.py:shrink=true", workdir,
                                      f"--config.data.synthetic_dir={tmp_path / 'data'}", timeout=900)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
  assert (tmp_path / "data" / "manifest.json").exists()  # generated because it was missing
  results = json.loads((workdir / "results.json").read_text())
  for stage, classes in (("supervised", 16), ("zero_shot", 4), ("few_shot", 4)):
    assert results[stage]["num_classes"] == classes
    assert results[stage]["chance"] == 100.0 / classes
    assert 0.0 <= results[stage]["top1"] <= 100.0
  assert results["few_shot"]["k_shot"] == 2
  assert "X-CLIP demo on synthetic moving shapes" in result.stdout
  assert "zero-shot (4 unseen compositions)" in result.stdout
  assert (workdir / "supervised" / "checkpoints").is_dir() and (workdir / "few_shot" / "checkpoints").is_dir()

"""The main job, shortened: `configs/demo.py:shrink=true` end to end in a fresh process, run by
scripts/demo_seeds.py (data generation, supervised training, multi-view evaluation, zero-shot, few-shot
fine-tuning, results, table, report and the seeds summary)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tests import test_configs, training_fixtures
from xclip_jax import demo
from xclip_jax.data import decode, labels, sampling, synthetic
from xclip_jax.evaluation import report


def test_demo_refuses_data_generated_with_another_seed(tmp_path):
  synthetic.generate(str(tmp_path / "data"), seed=0, size=32, frames=16, style="plain", train_per_class=1,
                     val_per_class=1, zero_shot_per_class=1, few_shot_train_per_class=2, quiet=True)
  config = test_configs.load("demo.py", "seed=1")
  config.data.synthetic_dir = str(tmp_path / "data")
  with pytest.raises(ValueError, match=r"manifest.json was generated with other settings \(seed: 0 there vs 1"):
    demo.run_demo(config, tmp_path / "demo")
  assert not (tmp_path / "demo").exists()  # stopped before writing anything


def test_shortened_demo_end_to_end(tmp_path):
  """Through scripts/demo_seeds.py (one seed), as docs/demo.md measures the demo."""
  root = tmp_path / "seeds"
  command = [sys.executable, str(training_fixtures.REPO / "scripts" / "demo_seeds.py"), "--seeds", "1",
             "--config", f"{training_fixtures.REPO / 'configs' / 'demo.py'}:shrink=true", "--workdir", str(root),
             "--", *training_fixtures.SMALL_DEMO_DATA]
  result = subprocess.run(command, cwd=training_fixtures.REPO, env=training_fixtures.subprocess_env(),
                          capture_output=True, text=True, timeout=900, check=False)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
  workdir = root / "seed_0"
  assert (workdir / "data" / "manifest.json").exists()  # generated because it was missing
  assert json.loads((workdir / "data" / "manifest.json").read_text())["seed"] == 0
  results = json.loads((workdir / "results.json").read_text())
  for stage, classes in (("supervised", 16), ("zero_shot", 4), ("few_shot", 4)):
    assert results[stage]["num_classes"] == classes
    assert results[stage]["chance"] == 100.0 / classes
    assert 0.0 <= results[stage]["top1"] <= 100.0
  assert results["few_shot"]["k_shot"] == 2
  assert "X-CLIP demo on synthetic moving shapes" in result.stdout
  assert "zero-shot (4 unseen compositions)" in result.stdout
  assert (workdir / "supervised" / "checkpoints").is_dir() and (workdir / "few_shot" / "checkpoints").is_dir()
  summary = json.loads((root / "summary.json").read_text())
  assert summary["summary"]["supervised"] == {"min": results["supervised"]["top1"],
                                              "median": results["supervised"]["top1"],
                                              "max": results["supervised"]["top1"]}
  assert "Over 1 seeds: min / median / max" in result.stdout
  _check_report(workdir, workdir / "data", results, result.stdout)


def _check_report(workdir, data_dir, results, stdout):
  """report.png: one row per example (6 supervised, 3 zero-shot, 3 few-shot), each showing its video's
  sampled frames where the layout puts them, and the curves on top."""
  path = workdir / "report.png"
  assert f"{path}" in stdout
  rows = results["report"]["rows"]
  assert [r["section"] for r in rows] == ["supervised"] * 6 + ["zero-shot"] * 3 + ["few-shot K=2"] * 3
  for stage, section in (("supervised", "supervised"), ("zero_shot", "zero-shot"), ("few_shot", "few-shot K=2")):
    classes = labels.read_class_names(str(data_dir / stage / "classes.csv"))
    for row in (r for r in rows if r["section"] == section):
      probabilities = [p for _, p in row["top3"]]
      assert row["true"] in classes and all(c in classes for c, _ in row["top3"])
      assert probabilities == sorted(probabilities, reverse=True) and 0 <= sum(probabilities) <= 1 + 1e-3
      row["file"] = data_dir / "videos" / stage / "val" / row["video"]
  image = np.asarray(Image.open(path).convert("RGB"))
  layout = report.Layout()
  assert (image.shape[1], image.shape[0]) == layout.size(len(rows))
  for i, row in enumerate(rows):
    frames, _, _ = decode.read_frames(str(row["file"]), lambda n: sampling.segment_test(n, 8), name=row["video"])
    for j, frame in enumerate(frames):
      left, top, right, bottom = layout.frame_box(i, j, 8)
      shown = Image.fromarray(image[top:bottom, left:right]).resize(frame.shape[1::-1], Image.BOX)
      error = np.abs(np.asarray(shown, np.float64) - frame).mean()
      assert error < 3, f"{row['video']} frame {j}: the picture differs from the frame by {error:.1f} per pixel"

"""The synthetic dataset generator and the preview CLI."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from xclip_jax.data import decode, labels, synthetic

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
  d = str(tmp_path_factory.mktemp("syn") / "data")
  synthetic.generate(d, seed=4, size=32, frames=8, train_per_class=2, val_per_class=1, zero_shot_per_class=1,
                     few_shot_train_per_class=2, quiet=True)
  return d


def test_layout_and_class_words(data):
  with open(os.path.join(data, "manifest.json")) as f:
    manifest = json.load(f)
  assert manifest["seed"] == 4 and manifest["counts"]["supervised/train"] == 32
  sup = labels.read_class_names(os.path.join(data, "supervised", "classes.csv"))
  zs = labels.read_class_names(os.path.join(data, "zero_shot", "classes.csv"))
  fs = labels.read_class_names(os.path.join(data, "few_shot", "classes.csv"))
  assert len(sup) == 16 and len(zs) == 4 and len(fs) == 4 and not (set(sup) & set(zs) | set(sup) & set(fs))
  shapes_sup = {n.split(" ", 1)[0] for n in sup}
  motions_sup = {n.split(" ", 1)[1] for n in sup}
  for n in zs + fs:  # Held-out compositions of known words.
    shape, motion = n.split(" ", 1)
    assert shape in shapes_sup and motion in motions_sup
  for task, split in [("supervised", "train"), ("supervised", "val"), ("zero_shot", "val"), ("few_shot", "train")]:
    recs = labels.read_label_list(os.path.join(data, task, f"{split}.txt"), data)
    assert all(os.path.isfile(r.path) for r in recs)
  assert not os.path.exists(os.path.join(data, "zero_shot", "train.txt"))


def _centroid(frame, background):
  diff = np.abs(frame.astype(int) - background.astype(int)).sum(-1) > 60
  ys, xs = np.nonzero(diff)
  return xs.mean(), ys.mean()


@pytest.mark.parametrize("style", synthetic.STYLES)
def test_motion_follows_the_class_name(style):
  rng = np.random.default_rng(0)
  for motion in range(len(synthetic.MOTIONS)):
    for shape in range(len(synthetic.SHAPES)):
      frames = synthetic.render(shape, motion, np.random.default_rng(rng.integers(1 << 30)), 64, 8,
                                style).astype(int)
      name = synthetic.MOTIONS[motion]
      if name.startswith("moving"):
        # Background = per-pixel temporal median (a moving shape covers each pixel only briefly).
        bg = np.median(frames, axis=0)
        (x0, y0), (x1, y1) = _centroid(frames[0], bg), _centroid(frames[-1], bg)
        ok = {"moving left": x1 < x0 - 5, "moving right": x1 > x0 + 5, "moving up": y1 < y0 - 5,
              "moving down": y1 > y0 + 5}[name]
      else:
        # The pixels that change between the first and last frame belong to the shape in the bigger frame.
        changed = np.abs(frames[0] - frames[-1]).sum(-1) > 60
        ys, xs = np.nonzero(changed)
        fg = frames[0][int(ys.mean()), int(xs.mean())]  # The centre stays covered all along.
        closer_last = np.abs(frames[-1][changed] - fg).sum(-1).mean() < np.abs(frames[0][changed] - fg).sum(-1).mean()
        ok = closer_last if name == "growing" else not closer_last
      assert ok, (synthetic.SHAPES[shape], name)


def test_plain_style_has_a_flat_background_and_unknown_styles_fail():
  def most_common_colour_share(frame):
    _, counts = np.unique(frame.reshape(-1, 3), axis=0, return_counts=True)
    return counts.max() / counts.sum()

  assert most_common_colour_share(synthetic.render(0, 0, np.random.default_rng(0), 32, 8, "plain")[0]) > 0.5
  assert most_common_colour_share(synthetic.render(0, 0, np.random.default_rng(0), 32, 8, "textured")[0]) < 0.1
  with pytest.raises(ValueError, match="style"):
    synthetic.render(0, 0, np.random.default_rng(0), 32, 8, "noisy")


def test_unknown_style_fails_before_anything_is_written(tmp_path):
  with pytest.raises(ValueError, match="--style"):
    synthetic.generate(str(tmp_path / "out"), style="noisy", quiet=True)
  assert list(tmp_path.iterdir()) == []


def test_same_seed_same_content_and_refuses_overwrite(data, tmp_path):
  other = str(tmp_path / "again")
  synthetic.generate(other, seed=4, size=32, frames=8, train_per_class=2, val_per_class=1, zero_shot_per_class=1,
                     few_shot_train_per_class=2, quiet=True)
  rel = "videos/supervised/train/square_growing_001.mp4"
  a = decode.read_frames(os.path.join(data, rel), np.arange)[0]
  b = decode.read_frames(os.path.join(other, rel), np.arange)[0]
  np.testing.assert_array_equal(a, b)
  with pytest.raises(FileExistsError, match="--overwrite"):
    synthetic.generate(other, seed=5, size=32, frames=8, quiet=True)
  c = synthetic.render(0, 0, np.random.default_rng([5, 0]), 32, 8)
  assert not np.array_equal(c, synthetic.render(0, 0, np.random.default_rng([4, 0]), 32, 8))
  with pytest.raises(ValueError, match="even"):
    synthetic.generate(str(tmp_path / "odd"), size=33, quiet=True)


_WRITE_FOUR = """
import sys
import numpy as np
from xclip_jax.data import synthetic
for k in range(4):  # the demo's kind of video: 32 px, plain style
  frames = synthetic.render(3, k, np.random.default_rng([0, 5 + k]), 32, 16, "plain")
  synthetic.write_mp4(f"{sys.argv[1]}_{k}.mp4", frames)
"""


def test_the_same_frames_give_the_same_file_bytes_whatever_the_memory_held(tmp_path):
  """Each process fills new allocations with another byte (glibc MALLOC_PERTURB_), so an encoder that reads memory
  it never wrote gives other bytes (x264's AVX-512 code did: every demo run trained on slightly different data)."""
  for fill in (85, 170):
    subprocess.run([sys.executable, "-c", _WRITE_FOUR, str(tmp_path / f"fill{fill}")], check=True, cwd=REPO,
                   timeout=120, env=dict(os.environ, PYTHONPATH=REPO, MALLOC_PERTURB_=str(fill)))
  for k in range(4):
    first, second = (pathlib.Path(tmp_path / f"fill{fill}_{k}.mp4").read_bytes() for fill in (85, 170))
    assert first == second, f"video {k}: other bytes from the same frames"


def test_preview_cli_writes_a_contact_sheet(data, tmp_path):
  cfg = tmp_path / "cfg.py"
  cfg.write_text(
      "import ml_collections\nfrom xclip_jax.data.config import data_config\n"
      "def get_config():\n  c = ml_collections.ConfigDict()\n"
      f"  c.data = data_config(synthetic_dir={data!r}, num_frames=4, input_size=32, resize_short=32, batch_size=4,"
      " eval_batch_size=4)\n  return c\n")
  out = tmp_path / "sheet.png"
  done = subprocess.run([sys.executable, "-m", "xclip_jax.data.preview", "--config", str(cfg), "--split", "train",
                         "--out", str(out), "--config.data.seed=9"], capture_output=True, text=True, cwd=REPO,
                        env=dict(os.environ, PYTHONPATH=REPO), timeout=240)
  assert done.returncode == 0, done.stderr[-2000:]
  assert "video: ((4, 4, 32, 32, 3), 'uint8')" in done.stdout and "pixel_mean_rgb" in done.stdout
  from PIL import Image

  img = Image.open(out)
  assert img.size[1] == 4 * 96  # One row per clip (frames scaled to 96 px).

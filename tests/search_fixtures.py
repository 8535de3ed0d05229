"""Long videos with known segments and a small model trained on their classes, for the timeline and search tests.

A long video is synthetic clips (xclip_jax/data/synthetic.py, plain style, 32 px, 8 fps, 2 s each) joined
end to end: `SEGMENT_CLIPS` clips of one class make a segment, so the segment boundaries are known. The model
is trained as the demo trains one (from scratch, text tower too, the demo's position-embedding scale and
learning rate) through `python -m xclip_jax.main` with configs/finetune.py's folder layout, on 4 classes that
differ in shape and motion; small and short enough for the suite.
"""

from __future__ import annotations

import pathlib

import ml_collections
import numpy as np

from tests import training_fixtures
from tests.test_your_videos import load_finetune
from xclip_jax.data import synthetic

# Folder name -> (shape, motion) in synthetic.SHAPES / MOTIONS; readable names are the query texts.
# Each pair differs in shape and in motion (horizontal, vertical, size): a small model learns them in minutes.
CLASSES = {"CircleMovingLeft": (0, 0), "SquareMovingUp": (1, 2), "TriangleGrowing": (2, 4),
           "CrossShrinking": (3, 5)}
NAMES = ["circle moving left", "square moving up", "triangle growing", "cross shrinking"]
FPS = 8
CLIP_FRAMES = 16  # 2 s clips
SEGMENT_CLIPS = 1  # a segment is one clip: windows inside it see one continuous motion
FRAMES = 4
TRAIN_PER_CLASS = 48
STEPS = 600


def clip(shape: int, motion: int, seed) -> np.ndarray:
  return synthetic.render(shape, motion, np.random.default_rng(seed), 32, CLIP_FRAMES, "plain")


def write_training_folders(root: pathlib.Path) -> pathlib.Path:
  for split, count in (("train", TRAIN_PER_CLASS), ("val", 1)):
    for c, (name, (shape, motion)) in enumerate(CLASSES.items()):
      folder = root / split / name
      folder.mkdir(parents=True, exist_ok=True)
      for k in range(count):
        synthetic.write_mp4(str(folder / f"{name}_{k}.mp4"), clip(shape, motion, [split == "val", c, k]), fps=FPS)
  return root


def train_model(root: pathlib.Path, workdir: pathlib.Path) -> pathlib.Path:
  """A tiny X-CLIP trained from scratch for `STEPS` steps on the 4 classes; returns the workdir."""
  config = load_finetune(f"variant=tiny,frames={FRAMES},init=none")
  # The demo's model (configs/demo.py) at 4 frames: position embeddings at the scale of the tokens (motion needs them).
  config.model.overrides = ml_collections.ConfigDict(dict(
      image_size=32, patch_size=8, vision_width=96, vision_layers=3, vision_heads=3, vision_mlp_dim=192,
      text_width=64, text_layers=2, text_heads=2, text_mlp_dim=128, embed_dim=64, mit_heads=2, mit_mlp_dim=128,
      prompt_heads=2, video_position_init_std=1.0))
  config.data.root = str(root)
  config.data.num_workers = 0
  config.data.batch_size = 16
  config.data.eval_batch_size = 8
  config.data.resize_short = 36  # as predict and search views: short side 256/224 of 32, centre crop
  config.data.augment.flip = 0.0  # a flip turns "moving left" into "moving right"
  config.data.augment.color_jitter = 0.0
  config.data.augment.gray_scale = 0.0
  config.data.augment.scales = (0.875,)  # 32 px crops of the 36 px frames: the zoom of predict's centre crop
  config.train.total_steps = STEPS
  config.train.epochs = 10
  config.train.warmup_epochs = 1
  config.train.lr = 1e-3
  config.train.new_module_lr_multiplier = 1.0
  config.train.train_text = True
  config.train.mixup = 0.0
  config.train.label_smoothing = 0.0
  config.model.remat = False
  config.eval.every_steps = -1
  config.eval.final_clips = config.eval.final_crops = 1
  config.checkpoint.every_steps = STEPS
  config.log_every_steps = 20
  config_file = training_fixtures.write_config_file(config, workdir.parent / "search_model_config.py")
  run = training_fixtures.run_main(config_file, workdir)
  assert run.returncode == 0, run.stderr[-3000:]
  return workdir


def write_long_video(path: pathlib.Path, order: list[int], seed: int) -> list[tuple[float, float, int]]:
  """Segments of the classes in `order` (indices into CLASSES); returns [(start_s, end_s, class index)]."""
  frames, segments = [], []
  items = list(CLASSES.values())
  for s, c in enumerate(order):
    start = len(frames) * CLIP_FRAMES / FPS
    frames += [clip(*items[c], [seed, s, k]) for k in range(SEGMENT_CLIPS)]
    segments.append((start, len(frames) * CLIP_FRAMES / FPS, c))
  synthetic.write_mp4(str(path), np.concatenate(frames), fps=FPS)
  return segments

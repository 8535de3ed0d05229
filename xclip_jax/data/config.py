"""The `data` block of a run config: where videos come from and how clips are sampled and augmented.

`data_config(**overrides)` returns an `ml_collections.ConfigDict`; the defaults are X-CLIP's official
recipe (reference xclip.md §2.1, §3): 8 segment-sampled frames at 224, train augmentation with
MultiScaleCrop (1, .875, .75, .66), flip 0.5, colour jitter 0.8 (re-sampled per frame), grayscale 0.2,
test views from `xclip_jax.data.views` (short side 256 + centre crop, or short side 224 + 3 crops),
ImageNet normalisation on device.

Training code reads this block through `xclip_jax.data.pipeline.make_train_iterator` /
`make_eval_iterator`; nothing else should need its fields.
"""

from __future__ import annotations

import ml_collections

from xclip_jax.data import transforms, video_source
from xclip_jax.data.sampling import DEFAULT_MULTIVIEW_SAMPLING, MULTIVIEW_SAMPLINGS, SAMPLINGS

DECODE_BACKENDS = ("pyav", "decord")


def data_config(**overrides) -> ml_collections.ConfigDict:
  """Default data block; keyword arguments override fields (nested blocks accept dicts)."""
  c = ml_collections.ConfigDict()

  # --- Where the videos are -------------------------------------------------------------------------
  # "files": label lists of videos on disk (official format), "tfds": a TFDS video dataset read with
  # tfds.data_source, "arrayrecord": shards written by scripts/build_arrayrecord.py, "synthetic": the
  # generated moving-shapes dataset (python -m xclip_jax.data.synthetic), read like "files"; "folders":
  # data.root/{train,val,test}/<class name>/<videos> (xclip_jax.data.folders; docs/your_videos.md); "frames":
  # JPEG frame shards written by scripts/build_frame_shards.py (docs/frame_shards.md).
  c.source = "synthetic"
  # Folder the label-list paths are relative to (files source); the folder of train/ val/ test/ (folders).
  c.root = ""
  # Class names as words for the text tower: "ApplyEyeMakeup" -> "apply eye makeup" (folders source).
  c.readable_names = False
  # Folders source without train/ val/ test/: split each class folder of data.root by these fractions,
  # "train,val,test" (e.g. "0.7,0.15,0.15"), with a seed of its own (the split stays when data.seed changes).
  c.split_ratio = ""
  c.split_seed = 0
  # Official label lists: one `<relative path> <label id>` per line.
  c.train_list = ""
  c.val_list = ""
  # Class-name CSV (`id,name`); a path or a shipped list: kinetics_400, kinetics_600, hmdb_51, ucf_101.
  # Empty: the synthetic task's classes.csv, the TFDS label names, or the shards' classes.csv.
  c.class_names = ""
  # TFDS dataset name (with config), data dir (empty: TFDS default ~/tensorflow_datasets; a string, not None,
  # so that --config.data.tfds_data_dir=... can override it) and the TFDS split read for our "train" / "val"
  # splits (any TFDS split expression, e.g. "train[:90%]").
  c.tfds_name = "ucf101/ucf101_1_256"
  c.tfds_data_dir = ""
  c.tfds_split = ml_collections.ConfigDict({"train": "train", "val": "test"})
  # ArrayRecord shard patterns (glob) per split, e.g. "/data/k400_ar/train-*.array_record".
  c.arrayrecord = ml_collections.ConfigDict({"train": "", "val": ""})
  # Frame shards: the output folder of scripts/build_frame_shards.py per split, and the frame size and rate
  # they must have been built with (their index.json is checked against these; a mismatch is refused).
  # max_open_shards: shard readers kept open per worker (0: all; each holds ~17 bytes per frame of its shard).
  c.frames = ml_collections.ConfigDict({"train": "", "val": "", "short_side": 256, "fps": 10.0, "max_open_shards": 0})
  # Synthetic dataset: folder written by xclip_jax.data.synthetic, and which task to read from it:
  # "supervised" (train/val), "zero_shot" (val only; held-out compositions), "few_shot" (train/val).
  c.synthetic_dir = "runs/demo/data"
  c.synthetic_task = "supervised"
  # Few-shot protocol: if > 0, train on `k_shot` videos per class drawn with `k_shot_seed` (paper: 2-16).
  c.k_shot = 0
  c.k_shot_seed = 0

  # --- Clips -----------------------------------------------------------------------------------------
  c.num_frames = 8  # T frames per clip (X-CLIP: 8, 16 or 32).
  c.input_size = 224  # Square crop fed to the model.
  # Short side before cropping; 0 = official int(256 / 224 * input_size) (256 for 224, 384 for 336).
  c.resize_short = 0
  # "segment": TSN sparse sampling (official; random in each of T segments for training, centred for test).
  # "dense": T consecutive frames `dense_frame_interval` apart (random start for training, centred for test).
  c.sampling = "segment"
  c.dense_frame_interval = 2
  # How many evaluation views is the evaluation's choice (eval.final_clips x eval.final_crops in a run config;
  # predict's --clips x --crops). How clips > 1 are placed: "official" = independent random segment samplings
  # (X-CLIP's test pipeline), seeded by the video's file name, so a video gets the same views in main, predict
  # and the notebook; "uniform" = deterministic, clip k shifted by (k + 0.5) / clips of a segment (data.views).
  c.multiview_sampling = DEFAULT_MULTIVIEW_SAMPLING

  # --- Training augmentation (official values) --------------------------------------------------------
  c.augment = ml_collections.ConfigDict()
  c.augment.scales = (1.0, 0.875, 0.75, 0.66)  # MultiScaleCrop scales of the short side.
  c.augment.max_wh_scale_gap = 1  # Width and height scale indices differ by at most this.
  c.augment.flip = 0.5  # Horizontal flip probability (whole clip).
  c.augment.color_jitter = 0.8  # Probability to jitter a clip; factors re-sampled for every frame.
  c.augment.brightness = 0.4
  c.augment.contrast = 0.4
  c.augment.saturation = 0.2
  c.augment.hue = 0.1
  c.augment.gray_scale = 0.2  # Probability to turn the whole clip to 3-channel grayscale.
  # Colour jitter and grayscale on the device (the host draws the same random numbers and ships them with the
  # batch; xclip_jax.data.device_color): on this CPU the per-frame PIL jitter costs a frame-shard clip about
  # three times its JPEG decoding (docs/frame_shards.md). Pixel values match the host path up to rounding.
  c.augment.color_on_device = False

  # --- Loader ----------------------------------------------------------------------------------------
  c.batch_size = 256  # Global training batch (all processes); each process loads batch_size / process_count.
  c.eval_batch_size = 16  # Global evaluation batch (videos, each with all its views).
  c.num_workers = 4  # grain worker processes per host (0 = decode in the main process).
  c.prefetch = 2  # Batches buffered per worker (and in the main process's reader).
  # Threads decoding in parallel inside each worker (or in the main process with num_workers=0). PyAV and
  # decord release the GIL while decoding, so threads add throughput on spare cores; 1 keeps one core per worker.
  c.read_threads = 1
  c.seed = 1024  # Shuffling and augmentation seed (official default SEED).
  c.decode_backend = "pyav"  # "pyav" (default, maintained) or "decord" (optional, if installed).
  c.decode_threads = 1  # Threads per decoder; keep 1 with several workers (official: decord num_threads=1).
  # A missing/corrupt/truncated/too-short video is replaced by a random other one; after this many failed
  # replacements in a row the pipeline stops (something is wrong with the whole dataset).
  c.max_bad_retries = 20
  # Videos with fewer frames than this count as bad (0: any decodable video; short videos loop as official).
  c.min_video_frames = 1
  # If set, a TSV with one row per bad (or cut-off) file: `path<TAB>count<TAB>error`, rewritten atomically
  # as files are met (kept across resumes; process i > 0 of a multi-process run writes <stem>.process<i><ext>).
  c.bad_video_log = ""

  for key, value in overrides.items():
    if isinstance(value, dict) and isinstance(c.get(key), ml_collections.ConfigDict):
      c[key].update(value)
    elif key not in c:
      raise KeyError(f"unknown data config field {key!r}")
    else:
      c[key] = value
  validate(c)
  return c


def validate(c: ml_collections.ConfigDict) -> None:
  """Fails early, with the field name, on values the pipeline cannot use."""
  if c.source not in video_source.source_kinds():
    raise ValueError(f"data.source must be one of {video_source.source_kinds()}, got {c.source!r}")
  if c.sampling not in SAMPLINGS:
    raise ValueError(f"data.sampling must be one of {SAMPLINGS}, got {c.sampling!r}")
  if c.decode_backend not in DECODE_BACKENDS:
    raise ValueError(f"data.decode_backend must be one of {DECODE_BACKENDS}, got {c.decode_backend!r}")
  if c.multiview_sampling not in MULTIVIEW_SAMPLINGS:
    raise ValueError(f"data.multiview_sampling must be one of {MULTIVIEW_SAMPLINGS}, got {c.multiview_sampling!r}")
  for name in ("num_frames", "input_size", "batch_size", "eval_batch_size"):
    if int(c[name]) <= 0:
      raise ValueError(f"data.{name} must be positive, got {c[name]}")


def short_side(c: ml_collections.ConfigDict) -> int:
  """Short side before the crop: `resize_short`, or the official int(256 / 224 * input_size)."""
  return int(c.resize_short) or transforms.official_short_side(int(c.input_size))

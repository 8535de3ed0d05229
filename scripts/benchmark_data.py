"""Input-pipeline cost: clips per CPU-second from 10-second 340p MP4 files and from frame shards of the same videos.

    python scripts/benchmark_data.py [--workdir /tmp/xclip_bench] [--workers 1,2] [--frames 8,16] [--seconds 6]

Generates the test videos once (H.264, 454x340, 30 fps, 300 frames, x264 default keyframe interval 250, as
ffmpeg writes when users trim Kinetics clips), builds their frame shards once (scripts/build_frame_shards.py
defaults: short side 256, 10 fps, JPEG quality 90) and prints, all from those same videos:
  * the build: videos per CPU-second; bytes on disk per video, MP4 against frames;
  * fidelity: PSNR of the stored frames (decoded, resized to the short side 256) against the MP4 decode;
  * JPEG decoders here: ms per 341x256 frame, full and 1/2 scale (DCT domain);
  * where a frames clip's time goes (read + decode, crop + resize, colour jitter, grayscale);
  * per worker (one process, no grain): clips per CPU-second (robust to other load) and per wall-second for
    8 and 16 frames, train augmentation and test view (1 clip, centre crop): MP4 through PyAV, MP4 through
    decord, the official X-CLIP decord path (decord on the file bytes, frames read one by one at full size,
    resize + the same augmentation) and frame shards; the ratio frames / PyAV;
  * in total through grain (`make_train_iterator`, batches of 8) for each --workers count: clips per
    wall-second and per CPU-second of all its processes, frames against PyAV;
  * vCPUs per chip each format needs to feed the chip rates given with --chip_rates.
Numbers depend on the machine: report them with its CPU count and load.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time

import numpy as np

from xclip_jax.data import config, decode, frame_build, frame_shards, jpeg, labels, sampling, synthetic, transforms
from xclip_jax.data.frame_extract import FrameSettings

SIZE, SHORT = 224, 256
SETTINGS = FrameSettings(short_side=256, fps=10.0, quality=90)


def make_videos(workdir: str, n: int, frames: int, width: int, height: int) -> list[str]:
  """Moving-texture videos (content changes every frame, so the encoder does real work)."""
  os.makedirs(workdir, exist_ok=True)
  paths = []
  for k in range(n):
    path = os.path.join(workdir, f"bench_{k:02d}_{width}x{height}_{frames}.mp4")
    if not os.path.exists(path):
      rng = np.random.default_rng(k)
      tex = rng.integers(0, 256, (height // 4 + 1, (width + frames * 2) // 4 + 1, 3), dtype=np.uint8)
      tex = np.repeat(np.repeat(tex, 4, 0), 4, 1)
      clip = np.stack([tex[:height, 2 * i:2 * i + width] for i in range(frames)])
      clip[:, height // 3:height // 3 + 40, :, 0] = (np.arange(frames) * 7 % 256)[:, None, None]
      tmp = path + ".tmp.mp4"
      synthetic.write_mp4(tmp, clip, fps=30, crf=23)
      os.replace(tmp, path)
    paths.append(path)
  return paths


def build_frames(workdir: str, paths: list[str]) -> tuple[str, dict]:
  """Frame shards of the benchmark videos (built once, in this process so that its CPU time is exact)."""
  out = os.path.join(workdir, f"frames_{len(paths)}_{os.path.basename(paths[0]).split('_', 2)[2]}")
  if not os.path.exists(os.path.join(out, frame_shards.INDEX_NAME)):
    entries = [frame_build.VideoEntry(p, 0, os.path.basename(p)) for p in paths]
    frame_build.build(entries, ["bench"], out, SETTINGS, videos_per_shard=4, workers=1, progress=False,
                      overwrite=True)
  return out, frame_shards.read_index(out).build


# ---------------------------------------------------------------------------------------------------------
# One clip, each way.


def _train(frames, rng, t):
  return transforms.train_clip(frames, rng, input_size=SIZE, short=SHORT)


def _test(frames):
  return transforms.test_views(frames, clips=1, crops=1, input_size=SIZE, short=SHORT)[0]


def _pick(train: bool, t: int, rng):
  return (lambda n: sampling.segment_train(n, t, rng)) if train else (lambda n: sampling.segment_test(n, t))


def clip_mp4(path, backend, train, t, rng):
  frames, _, _ = decode.read_frames(path, _pick(train, t, rng), backend=backend, short_side=SHORT)
  return _train(frames, rng, t) if train else _test(frames)


def clip_official(path, train, t, rng):
  """X-CLIP's path: decord on the file bytes, one frame at a time (`container[i]`), full resolution."""
  import decord

  with open(path, "rb") as f:
    reader = decord.VideoReader(io.BytesIO(f.read()), num_threads=1)
  idx = _pick(train, t, rng)(len(reader))
  cache = {int(i): reader[int(i)].asnumpy() for i in np.unique(idx)}
  frames = np.stack([cache[int(i)] for i in idx])
  return _train(frames, rng, t) if train else _test(frames)


def clip_frames(source, i, train, t, rng):
  frames, _, _ = frame_shards.load_frames(source[i], _pick(train, t, rng), short_side=SHORT)
  return _train(frames, rng, t) if train else _test(frames)


def per_worker(fn, count: int, seconds: float, t: int) -> tuple[float, float]:
  """(clips per CPU-second of this process, clips per wall-second), over at least `seconds` CPU-seconds."""
  rng = np.random.default_rng(0)
  fn(0, rng)  # Warm-up (imports, codec init, shard readers).
  cpu, wall = time.process_time(), time.perf_counter()
  clips = 0
  while clips < 4 or time.process_time() - cpu < seconds:
    out = fn(clips % count, rng)
    assert out.shape == (t, SIZE, SIZE, 3) and out.dtype == np.uint8
    clips += 1
  return clips / (time.process_time() - cpu), clips / (time.perf_counter() - wall)


# ---------------------------------------------------------------------------------------------------------
# Build size, fidelity, decoders, breakdown.


def psnr(a: np.ndarray, b: np.ndarray) -> float:
  mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
  return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def fidelity(paths, source) -> list[float]:
  """PSNR per video of 8 test-sampled stored frames (short side 256) against the same instants decoded from MP4."""
  out = []
  for i, path in enumerate(paths):
    stored, idx, n = frame_shards.load_frames(source[i], lambda n: sampling.segment_test(n, 8), short_side=SHORT)
    same_instants = np.round(idx * 30.0 / float(source.index.fps[i])).astype(np.int64)
    mp4, _, _ = decode.read_frames(path, lambda n, want=same_instants: want, short_side=SHORT)
    out.append(psnr(stored, mp4))
  return out


def decoder_rows(blob: bytes, repeats: int) -> list[tuple[str, float, float]]:
  """(decoder, ms per frame at full size, ms at 1/2 scale) for the JPEG decoders importable here."""
  def timed(fn):
    fn()
    start = time.process_time()
    for _ in range(repeats):
      fn()
    return (time.process_time() - start) / repeats * 1000

  rows = [(f"{b} (data.source=frames uses {jpeg.default_backend()})" if b == jpeg.default_backend() else b,
           timed(lambda b=b: jpeg.decode(blob, backend=b)),
           timed(lambda b=b: jpeg.decode(blob, min_short=128, backend=b))) for b in jpeg.available_backends()]
  try:
    import turbojpeg

    tj = turbojpeg.TurboJPEG()
    rows.append(("PyTurboJPEG", timed(lambda: tj.decode(blob)), timed(lambda: tj.decode(blob, scaling_factor=(1, 2)))))
  except Exception as e:  # Not installed, or its libturbojpeg missing or too old: say which.
    rows.append((f"PyTurboJPEG: not usable here ({type(e).__name__}: {str(e).splitlines()[0][:80]})", np.nan, np.nan))
  return rows


def breakdown(source, t: int, clips: int) -> dict[str, float]:
  """ms per frames clip (train) spent reading + decoding, cropping + resizing (and flip), jittering, graying."""
  rng = np.random.default_rng(1)
  spent = {"read + decode": 0.0, "crop + resize + flip": 0.0, "colour jitter (p 0.8)": 0.0, "grayscale (p 0.2)": 0.0}
  for k in range(clips):
    start = time.process_time()
    frames, _, _ = frame_shards.load_frames(source[k % len(source)], _pick(True, t, rng), short_side=SHORT)
    spent["read + decode"] += time.process_time() - start
    start = time.process_time()
    box = transforms.multiscale_crop_box(frames.shape[1], frames.shape[2], SIZE, (1, .875, .75, .66), 1, rng)
    frames = transforms.crop_resize(frames, box, SIZE)
    frames = frames[:, :, ::-1] if rng.random() < 0.5 else frames
    spent["crop + resize + flip"] += time.process_time() - start
    start = time.process_time()
    if rng.random() < 0.8:
      frames = transforms.color_jitter(frames, rng)
    spent["colour jitter (p 0.8)"] += time.process_time() - start
    start = time.process_time()
    if rng.random() < 0.2:
      frames = transforms.grayscale(frames)
    spent["grayscale (p 0.2)"] += time.process_time() - start
  return {k: v / clips * 1000 for k, v in spent.items()}


# ---------------------------------------------------------------------------------------------------------
# Through grain, with worker processes.


def _tree_cpu_seconds() -> float:
  """CPU seconds of this process and its live children (Linux /proc; elsewhere this process only)."""
  total = time.process_time()
  if not os.path.isdir("/proc"):
    return total
  tick = os.sysconf("SC_CLK_TCK")
  for entry in os.listdir("/proc"):
    if not entry.isdigit():
      continue
    try:
      with open(f"/proc/{entry}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
      continue
    if int(fields[1]) == os.getpid():
      total += (int(fields[11]) + int(fields[12])) / tick
  return total


def pipeline_total(cfg, workers: int, seconds: float, batch: int) -> tuple[float, float]:
  """(clips per wall-second, clips per CPU-second of all processes) through `make_train_iterator`."""
  from xclip_jax.data import pipeline

  cfg = cfg.copy_and_resolve_references()
  cfg.num_workers, cfg.batch_size = workers, batch
  it = pipeline.make_train_iterator(cfg, process_index=0, process_count=1)
  for _ in range(max(workers, 1) * 3 + 1):  # Worker start-up, then drain the buffers: time the steady state.
    next(it)
  cpu, start, clips = _tree_cpu_seconds(), time.perf_counter(), 0
  while clips < 4 * batch or time.perf_counter() - start < seconds:
    b = next(it)
    clips += batch
  wall, cpu = time.perf_counter() - start, _tree_cpu_seconds() - cpu
  assert b["video"].shape == (batch, cfg.num_frames, SIZE, SIZE, 3)
  it.close()
  return clips / wall, clips / cpu


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--workdir", default="/tmp/xclip_bench")
  p.add_argument("--videos", type=int, default=8)
  p.add_argument("--seconds", type=float, default=6.0, help="CPU-seconds timed per per-worker row")
  p.add_argument("--workers", default="1,2", help="grain worker counts for the totals (e.g. 1,2,16,64 on a TPU host)")
  p.add_argument("--frames", default="8,16", help="clip lengths T")
  p.add_argument("--chip_rates", default="B/32-8:400,B/16-8:100,B/16-16:50",
                 help="model:clips per second per chip to feed (for the vCPUs-per-chip table)")
  p.add_argument("--quick", action="store_true", help="tiny videos and counts (smoke test)")
  a = p.parse_args(argv)
  frames, width, height = (300, 454, 340) if not a.quick else (30, 320, 240)
  seconds = a.seconds if not a.quick else 0.2
  paths = make_videos(a.workdir, a.videos if not a.quick else 2, frames, width, height)
  shards, build = build_frames(a.workdir, paths)
  source = frame_shards.FrameShardSource(shards, short_side=SETTINGS.short_side, fps=SETTINGS.fps)
  have_decord = decode.decord_available()
  lengths = [int(x) for x in a.frames.split(",")]
  print(f"{len(paths)} videos {width}x{height}, {frames} frames at 30 fps, H.264 crf 23; frames {SIZE}x{SIZE}; "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; {time.strftime('%Y-%m-%d')}")
  mp4_bytes = np.mean([os.path.getsize(q) for q in paths])
  frame_bytes = build["bytes"] / max(build["stored"], 1)
  print(f"build (short side {SETTINGS.short_side}, {SETTINGS.fps:g} fps, JPEG q{SETTINGS.quality}): "
        f"{build['videos_per_cpu_second']:.2f} videos per CPU-second; on disk per video: MP4 {mp4_bytes / 1e6:.2f} MB, "
        f"frames {frame_bytes / 1e6:.2f} MB ({frame_bytes / mp4_bytes:.2f}x), "
        f"{build['frames'] / max(build['stored'], 1):.0f} frames of {source.index.width[0]}x{source.index.height[0]}")
  scores = fidelity(paths, source)
  print(f"fidelity: PSNR of stored frames vs the MP4 decode (short side {SHORT}): "
        f"{min(scores):.1f}-{max(scores):.1f} dB over {len(scores)} videos")
  blob = source.read_records(0, np.array([0]))[0]
  print(f"JPEG decoders, ms per {source.index.width[0]}x{source.index.height[0]} frame (CPU): full | 1/2 scale")
  for name, full, half in decoder_rows(blob, 20 if a.quick else 300):
    print(f"  {name:44s} {full:6.3f} | {half:6.3f}")
  parts = breakdown(source, lengths[0], 4 if a.quick else 60)
  print(f"frames clip, train, T={lengths[0]}: ms per clip (CPU): "
        + ", ".join(f"{k} {v:.1f}" for k, v in parts.items()))

  rows = [("MP4, PyAV", lambda i, r, tr, t: clip_mp4(paths[i], "pyav", tr, t, r), len(paths), True)]
  if have_decord:
    rows += [("MP4, decord", lambda i, r, tr, t: clip_mp4(paths[i], "decord", tr, t, r), len(paths), True),
             ("MP4, official decord path", lambda i, r, tr, t: clip_official(paths[i], tr, t, r), len(paths), False)]
  rows.append(("frame shards", lambda i, r, tr, t: clip_frames(source, i, tr, t, r), len(source), True))
  columns = [(t, train) for t in lengths for train in (True, False)]
  print("per worker (one process): clips per CPU-second | per wall-second")
  print(f"  {'':28s}" + "".join(f"{f'T={t} ' + ('train' if tr else 'test'):>18s}" for t, tr in columns))
  rates: dict[tuple[str, int, bool], float] = {}
  for name, fn, count, has_test in rows:
    line = f"  {name:28s}"
    for t, train in columns:
      if not train and not has_test:
        line += f"{'-':>18s}"
        continue
      cpu_rate, wall_rate = per_worker(lambda i, r, fn=fn, t=t, train=train: fn(i, r, train, t), count, seconds, t)
      rates[name, t, train] = cpu_rate
      line += f"{cpu_rate:9.2f} |{wall_rate:7.2f}"
    print(line, flush=True)
  print("  frames / MP4-PyAV, clips per CPU-second: " + ", ".join(
      f"T={t} {'train' if tr else 'test'} {rates['frame shards', t, tr] / rates['MP4, PyAV', t, tr]:.1f}x"
      for t, tr in columns))

  list_path, csv_path = os.path.join(a.workdir, "bench_list.txt"), os.path.join(a.workdir, "bench_classes.csv")
  labels.write_label_list([(q, 0) for q in paths], list_path)
  labels.write_class_names(["bench"], csv_path)
  common = dict(num_frames=lengths[0], input_size=SIZE, prefetch=2)
  mp4_cfg = config.data_config(source="files", train_list=list_path, class_names=csv_path, **common)
  frames_cfg = config.data_config(source="frames", frames={"train": shards}, **common)
  print(f"total through grain, T={lengths[0]} train, batches of 8: clips per wall-second | per CPU-second (all "
        f"processes)")
  for w in [int(x) for x in a.workers.split(",")]:
    got = {name: pipeline_total(cfg, w, seconds, min(8, len(paths))) for name, cfg in (("PyAV", mp4_cfg),
                                                                                         ("frames", frames_cfg))}
    print(f"  {w:3d} worker(s): " + "   ".join(f"{n} {wall:7.1f} | {cpu:6.1f}" for n, (wall, cpu) in got.items()),
          flush=True)

  t = lengths[0]
  print(f"vCPUs per chip to feed T={t} training (clips/s per chip / clips per CPU-second per worker, train "
        f"augmentation on the host):")
  for spec in a.chip_rates.split(","):
    model, rate = spec.split(":")
    needs = ", ".join(f"{name} {float(rate) / rates[name, t, True]:.0f}" for name, *_ in rows
                      if (name, t, True) in rates)
    print(f"  {model} at {rate} clips/s per chip: {needs}")
  return 0


if __name__ == "__main__":
  sys.exit(main())

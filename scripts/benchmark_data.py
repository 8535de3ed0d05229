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
  * vCPUs per chip each format needs to feed the chip rates given with --chip-rates.
Numbers depend on the machine: report them with its CPU count and load.
"""

from __future__ import annotations

import io
import os
import sys
import time

import numpy as np

from xclip_jax import cli
from xclip_jax.data import (
  config,
  decode,
  device_color,
  frame_build,
  frame_shards,
  jpeg,
  labels,
  sampling,
  synthetic,
  transforms,
)
from xclip_jax.data.frame_extract import FrameSettings

SIZE, SHORT = 224, 256
TRAIN, DEVICE, TEST = "train", "train, colour on device", "test"  # What a clip gets (test: 1 clip, centre crop).
SETTINGS = FrameSettings(short_side=256, fps=10.0, quality=90)


def _pink_noise(rng: np.random.Generator, height: int, width: int, alpha: float) -> np.ndarray:
  """Colour noise with a natural image's 1/f^alpha amplitude spectrum, channels correlated; zero mean, unit std."""
  fy, fx = np.fft.fftfreq(height)[:, None], np.fft.rfftfreq(width)[None, :]
  f = np.sqrt(fx ** 2 + fy ** 2)
  f[0, 0] = 1.0
  planes = []
  for _ in range(3):
    spectrum = (rng.normal(size=f.shape) + 1j * rng.normal(size=f.shape)) / f ** alpha
    spectrum[0, 0] = 0
    planes.append(np.fft.irfft2(spectrum, s=(height, width)))
  image = np.stack(planes, -1) @ np.array([[1, .6, .5], [.6, 1, .6], [.5, .6, 1]])
  return (image - image.mean()) / image.std()


def natural_clip(seed: int, frames: int, width: int, height: int) -> np.ndarray:
  """A panning camera over a 1/f-textured scene with six textured objects moving across it, a slow lighting
  change and sensor noise: natural-image statistics, so JPEG and H.264 sizes and decode costs are realistic."""
  rng = np.random.default_rng(seed)
  background = _pink_noise(rng, height + 64, width + frames, 1.45) * 45 + rng.uniform(90, 160, 3)
  objects = []
  for _ in range(6):
    texture = _pink_noise(rng, 96, 96, 1.3) * 30 + rng.uniform(40, 220, 3)
    objects.append((texture, rng.uniform(20, 45), rng.uniform(0, width), rng.uniform(0, height),
                    rng.uniform(-3, 3), rng.uniform(-2, 2)))
  out = np.empty((frames, height, width, 3), np.uint8)
  for i in range(frames):
    dy = int(16 + 8 * np.sin(i / 40))
    frame = background[dy:dy + height, i:i + width].copy()
    for texture, r, x0, y0, vx, vy in objects:
      cx, cy = (x0 + vx * i) % width, (y0 + vy * i) % height
      x1, x2 = int(max(cx - 1.3 * r, 0)), int(min(cx + 1.3 * r + 1, width))
      y1, y2 = int(max(cy - r, 0)), int(min(cy + r + 1, height))
      yy, xx = np.mgrid[y1:y2, x1:x2]
      inside = (xx - cx) ** 2 / (1.3 * r) ** 2 + (yy - cy) ** 2 / r ** 2 < 1
      frame[y1:y2, x1:x2][inside] = texture[(yy[inside] - int(cy)) % 96, (xx[inside] - int(cx)) % 96]
    frame = frame * (1 + 0.1 * np.sin(i / 50)) + rng.normal(0, 2.5, frame.shape)
    out[i] = np.clip(frame, 0, 255)
  return out


def texture_clip(seed: int, frames: int, width: int, height: int) -> np.ndarray:
  """The README's earlier benchmark content: random 4-pixel blocks scrolling 2 pixels a frame (cheap for H.264's
  motion search, expensive for JPEG: kept for comparison with that figure)."""
  rng = np.random.default_rng(seed)
  tex = rng.integers(0, 256, (height // 4 + 1, (width + frames * 2) // 4 + 1, 3), dtype=np.uint8)
  tex = np.repeat(np.repeat(tex, 4, 0), 4, 1)
  clip = np.stack([tex[:height, 2 * i:2 * i + width] for i in range(frames)])
  clip[:, height // 3:height // 3 + 40, :, 0] = (np.arange(frames) * 7 % 256)[:, None, None]
  return clip


CONTENT = {"natural": natural_clip, "texture": texture_clip}


def make_videos(workdir: str, n: int, frames: int, width: int, height: int, content: str) -> list[str]:
  """H.264 mp4s (crf 23, x264's default keyframe interval 250), written once and reused."""
  os.makedirs(workdir, exist_ok=True)
  paths = []
  for k in range(n):
    path = os.path.join(workdir, f"bench_{content}_{k:02d}_{width}x{height}_{frames}.mp4")
    if not os.path.exists(path):
      tmp = path + ".tmp.mp4"
      synthetic.write_mp4(tmp, CONTENT[content](k, frames, width, height), fps=30, crf=23)
      os.replace(tmp, path)
    paths.append(path)
  return paths


def build_frames(workdir: str, paths: list[str]) -> tuple[str, dict]:
  """Frame shards of the benchmark videos (built once, in this process so that its CPU time is exact)."""
  out = os.path.join(workdir, f"frames_{len(paths)}_{os.path.basename(paths[0]).removeprefix('bench_')}")
  if not os.path.exists(os.path.join(out, frame_shards.INDEX_NAME)):
    entries = [frame_build.VideoEntry(p, 0, os.path.basename(p)) for p in paths]
    frame_build.build(entries, ["bench"], out, SETTINGS, videos_per_shard=4, workers=1, progress=False,
                      overwrite=True)
  return out, frame_shards.read_index(out).build


# ---------------------------------------------------------------------------------------------------------
# One clip, each way.


def _train(frames, rng, color_on_device=False):
  if color_on_device:  # The host's part only: geometry and the colour draws (device_color applies them).
    video = transforms.train_geometry(frames, rng, input_size=SIZE, short=SHORT)
    transforms.color_params(rng, len(video))
    return video
  return transforms.train_clip(frames, rng, input_size=SIZE, short=SHORT)


def _test(frames):
  return transforms.test_views(frames, clips=1, crops=1, input_size=SIZE, short=SHORT)[0]


def _pick(train: bool, t: int, rng):
  return (lambda n: sampling.segment_train(n, t, rng)) if train else (lambda n: sampling.segment_test(n, t))


def clip_mp4(path, backend, mode, t, rng):
  frames, _, _ = decode.read_frames(path, _pick(mode != TEST, t, rng), backend=backend, short_side=SHORT)
  return _test(frames) if mode == TEST else _train(frames, rng, mode == DEVICE)


def clip_official(path, mode, t, rng):
  """X-CLIP's path: decord on the file bytes, one frame at a time (`container[i]`), full resolution."""
  import decord

  with open(path, "rb") as f:
    reader = decord.VideoReader(io.BytesIO(f.read()), num_threads=1)
  idx = _pick(mode != TEST, t, rng)(len(reader))
  cache = {int(i): reader[int(i)].asnumpy() for i in np.unique(idx)}
  frames = np.stack([cache[int(i)] for i in idx])
  return _test(frames) if mode == TEST else _train(frames, rng, mode == DEVICE)


def clip_frames(source, i, mode, t, rng):
  frames, _, _ = frame_shards.load_frames(source[i], _pick(mode != TEST, t, rng), short_side=SHORT)
  return _test(frames) if mode == TEST else _train(frames, rng, mode == DEVICE)


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
  p = cli.parser(description=__doc__)
  p.add_argument("--workdir", default="/tmp/xclip_bench")
  p.add_argument("--videos", type=int, default=8)
  p.add_argument("--seconds", type=float, default=6.0, help="CPU-seconds timed per per-worker row")
  p.add_argument("--workers", default="1,2", help="grain worker counts for the totals (e.g. 1,2,16,64 on a TPU host)")
  p.add_argument("--frames", default="8,16", help="clip lengths T")
  p.add_argument("--chip-rates", default="B/32-8:400,B/16-8:100,B/16-16:50",
                 help="model-T:clips per second per chip to feed (for the vCPUs-per-chip table)")
  p.add_argument("--content", choices=sorted(CONTENT), default="natural",
                 help="natural: 1/f-textured scene, moving objects, noise (realistic sizes); texture: the README's "
                      "earlier scrolling random blocks")
  p.add_argument("--quick", action="store_true", help="tiny videos and counts (smoke test)")
  a = p.parse_args(argv)
  frames, width, height = (300, 454, 340) if not a.quick else (30, 320, 240)
  seconds = a.seconds if not a.quick else 0.2
  paths = make_videos(a.workdir, a.videos if not a.quick else 2, frames, width, height, a.content)
  shards, build = build_frames(a.workdir, paths)
  source = frame_shards.FrameShardSource(shards, short_side=SETTINGS.short_side, fps=SETTINGS.fps)
  have_decord = decode.decord_available()
  lengths = [int(x) for x in a.frames.split(",")]
  rates: dict[tuple[str, int, str], float] = {}
  print(f"{len(paths)} {a.content} videos {width}x{height}, {frames} frames at 30 fps, H.264 crf 23, keyframes every "
        f"250; clips {SIZE}x{SIZE}; "
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

  rows = [("MP4, PyAV", lambda i, r, m, t: clip_mp4(paths[i], "pyav", m, t, r), len(paths), (TRAIN, DEVICE, TEST))]
  if have_decord:
    rows += [("MP4, decord", lambda i, r, m, t: clip_mp4(paths[i], "decord", m, t, r), len(paths), (TRAIN, TEST)),
             ("MP4, official decord path", lambda i, r, m, t: clip_official(paths[i], m, t, r), len(paths), (TRAIN,))]
  rows.append(("frame shards", lambda i, r, m, t: clip_frames(source, i, m, t, r), len(source), (TRAIN, DEVICE, TEST)))
  columns = [(t, mode) for t in lengths for mode in (TRAIN, DEVICE, TEST)]
  print("per worker (one process): clips per CPU-second | per wall-second")
  for t, mode in columns:
    print(f"  T={t}, {mode}:")
    for name, fn, count, modes in rows:
      if mode not in modes:
        continue
      cpu_rate, wall_rate = per_worker(lambda i, r, fn=fn, t=t, mode=mode: fn(i, r, mode, t), count, seconds, t)
      rates[name, t, mode] = cpu_rate
      print(f"    {name:28s} {cpu_rate:8.2f} | {wall_rate:7.2f}", flush=True)
    print(f"    frames / MP4-PyAV: {rates['frame shards', t, mode] / rates['MP4, PyAV', t, mode]:.1f}x")
  import jax

  videos = np.zeros((8, lengths[0], SIZE, SIZE, 3), np.uint8)
  params = np.stack([transforms.color_params(np.random.default_rng(k), lengths[0]) for k in range(8)])
  colour = jax.jit(device_color.apply)
  colour(videos, params).block_until_ready()
  start = time.perf_counter()
  for _ in range(3):
    colour(videos, params).block_until_ready()
  print(f"colour on device, here ({jax.devices()[0].platform}): {(time.perf_counter() - start) / 24 * 1000:.1f} ms "
        f"per clip of {lengths[0]} frames (wall)")

  list_path, csv_path = os.path.join(a.workdir, "bench_list.txt"), os.path.join(a.workdir, "bench_classes.csv")
  labels.write_label_list([(q, 0) for q in paths], list_path)
  labels.write_class_names(["bench"], csv_path)
  common = dict(num_frames=lengths[0], input_size=SIZE, prefetch=2)
  totals = [("PyAV", config.data_config(source="files", train_list=list_path, class_names=csv_path, **common)),
            ("frames", config.data_config(source="frames", frames={"train": shards}, **common)),
            ("frames, colour on device", config.data_config(source="frames", frames={"train": shards},
                                                            augment={"color_on_device": True}, **common))]
  print(f"total through grain, T={lengths[0]} train, batches of {min(8, len(paths))}: clips per wall-second | per "
        f"CPU-second (all processes)")
  for w in [int(x) for x in a.workers.split(",")]:
    got = [(name, *pipeline_total(cfg, w, seconds, min(8, len(paths)))) for name, cfg in totals]
    print(f"  {w:3d} worker(s): " + "   ".join(f"{n} {wall:6.1f} | {cpu:6.1f}" for n, wall, cpu in got), flush=True)

  print("vCPUs per chip to feed training (clips/s per chip / clips per CPU-second per worker at the model's T):")
  for spec in a.chip_rates.split(","):
    model, rate = spec.split(":")
    t = int(model.rsplit("-", 1)[1])
    needs = ", ".join(f"{name} ({mode}) {float(rate) / rates[name, t, mode]:.1f}" for name, *_ in rows
                      for mode in (TRAIN, DEVICE) if (name, t, mode) in rates)
    print(f"  {model} at {rate} clips/s per chip: {needs or f'T={t} not measured (--frames)'}")
  return 0


if __name__ == "__main__":
  sys.exit(main())

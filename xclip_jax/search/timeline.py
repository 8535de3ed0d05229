r"""Timelines: a long video classified window by window, as a CSV and a picture of labels over time.

  python -m xclip_jax.predict --checkpoint M --video long.mp4 --labels "a,b,c" --timeline \
      [--window 8] [--stride 4] --out timeline.csv          # + timeline.png beside it

One row per window: path, start_s, end_s, status, message, then label_i / probability_i (i = 1..top) as
predict's clip rows have; a video that cannot be read gets one row with its error. Probabilities are the
softmax over the class names of X-CLIP's video-conditioned logits of the window (one clip, one crop).
Frames are decoded as a stream (`search.embedder`), so memory stays bounded for a video of any length.
"""

from __future__ import annotations

import csv
import dataclasses
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np

from xclip_jax import storage
from xclip_jax.search.embedder import VideoWindows, iter_video_windows
from xclip_jax.search.windows import window_lengths

MAX_PLOTTED_VIDEOS = 12


def iter_timelines(model, videos: Sequence[str], class_names: Sequence[str], *, window_s: float | None = None,
                   stride_s: float | None = None, batch_size: int = 16,
                   progress: bool = True) -> Iterator[VideoWindows]:
  """Yields each video's windows with `values` = class probabilities (windows, K), in input order."""
  import jax

  import xclip_jax

  if not class_names:
    raise ValueError("no class names")
  window_s, stride_s = window_lengths(window_s, stride_s)
  text = model.encode_text(xclip_jax.tokenize(list(class_names), context_length=model.config.context_length,
                                              truncate=True))
  head = lambda features: jax.nn.softmax(model.logits(features, text), axis=-1)
  bar = _seconds_bar(len(videos), progress)
  try:
    for result in iter_video_windows(model, videos, window_s=window_s, stride_s=stride_s, head=head,
                                     batch_size=batch_size, on_seconds=bar.update):
      bar.set_postfix_str(f"{bar.n / 3600:.2f} h of video")
      yield result
  finally:
    bar.close()


def _seconds_bar(videos: int, enabled: bool):
  from tqdm.auto import tqdm

  return tqdm(unit="s", unit_scale=True, disable=not enabled, dynamic_ncols=True,
              desc=f"{videos} video{'s' * (videos != 1)}")


def csv_header(top: int) -> list[str]:
  return ["path", "start_s", "end_s", "status", "message"] + [
      f"{c}_{i}" for i in range(1, top + 1) for c in ("label", "probability")]


def write_timeline_csv(results: Iterable[VideoWindows], class_names: Sequence[str], out: str, *, top: int = 5,
                       on_video: Callable[[VideoWindows], None] | None = None) -> list[VideoWindows]:
  """Writes the rows of every video to `out` (a CSV, atomically); returns the results, for the picture."""
  top = max(1, min(int(top), len(class_names)))
  kept = []
  with storage.staged_file(out) as staging, open(staging, "w", newline="", encoding="utf-8") as f:
    writer = csv.writer(f, lineterminator="\n")
    writer.writerow(csv_header(top))
    for result in results:
      if result.error is not None:
        writer.writerow([result.path, "", "", "error", result.error] + [""] * (2 * top))
      else:
        status = "warning" if result.warning else "ok"
        for window, probabilities in zip(result.windows, result.values, strict=True):
          order = np.argsort(-probabilities, kind="stable")[:top]
          cells = [c for i in order for c in (class_names[i], f"{probabilities[i]:.6f}")]
          writer.writerow([result.path, f"{window.start_s:.3f}", f"{window.end_s:.3f}", status,
                           result.warning or ""] + cells)
      if on_video is not None:
        on_video(result)
      kept.append(dataclasses.replace(result, values=None) if len(kept) >= MAX_PLOTTED_VIDEOS else result)
  return kept


def draw_timelines(results: Sequence[VideoWindows], class_names: Sequence[str], out: str, *, classes: int = 6):
  """A PNG: per video (the first `MAX_PLOTTED_VIDEOS`), the probability of its most frequent classes over time
  and the top-1 label of each window. Returns the path written."""
  from matplotlib.figure import Figure

  shown = [r for r in results if r.error is None and r.values is not None][:MAX_PLOTTED_VIDEOS]
  if not shown:
    return None
  fig = Figure(figsize=(11, 2.6 * len(shown)), layout="constrained")
  axes = fig.subplots(len(shown), 1, squeeze=False)[:, 0]
  colours = {}
  palette = [f"C{i}" for i in range(10)]
  for ax, result in zip(axes, shown, strict=True):
    values = np.asarray(result.values)
    starts = np.array([w.start_s for w in result.windows])
    ends = np.array([w.end_s for w in result.windows])
    centres = (starts + ends) / 2
    best = values.argmax(axis=1)
    counts = np.bincount(best, minlength=len(class_names))
    chosen = [int(i) for i in np.argsort(-counts, kind="stable")[:classes] if counts[i] > 0]
    for i in chosen:
      colour = colours.setdefault(i, palette[len(colours) % len(palette)])
      ax.plot(centres, values[:, i], color=colour, label=class_names[i], linewidth=1.5)
    edges = np.concatenate([[starts[0]], (centres[1:] + centres[:-1]) / 2, [ends[-1]]])
    for left, right, k in zip(edges[:-1], edges[1:], best, strict=True):  # top-1 band: each window's share
      colour = colours.setdefault(int(k), palette[len(colours) % len(palette)])
      ax.axvspan(left, right, ymin=0, ymax=0.06, color=colour, alpha=0.6, linewidth=0)
    ax.set_xlim(0, max(ends.max(), 1e-3))
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("probability")
    ax.set_title(str(result.path), fontsize=9, loc="left")
    ax.legend(fontsize=7, loc="upper right", ncols=min(3, len(chosen)))
  axes[-1].set_xlabel("time (s): window centres; the band shows each window's top-1 class")
  with storage.staged_file(out, suffix=".png") as staging:
    fig.savefig(staging, dpi=90, format="png")
  return out


def picture_path(out: str) -> str:
  """timeline.csv -> timeline.png (beside it)."""
  text = str(out)
  stem = text[: -len(".csv")] if text.lower().endswith(".csv") else text
  return stem + ".png"


def run(model, videos: Sequence[str], class_names: Sequence[str], *, out: str | None, top: int,
        window_s: float | None, stride_s: float | None, batch_size: int, progress: bool) -> int:
  """`predict --timeline`: the CSV (or a table on stdout without --out) and the picture; exit code."""
  if out is not None and not str(out).lower().endswith(".csv"):
    raise ValueError(f"--timeline writes a CSV: name --out *.csv, got {out}")
  window_s, stride_s = window_lengths(window_s, stride_s)
  results = iter_timelines(model, videos, class_names, window_s=window_s, stride_s=stride_s, batch_size=batch_size,
                           progress=progress)
  failed = 0

  def on_video(result: VideoWindows) -> None:
    nonlocal failed
    from tqdm.auto import tqdm

    if result.error is not None:
      failed += 1
      tqdm.write(f"predict: error: {result.path}: {result.error}", file=sys.stderr)
    elif result.warning:
      tqdm.write(f"predict: warning: {result.path}: {result.warning}", file=sys.stderr)

  if out is None:
    kept = []
    for result in results:
      on_video(result)
      kept.append(result)
      for window, probabilities in zip(result.windows, result.values if result.error is None else [], strict=False):
        k = int(np.argmax(probabilities))
        print(f"{result.path}  {window.start_s:8.2f}-{window.end_s:8.2f} s  {class_names[k]:<32s} "
              f"{100 * probabilities[k]:6.2f}%")
  else:
    kept = write_timeline_csv(results, class_names, out, top=top, on_video=on_video)
    picture = draw_timelines(kept, class_names, picture_path(out))
    rows = sum(len(r.windows) or 1 for r in kept)
    print(f"predict: wrote {rows} timeline rows to {out}" + (f" and the picture {picture}" if picture else ""),
          file=sys.stderr)
  if failed:
    print(f"predict: {failed} of {len(kept)} videos could not be read (see above)", file=sys.stderr)
  return 1 if failed else 0

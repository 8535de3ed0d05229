"""Every window of every video through the video tower, in device batches, with frames decoded as a stream.

    for video in iter_video_windows(model, paths, window_s=8, stride_s=4, head=lambda f: f.embedding):
        video.path, video.windows, video.values, video.error       # values: (windows, ...) numpy

Frames come from `data.frame_stream` (only the frames the windows sample, converted once even when
windows overlap; a frame is dropped as soon as no later window needs it, so a two-hour video takes the
memory of a window). Views are built in `search.views`. Windows of consecutive videos share device
batches of one shape (the last padded: one compilation); JAX dispatches a batch asynchronously, so the next
batch is decoded while the device computes. `head` maps the tower's `VideoFeatures` to what is kept per
window (the embedding for an index, class probabilities for a timeline), on the device.

A video that cannot be read is reported with its error (`VideoWindows.error`) and the others go on; a file
cut off early keeps the windows whose frames decode, with a warning.
"""

from __future__ import annotations

import collections
import dataclasses
import math
from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np

from xclip_jax.data import decode, frame_stream
from xclip_jax.search import views
from xclip_jax.search.windows import Window, plan_windows


@dataclasses.dataclass
class VideoWindows:
  """One video's windows and what `head` gave for each (values: (len(windows), ...)); or its error."""

  path: str
  windows: list[Window] = dataclasses.field(default_factory=list)
  values: np.ndarray | None = None
  error: str | None = None
  warning: str | None = None
  duration_s: float = 0.0


class _Pending:
  """A video whose windows are being decoded and computed."""

  def __init__(self, path: str):
    self.result = VideoWindows(path)
    self.values: list[np.ndarray | None] = []
    self.waiting = 0  # windows sent to the device whose values have not come back
    self.enqueued = False  # all its windows have been sent (or it failed)

  @property
  def done(self) -> bool:
    return self.enqueued and self.waiting == 0


def _window_views(path: str, windows: list[Window], image_size: int,
                  notes: list[str]) -> Iterator[tuple[int, np.ndarray]]:
  """(k, view (T, S, S, 3)) of each window whose frames decode, in order, holding only the frames still needed."""
  wanted = np.unique(np.concatenate([w.frames for w in windows]))
  cache: dict[int, np.ndarray] = {}
  k = 0
  for index, rgb in frame_stream.stream_frames(path, wanted, short_side=views.decode_short_side(image_size),
                                               on_warning=notes.append):
    cache[index] = rgb
    while k < len(windows) and int(windows[k].frames.max()) <= index:
      yield k, views.window_views(np.stack([cache[int(i)] for i in windows[k].frames]), image_size)
      k += 1
      keep_from = int(windows[k].frames.min()) if k < len(windows) else math.inf
      for old in [i for i in cache if i < keep_from]:
        del cache[old]


def iter_video_windows(model, videos: Iterable[str], *, window_s: float, stride_s: float,
                       head: Callable, batch_size: int = 16,
                       on_seconds: Callable[[float], None] | None = None,
                       plans: Sequence[list[Window]] | None = None) -> Iterator[VideoWindows]:
  """Yields a `VideoWindows` per video, in input order, once all of its windows are computed.

  Args:
    model: an `xclip_jax.InferenceModel`; windows are sampled with its `config.num_frames`.
    videos: paths (local or gs://).
    window_s, stride_s: window length and step in seconds (see `search.windows`).
    head: `VideoFeatures` (batched, on the device) -> array (B, ...), the value kept per window.
    batch_size: windows per device batch.
    on_seconds: told how many seconds of video each finished window adds (for a progress bar).
    plans: given windows per video (same order as `videos`) instead of every window (re-ranking).
  """
  import xclip_jax

  config = model.config
  frames, size = config.num_frames, config.image_size
  empty = np.zeros((frames, size, size, 3), np.uint8)
  slots: list[tuple[_Pending, int]] = []
  batch: list[np.ndarray] = []
  in_flight: collections.deque = collections.deque()
  order: collections.deque[_Pending] = collections.deque()

  def dispatch():
    stacked = np.stack(batch + [empty] * (batch_size - len(batch)))
    in_flight.append((list(slots), head(model.encode_video(xclip_jax.normalize_frames(stacked)))))
    slots.clear()
    batch.clear()

  def collect(keep: int) -> Iterator[VideoWindows]:
    while len(in_flight) > keep:
      done_slots, values = in_flight.popleft()
      values = np.asarray(values)
      for row, (pending, k) in enumerate(done_slots):
        pending.values[k] = values[row]
        pending.waiting -= 1
        if on_seconds is not None and pending.result.error is None:
          window = pending.result.windows[k]
          on_seconds(window.end_s - (pending.result.windows[k - 1].end_s if k else 0.0))
    while order and order[0].done:
      yield _finish(order.popleft())

  for number, path in enumerate(videos):
    pending = _Pending(str(path))
    order.append(pending)
    notes: list[str] = []
    try:
      if plans is None:
        info = frame_stream.probe(path)
        windows = plan_windows(info.num_frames, info.fps, frames, window_s, stride_s)
        pending.result.duration_s = info.duration_s
      else:
        windows = plans[number]
      pending.result.windows = windows
      pending.values = [None] * len(windows)
      for k, view in _window_views(str(path), windows, size, notes):
        slots.append((pending, k))
        batch.append(view)
        pending.waiting += 1
        if len(batch) == batch_size:
          dispatch()
          yield from collect(keep=1)  # one batch stays on the device while the next is decoded
    except decode.VideoDecodeError as e:
      pending.result.error = e.reason
    except Exception as e:  # One unreadable video must not stop the others; its report says why.
      pending.result.error = f"{type(e).__name__}: {e}"
    pending.enqueued = True
    if notes:
      pending.result.warning = "; ".join(n.removeprefix(f"{path}: ") for n in notes)
    yield from collect(keep=1)
  if batch:
    dispatch()
  yield from collect(keep=0)


def _finish(pending: _Pending) -> VideoWindows:
  result = pending.result
  if result.error is not None:
    result.windows, result.values = [], None
    return result
  got = [k for k, v in enumerate(pending.values) if v is not None]  # a cut-off file: the windows that decoded
  result.windows = [result.windows[k] for k in got]
  result.values = np.stack([pending.values[k] for k in got]) if got else None
  if not got:
    result.error = "no window decodes"
  return result

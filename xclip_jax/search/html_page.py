"""The results page: each moment with a strip of its frames, its time range and score, and a player for it.

One self-contained HTML file (frames inlined as JPEG data URIs; no script or style from elsewhere). Each hit
plays its moment with an HTML5 video and a media fragment, `src="video.mp4#t=start,end"` (W3C Media
Fragments: the browser starts at `start` and pauses at `end`). Local videos are linked relative to the page
(or as file:// URLs when the page goes to a bucket); gs://bucket/object videos as
https://storage.googleapis.com/bucket/object, which a browser can play when the object is readable to it.
A small script marks each player with what the browser did (`data-state`, `data-current-time`), which is
also what the test in headless Chromium reads.
"""

from __future__ import annotations

import base64
import html
import io
import os
import urllib.parse
from collections.abc import Sequence

import numpy as np

from xclip_jax import storage
from xclip_jax.data import decode, frame_stream

STRIP_FRAMES = 6
THUMB_SHORT_SIDE = 96

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 24px; background: #f6f6f4; color: #222; }
h1 { font-size: 20px; margin: 0 0 4px; } .meta { color: #666; font-size: 13px; margin-bottom: 18px; }
.hit { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 12px; margin-bottom: 14px; }
.head { display: flex; gap: 14px; align-items: baseline; flex-wrap: wrap; }
.rank { font-weight: 700; font-size: 18px; } .video { font-family: monospace; font-size: 13px; }
.range { font-weight: 600; } .score { color: #0a5; }
.row { display: flex; gap: 14px; margin-top: 8px; align-items: flex-start; flex-wrap: wrap; }
.strip { display: flex; gap: 2px; } .strip img { height: 96px; border-radius: 2px; }
video { width: 320px; background: #000; border-radius: 4px; }
.error { color: #b00; font-size: 13px; }
"""

_SCRIPT = """
for (const v of document.querySelectorAll('video')) {
  const mark = () => { v.dataset.currentTime = v.currentTime.toFixed(3); };
  v.addEventListener('loadedmetadata', () => { v.dataset.state = 'loaded'; mark(); });
  v.addEventListener('seeked', mark);
  v.addEventListener('timeupdate', mark);
  v.addEventListener('error', () => { v.dataset.state = 'error'; });
}
"""


def video_url(video: str, page: str) -> str:
  """How the page at `page` links to `video` (see the module docstring)."""
  if storage.is_remote(video):
    parsed = urllib.parse.urlparse(video)
    if parsed.scheme in ("gs", "gcs"):
      return f"https://storage.googleapis.com/{parsed.netloc}{urllib.parse.quote(parsed.path)}"
    return video
  absolute = os.path.abspath(video)
  if storage.is_remote(page):
    return "file://" + urllib.parse.quote(absolute)
  relative = os.path.relpath(absolute, os.path.dirname(os.path.abspath(page)))
  return urllib.parse.quote(relative.replace(os.sep, "/"))


def frame_strip(video: str, start_s: float, end_s: float, *, count: int = STRIP_FRAMES,
                short_side: int = THUMB_SHORT_SIDE) -> list[str]:
  """JPEG data URIs of `count` frames spread over [start_s, end_s) of `video`."""
  from PIL import Image

  info = frame_stream.probe(video)
  times = start_s + (np.arange(count) + 0.5) * (end_s - start_s) / count
  wanted = np.unique(np.clip((times * info.fps).astype(np.int64), 0, info.num_frames - 1))
  uris = []
  for _, rgb in frame_stream.stream_frames(video, wanted, short_side=short_side, on_warning=lambda message: None):
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=85)
    uris.append("data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii"))
  return uris


def _hit(rank: int, moment, page: str) -> str:
  e = html.escape
  try:
    strip = "".join(f'<img alt="frame" src="{uri}">' for uri in frame_strip(moment.video, moment.start_s, moment.end_s))
  except decode.VideoDecodeError as error:
    strip = f'<span class="error">frames unavailable: {e(error.reason)}</span>'
  rerank = "" if moment.rerank_score is None else f' <span class="score">re-ranked {moment.rerank_score:.4f}</span>'
  source = f"{video_url(moment.video, page)}#t={moment.start_s:.3f},{moment.end_s:.3f}"
  return (f'<div class="hit" data-rank="{rank}" data-video="{e(moment.video)}" data-start="{moment.start_s:.3f}" '
          f'data-end="{moment.end_s:.3f}">\n'
          f'<div class="head"><span class="rank">{rank}</span><span class="range">{moment.start_s:.1f} – '
          f'{moment.end_s:.1f} s</span><span class="score">score {moment.score:.4f}</span>{rerank}'
          f'<span class="video">{e(moment.video)}</span></div>\n'
          f'<div class="row"><div class="strip">{strip}</div>\n'
          f'<video controls muted preload="auto" src="{e(source)}"></video></div>\n</div>')


def render_page(moments: Sequence, *, text: str, page: str, index: str, model: str) -> str:
  """The page as a string (`page` is where it will live: video links are relative to it)."""
  e = html.escape
  hits = "\n".join(_hit(rank, m, page) for rank, m in enumerate(moments, start=1)) or "<p>No matches.</p>"
  return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
          f'<title>{e(text)} – xclip_jax search</title><style>{_STYLE}</style></head>\n<body>\n'
          f'<h1>“{e(text)}”</h1>\n<div class="meta">{len(moments)} moments from the index {e(str(index))} '
          f'(model {e(model)})</div>\n{hits}\n<script>{_SCRIPT}</script>\n</body></html>\n')


def write_page(moments: Sequence, out: str, *, text: str, index: str, model: str) -> str:
  """Writes the page to `out` (local or gs://, as one file or object); returns `out`."""
  storage.write_text(out, render_page(moments, text=text, page=str(out), index=index, model=model))
  return out

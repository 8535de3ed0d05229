"""Videos that failed to decode, or were cut off: one console line and one log row per file.

Decoding happens in grain worker processes; they do not log. Each example carries what happened to it
(`encode_events`), and the iterators in the main process hand that to the process's `BadVideoLog`
(`for_path(data.bad_video_log)`, shared by the training and evaluation iterators of the process):

* the first time a file is met, one warning line names it and says why; later meetings only count;
* with a log path (a file or a gs:// object), a TSV with a header and one row per file (`path`, `count`,
  `error`) is rewritten whole after every change (a rename, or one object), so a crash never leaves it
  half-written. Rows already in the file (an earlier run of the same workdir, before a resume) are kept and
  counted on.

"count" is how often the file was met (a training run meets a bad file again every epoch; each time another
video takes its place). Cut-off files are listed too (their error starts with "cut off"), though they
are used, sampled from the frames that decode. With several processes, process i > 0 writes
`<stem>.process<i><suffix>` next to the given path.
"""

from __future__ import annotations

import json
import logging
import os
import threading

from xclip_jax import storage

log = logging.getLogger(__name__)

BAD = "bad"  # Failed to decode: replaced (training) or counted as an error (evaluation).
CUT_OFF = "cut_off"  # Cut off after its header: sampled from the frames that decode.
HEADER = ("path", "count", "error")


def encode_events(events: list[tuple[str, str, str]]) -> str:
  """(kind, path, reason) triples as one string, the form they travel in through grain batches."""
  return json.dumps(events) if events else ""


def decode_events(encoded) -> list[tuple[str, str, str]]:
  """Inverse of `encode_events` for one example's string ("" = nothing happened)."""
  return [tuple(e) for e in json.loads(str(encoded))] if str(encoded) else []


def process_log_path(path: str, process_index: int, process_count: int) -> str:
  """The log file of one process: `path` itself for process 0 (and single-process runs)."""
  if not path or process_count <= 1 or process_index == 0:
    return path
  stem, suffix = os.path.splitext(path)
  return f"{stem}.process{process_index}{suffix}"


class BadVideoLog:
  """Counts problem videos of this process, warns once per file and keeps the TSV (if any) up to date."""

  def __init__(self, path: str = ""):
    self.path = path
    self.rows: dict[str, list] = {}  # path -> [count, error]
    self._warned: set[str] = set()
    self._lock = threading.Lock()
    if path and storage.path(path).exists():
      self.rows = read_log(path)

  def record(self, kind: str, video: str, reason: str) -> None:
    """One meeting of `video`; warns the first time this process meets it, rewrites the TSV."""
    reason = reason.removeprefix(f"{video}: ")  # Decoder messages name the video; the row already does.
    error = reason if kind == BAD or reason.startswith("cut off") else f"cut off: {reason}"
    with self._lock:
      row = self.rows.setdefault(video, [0, error])
      row[0] += 1
      row[1] = error
      first = video not in self._warned
      self._warned.add(video)
      if self.path:
        storage.write_text(self.path, format_log(self.rows))
    if first:
      if kind == CUT_OFF:
        log.warning("cut-off video: %s: %s", video, error.removeprefix("cut off: "))
      else:
        log.warning("bad video: %s: %s (met again, it is counted, not printed)", video, reason)

  def record_encoded(self, encoded_events) -> int:
    """Records every event of a batch's "events" column; returns how many were bad (not cut-off)."""
    bad = 0
    for encoded in encoded_events:
      for kind, video, reason in decode_events(encoded):
        self.record(kind, video, reason)
        bad += kind == BAD
    return bad


def _cell(text) -> str:
  """One TSV field: tabs and line breaks become spaces."""
  return " ".join(str(text).replace("\t", " ").splitlines())


def format_log(rows: dict[str, list]) -> str:
  """The TSV text: a header, then `path<TAB>count<TAB>error` per file (tabs and newlines in fields -> spaces)."""
  lines = ["\t".join(HEADER)] + [f"{_cell(video)}\t{count}\t{_cell(error)}" for video, (count, error) in rows.items()]
  return "\n".join(lines) + "\n"


def read_log(path: str) -> dict[str, list]:
  """Rows of a log written by `BadVideoLog` (path -> [count, error]).

  A log of earlier versions (one `path<TAB>reason` line per meeting, no header) is read as its per-file
  counts; a file in any other format is an error (it is not ours to overwrite).
  """
  lines = [line for line in storage.path(path).read_text(encoding="utf-8").splitlines() if line]
  if lines and lines[0] != "\t".join(HEADER) and all(line.count("\t") == 1 for line in lines):
    out: dict[str, list] = {}
    for line in lines:
      video, reason = line.split("\t")
      out.setdefault(video, [0, reason])[0] += 1
      out[video][1] = reason
    return out
  if not lines or lines[0] != "\t".join(HEADER):
    raise ValueError(f"{path}: not a bad-video log (expected the header {'<TAB>'.join(HEADER)}); choose another "
                     f"data.bad_video_log or remove the file")
  out = {}
  for lineno, line in enumerate(lines[1:], start=2):
    row = line.split("\t", 2)
    if len(row) != 3 or not row[1].isdigit():
      raise ValueError(f"{path}:{lineno}: expected 'path<TAB>count<TAB>error', got {line!r}")
    out[row[0]] = [int(row[1]), row[2]]
  return out


_LOGS: dict[str, BadVideoLog] = {}
_LOGS_LOCK = threading.Lock()


def for_path(path: str, process_index: int = 0, process_count: int = 1) -> BadVideoLog:
  """The process-wide log for `path` ("" = count and warn only), shared by all iterators of the process."""
  path = process_log_path(path, process_index, process_count)
  key = os.fspath(storage.absolute(path)) if path else ""
  with _LOGS_LOCK:
    if key not in _LOGS:
      _LOGS[key] = BadVideoLog(path)
    return _LOGS[key]

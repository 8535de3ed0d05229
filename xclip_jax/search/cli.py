r"""Find moments in your own videos by text: build an index of a folder or bucket of videos, then search it.

  python -m xclip_jax.search index --checkpoint runs/demo/supervised --videos my_videos/ --out my_index
  python -m xclip_jax.search query --index my_index --text "circle moving left" --html results.html
  python -m xclip_jax.search info --index my_index

index: embeds every window (--window seconds, every --stride seconds) of every video (files, folders searched
recursively, .txt lists; gs:// too) and stores it in --out; run it again with more videos to add them, or
after a kill or Ctrl-C to resume; --process-id/--num-processes split the videos between processes writing one
index. Ctrl-C stops index after the video being embedded: the windows embedded so far are written as a part, a
line says how many videos are done, the exit status is 130 and the same command continues; a second Ctrl-C stops
at once, keeping the parts already written.
query: ranks the windows by cosine with the text, merges overlapping windows of a video into moments, and
with --rerank K scores the first K again with X-CLIP's video-conditioned prompts; prints them, or writes
--out (CSV) and --html (a page that shows and plays each moment). info: the index's report (counts, model,
videos that failed). docs/search.md has the formats, the measurements and the limits.
"""

from __future__ import annotations

import csv
import json
import sys

from xclip_jax import cli, interrupts, storage
from xclip_jax.data import decode
from xclip_jax.models import frame_count
from xclip_jax.search import html_page, indexer, query, store


def _parser() -> cli.Parser:
  parser = cli.parser("python -m xclip_jax.search", __doc__)
  commands = parser.add_subparsers(dest="command", required=True)
  build = commands.add_parser("index", help="embed the windows of videos into an index (appends, resumes)")
  build.add_argument("--checkpoint", required=True, help="anything xclip_jax.load_model loads")
  build.add_argument("--videos", required=True, nargs="+", help="video files, folders and list files (.txt); gs://")
  build.add_argument("--root", help="folder that relative paths in list files are relative to")
  build.add_argument("--out", required=True, help="the index folder (created, or added to); may be gs://")
  build.add_argument("--window", type=float, help="window length in seconds (default 8)")
  build.add_argument("--stride", type=float, help="seconds between window starts (default: half a window)")
  build.add_argument("--frames", type=int, help="frames per window (default: the model's; other counts resize the "
                                                "MIT's temporal table)")
  build.add_argument("--frame-interpolation", choices=frame_count.METHODS,
                     help=f"how --frames resizes that table (default {frame_count.DEFAULT_METHOD})")
  build.add_argument("--process-id", type=int, default=0, help="this process (0-based)")
  build.add_argument("--num-processes", type=int, default=1, help="processes sharing the index")
  build.add_argument("--batch-size", type=int, default=16, help="windows per device batch (default 16)")
  build.add_argument("--part-windows", type=int, default=4096, help="write a part once it holds this many windows "
                                                                    "(or after 30 s of work; default 4096)")
  build.add_argument("--dtype", choices=("float32", "bfloat16"), help="compute dtype (default: the model's)")
  build.add_argument("--no-progress", action="store_true", help="no progress bar")

  search = commands.add_parser("query", help="find the moments that match a text")
  search.add_argument("--index", required=True, help="an index folder (or gs:// URL)")
  search.add_argument("--text", required=True, nargs="+", help="what to look for (several: one search each)")
  search.add_argument("--top", type=int, default=10, help="moments per text (default 10)")
  search.add_argument("--rerank", type=int, default=0, help="re-score the first K moments with X-CLIP's prompts")
  search.add_argument("--checkpoint", help="the model (default: the one the index was built with)")
  search.add_argument("--out", help="write the moments to this .csv file")
  search.add_argument("--html", help="write a page that shows and plays the moments (one text only)")

  info = commands.add_parser("info", help="the index's report: counts, model, failed videos")
  info.add_argument("--index", required=True, help="an index folder (or gs:// URL)")
  info.add_argument("--json", action="store_true", help="print JSON")
  return parser


def _index(args) -> int:
  import xclip_jax
  from xclip_jax.evaluation import video_files

  videos = video_files.find_videos(args.videos, root=args.root)
  if args.batch_size < 1 or args.part_windows < 1:
    raise ValueError("--batch-size and --part-windows must be at least 1")
  model = xclip_jax.load_model(args.checkpoint, dtype=args.dtype)
  local = not storage.is_remote(args.checkpoint) and storage.path(args.checkpoint).exists()
  checkpoint = str(storage.absolute(args.checkpoint)) if local else args.checkpoint  # queries run from anywhere
  method = None
  if args.frames and args.frames != model.config.num_frames:
    method = args.frame_interpolation or frame_count.DEFAULT_METHOD
    model = model.at_frames(args.frames, method)
  stop = interrupts.StopRequests(
      acknowledge="Ctrl-C: stopping after the video being embedded; the windows embedded so far are written (Ctrl-C "
                  "again stops at once, keeping the parts already written)", at_once=None)
  with stop:
    summary = indexer.build_index(model, checkpoint, videos, args.out, window_s=args.window, stride_s=args.stride,
                                  frame_method=method, process_id=args.process_id, num_processes=args.num_processes,
                                  batch_size=args.batch_size, progress=not args.no_progress,
                                  flush_windows=args.part_windows, should_stop=lambda: stop.requested is not None)
  print(f"search index: {summary.embedded} videos embedded ({summary.windows} windows, "
        f"{summary.seconds_of_video / 3600:.3f} h), {summary.skipped} already in the index, "
        f"{len(summary.failed)} failed; {summary.parts} parts written to {args.out}", file=sys.stderr)
  for video, error in summary.failed:
    print(f"search index: failed: {video}: {error}", file=sys.stderr)
  if stop.requested:
    how = "Ctrl-C" if stop.requested == "SIGINT" else stop.requested
    print(f"search index: stopped by {how} after {summary.embedded + len(summary.failed)} of {summary.todo} "
          f"videos; their windows are in {args.out} and the same command continues", file=sys.stderr)
    return interrupts.EXIT_STATUS
  return 1 if summary.failed else 0


def _query(args) -> int:
  import xclip_jax

  if args.html and len(args.text) > 1:
    raise ValueError("--html shows one search: give one --text")
  index = store.load(args.index)
  checkpoint = args.checkpoint or index.manifest["model"]["checkpoint"]
  model = xclip_jax.load_model(checkpoint)
  if index.manifest["frames"] != model.config.num_frames:
    model = model.at_frames(index.manifest["frames"], index.manifest.get("frame_interpolation"))
  if store.fingerprint(model) != index.manifest["model"]["fingerprint"]:
    raise ValueError(f"{checkpoint} is not the model the index {args.index} was built with "
                     f"({index.manifest['model']['checkpoint']})")
  searcher = query.Searcher(index.vectors)
  results = [(text, query.find_moments(model, index, searcher, text, top=args.top, rerank=args.rerank))
             for text in args.text]
  for text, moments in results:
    print(f'"{text}": {len(moments)} moments of {len(index)} windows in {len(index.videos)} videos')
    for rank, m in enumerate(moments, start=1):
      rerank = "" if m.rerank_score is None else f"  re-ranked {m.rerank_score:.4f}"
      print(f"  {rank:3d}. {m.score:.4f}{rerank}  {m.start_s:8.2f}-{m.end_s:8.2f} s  {m.video}")
  if args.out:
    write_csv(results, args.out)
    print(f"search query: wrote {sum(len(m) for _, m in results)} rows to {args.out}", file=sys.stderr)
  if args.html:
    html_page.write_page(results[0][1], args.html, text=results[0][0], index=args.index, model=checkpoint)
    print(f"search query: wrote {args.html}", file=sys.stderr)
  return 0


CSV_HEADER = ["text", "rank", "video", "start_s", "end_s", "score", "rerank_score", "best_start_s", "best_end_s",
              "windows"]


def write_csv(results, out: str) -> None:
  with storage.staged_file(out) as staging, open(staging, "w", newline="", encoding="utf-8") as f:
    writer = csv.writer(f, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    for text, moments in results:
      for rank, m in enumerate(moments, start=1):
        writer.writerow([text, rank, m.video, f"{m.start_s:.3f}", f"{m.end_s:.3f}", f"{m.score:.6f}",
                         "" if m.rerank_score is None else f"{m.rerank_score:.6f}", f"{m.best_start_s:.3f}",
                         f"{m.best_end_s:.3f}", m.windows])


def _info(args) -> int:
  report = store.describe(args.index)
  if args.json:
    print(json.dumps(report, indent=2))
    return 0
  print(f"{report['index']}: {report['windows']} windows of {report['videos']} videos ({report['hours']} h) in "
        f"{report['parts']} parts; model {report['model']} ({report['fingerprint']}), {report['frames']} frames, "
        f"window {report['window_s']} s every {report['stride_s']} s")
  for warning in report["warnings"]:
    print(f"  warning: {warning['video']}: {warning['warning']}")
  for failure in report["failed"]:
    print(f"  failed: {failure['video']}: {failure['error']}")
  return 0


def main(argv: list[str] | None = None) -> int:
  args = _parser().parse_args(argv)  # a bad command line: one line, exit status 2
  try:
    return {"index": _index, "query": _query, "info": _info}[args.command](args)
  except (ValueError, OSError, decode.VideoDecodeError) as error:  # store.IndexProblem is a ValueError
    print(f"search {args.command}: error: {error}", file=sys.stderr)
    return 1

"""Packs a label list of videos into ArrayRecord shards for fast, seekable, multi-host reading.

    python scripts/build_arrayrecord.py --list train.txt --root /data/k400 --classes kinetics_400 \
        --out /data/k400_ar/train --prefix train --num-shards 64 [--overwrite] [--allow-missing]

Each record is one video file's bytes unchanged (no re-encoding) with its label, list index and relative
path (layout: xclip_jax/data/sources.py). Shards are `<out>/<prefix>-NNNNN-of-MMMMM.array_record`, records
in list order, contiguous blocks; `classes.csv` and `<prefix>_manifest.json` are written next to them.
Use one --out folder per split. Read them with data.source="arrayrecord",
data.arrayrecord.train="<out>/train-*.array_record"; with
several hosts, host h reads shards h, h + hosts, ... (use at least as many shards as hosts).

Writes to a temporary folder and renames it into place; refuses to touch an existing non-empty output unless
--overwrite. --list, --root and --out may be gs:// URLs: array_record's writer only writes local files, so
the shards are written to a local temporary folder and uploaded (the manifest last); training reads them
from the bucket directly (docs/cloud.md). A missing video stops the build with the list of missing paths
(with --allow-missing they are skipped, listed in `<prefix>_missing.txt` and in the manifest, never silently).
"""

from __future__ import annotations

import json
import os
import sys
import time

from xclip_jax import cli, storage
from xclip_jax.data import labels, sources


def _relative(video: str, root: str) -> str:
  """The video's path relative to --root (as the label list wrote it)."""
  if not root:
    return video
  if storage.is_remote(root):
    return video.removeprefix(root.rstrip("/") + "/")
  return os.path.relpath(video, root)


def build(list_path: str, root: str, class_csv: str, out: str, *, prefix: str = "train", num_shards: int = 1,
          overwrite: bool = False, allow_missing: bool = False) -> dict:
  """Writes the shards; returns the manifest."""
  from array_record.python import array_record_module

  names = labels.read_class_names(class_csv)
  records = labels.read_label_list(list_path, root, num_classes=len(names))
  if num_shards < 1:
    raise ValueError(f"--num-shards must be >= 1, got {num_shards}")
  missing = [r for r in records if not storage.path(r.path).is_file()]
  if missing and not allow_missing:
    shown = "\n  ".join(r.path for r in missing[:20])
    more = f"\n  ... and {len(missing) - 20} more" if len(missing) > 20 else ""
    raise FileNotFoundError(f"{len(missing)} of {len(records)} videos in {list_path} are missing:\n  {shown}{more}\n"
                            "(pass --allow-missing to skip and list them)")
  absent = {r.index for r in missing}
  present = [r for r in records if r.index not in absent]
  if len(present) < num_shards:
    raise ValueError(f"{len(present)} videos cannot fill {num_shards} shards")
  out = os.fspath(storage.absolute(out))
  started = time.time()
  with storage.staged_directory(out, overwrite=overwrite, last=[f"{prefix}_manifest.json"]) as staging:
    tmp = str(staging)
    shard_files = []
    total_bytes = 0
    bounds = [len(present) * s // num_shards for s in range(num_shards + 1)]
    for s in range(num_shards):
      fname = f"{prefix}-{s:05d}-of-{num_shards:05d}.array_record"
      # group_size:1 = one record per chunk group, so a random read decodes only its own video.
      writer = array_record_module.ArrayRecordWriter(os.path.join(tmp, fname), "group_size:1")
      for r in present[bounds[s]:bounds[s + 1]]:
        data = storage.path(r.path).read_bytes()
        total_bytes += len(data)
        rel = _relative(r.path, root)
        writer.write(sources.encode_record(data, r.label, r.index, rel))
      writer.close()
      shard_files.append(fname)
    labels.write_class_names(names, os.path.join(tmp, "classes.csv"))
    if missing:
      with open(os.path.join(tmp, f"{prefix}_missing.txt"), "w", encoding="utf-8") as f:
        f.writelines(f"{r.path}\n" for r in missing)
    manifest = {"list": os.fspath(storage.absolute(list_path)),
                "root": os.fspath(storage.absolute(root)) if root else "",
                "videos": len(present), "missing": len(missing), "shards": shard_files, "bytes": total_bytes,
                "num_classes": len(names), "seconds": round(time.time() - started, 2)}
    with open(os.path.join(tmp, f"{prefix}_manifest.json"), "w", encoding="utf-8") as f:
      json.dump(manifest, f, indent=2)
  return manifest


def main(argv: list[str] | None = None) -> int:
  p = cli.parser(description=__doc__)
  p.add_argument("--list", required=True, help="label list: '<relative path> <label id>' per line")
  p.add_argument("--root", default="", help="folder the list's paths are relative to")
  p.add_argument("--classes", required=True, help="class CSV (id,name) or a shipped list name, e.g. kinetics_400")
  p.add_argument("--out", required=True, help="output folder for the shards")
  p.add_argument("--prefix", default="train", help="shard file prefix, e.g. train / val")
  p.add_argument("--num-shards", type=int, default=16)
  p.add_argument("--overwrite", action="store_true")
  p.add_argument("--allow-missing", action="store_true")
  a = p.parse_args(argv)
  try:
    m = build(a.list, a.root, a.classes, a.out, prefix=a.prefix, num_shards=a.num_shards, overwrite=a.overwrite,
              allow_missing=a.allow_missing)
  except (FileNotFoundError, FileExistsError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  print(f"wrote {m['videos']} videos ({m['bytes'] / 2**20:.1f} MiB) in {len(m['shards'])} shards to {a.out} "
        f"in {m['seconds']:.1f} s" + (f"; {m['missing']} missing videos listed in {a.prefix}_missing.txt"
                                       if m["missing"] else ""))
  return 0


if __name__ == "__main__":
  cli.run(main, prog="build_arrayrecord.py", interrupted="nothing was written (the shards appear only once all are "
                                                           "complete); run the same command again")

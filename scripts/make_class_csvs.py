"""Regenerates xclip_jax/data/classes/*.csv from package sources (provenance: xclip_jax/data/classes/NOTICE).

Never type class names by hand: this script reads them from released files and writes them in X-CLIP's
`labels/*.csv` format (header `id,name`, id = row index, same order as the official files).

Sources:
  Kinetics-400, HMDB-51: gluoncv 0.10.5.post0 (Apache-2.0), `gluoncv/data/{kinetics400,hmdb51}/
    classification.py` (`self.classes = [...]`, folder-style names with underscores).
      .venv/bin/pip download --no-deps gluoncv==0.10.5.post0 -d /tmp/pkgs
  UCF-101: tensorflow-datasets (Apache-2.0), `tensorflow_datasets/video/ucf101_labels.txt` (installed).
  Kinetics-600: no package on the registry ships the K600 names (checked: mmaction2 0.24.1/1.2.0 wheels and
    sdist, gluoncv (K400/K700 only), pytorchvideo, classy-vision, slowfast, tf-models-official, decord,
    decord2, openvino-dev, clip_benchmark). We take them from X-CLIP's own file (MIT), pinned by commit:
      git clone https://github.com/microsoft/VideoX && git -C VideoX checkout 1744b2159c3d11694f94dab4fcde8660c685e79a
      --videox VideoX   (reads X-CLIP/labels/kinetics_600_labels.csv)

Usage:
  python scripts/make_class_csvs.py --gluoncv-wheel /tmp/pkgs/gluoncv-0.10.5.post0-py2.py3-none-any.whl \
      --videox /path/to/VideoX [--out xclip_jax/data/classes] [--check]
With --check the four generated lists are compared with X-CLIP's official CSVs (needs --videox).
"""

from __future__ import annotations

import ast
import csv
import hashlib
import os
import re
import sys
import zipfile

import tensorflow_datasets

from xclip_jax import cli
from xclip_jax.data import labels

GLUONCV_FILES = {
    "kinetics_400": "gluoncv/data/kinetics400/classification.py",
    "hmdb_51": "gluoncv/data/hmdb51/classification.py",
}
VIDEOX_LABELS = "X-CLIP/labels/{name}_labels.csv"
# X-CLIP's HMDB-51 CSV is alphabetical except that "kick ball" precedes "kick" and "sword exercise" precedes
# "sword" (its order follows mmaction2's HMDB label map rather than a sort). Reproduced explicitly.
HMDB_ORDER_FIXES = (("kick ball", "kick"), ("sword exercise", "sword"))


def gluoncv_classes(wheel: str, member: str) -> list[str]:
  """The literal `self.classes = [...]` list of a gluoncv dataset module, read without importing gluoncv."""
  with zipfile.ZipFile(wheel) as zf:
    source = zf.read(member).decode("utf-8")
  for node in ast.walk(ast.parse(source)):
    if (isinstance(node, ast.Assign) and isinstance(node.value, ast.List)
        and any(isinstance(t, ast.Attribute) and t.attr == "classes" for t in node.targets)):
      return [ast.literal_eval(e) for e in node.value.elts]
  raise ValueError(f"{wheel}:{member}: no 'self.classes = [...]' list")


def folder_to_name(folder: str) -> str:
  """Kinetics/HMDB folder name -> class name: underscores to spaces, '-qualifier-' back to '(qualifier)'."""
  return re.sub(r" -(.*)-$", r" (\1)", folder.replace("_", " "))


def kinetics_400(wheel: str) -> list[str]:
  return sorted(folder_to_name(c) for c in gluoncv_classes(wheel, GLUONCV_FILES["kinetics_400"]))


def hmdb_51(wheel: str) -> list[str]:
  names = sorted(folder_to_name(c) for c in gluoncv_classes(wheel, GLUONCV_FILES["hmdb_51"]))
  for first, second in HMDB_ORDER_FIXES:
    i, j = names.index(first), names.index(second)
    names[min(i, j)], names[max(i, j)] = first, second
  return names


def ucf_101() -> list[str]:
  path = os.path.join(os.path.dirname(tensorflow_datasets.__file__), "video", "ucf101_labels.txt")
  with open(path, encoding="utf-8") as f:
    names = [line.strip() for line in f if line.strip()]
  # Official order is UCF's classInd.txt order: case-insensitive ("Hammering" before "HammerThrow"). TFDS's
  # file is already in that order; sorting makes the rule explicit (a case-sensitive sort would differ).
  return sorted(names, key=str.lower)


def videox_csv(videox: str, name: str) -> list[str]:
  with open(os.path.join(videox, VIDEOX_LABELS.format(name=name)), newline="", encoding="utf-8") as f:
    rows = list(csv.reader(f))
  assert rows[0] == ["id", "name"], rows[0]
  return [r[1] for r in rows[1:] if r]


def kinetics_600(videox: str) -> list[str]:
  names = videox_csv(videox, "kinetics_600")
  if names != sorted(names) or len(names) != 600:
    raise ValueError("unexpected Kinetics-600 source file")
  return names


def write_csv(names: list[str], path: str) -> str:
  """Writes the class CSV in the format the package reads; returns its sha256 (recorded in NOTICE)."""
  labels.write_class_names(names, path)
  with open(path, "rb") as f:
    return hashlib.sha256(f.read()).hexdigest()


def main(argv: list[str] | None = None) -> int:
  parser = cli.parser(description=__doc__)
  parser.add_argument("--gluoncv-wheel", required=True, help="gluoncv-0.10.5.post0-py2.py3-none-any.whl")
  parser.add_argument("--videox", required=True, help="checkout of microsoft/VideoX (for Kinetics-600)")
  parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "xclip_jax", "data", "classes"))
  parser.add_argument("--check", action="store_true", help="compare every list with X-CLIP's official CSVs")
  args = parser.parse_args(argv)
  lists = {
      "kinetics_400": kinetics_400(args.gluoncv_wheel),
      "kinetics_600": kinetics_600(args.videox),
      "hmdb_51": hmdb_51(args.gluoncv_wheel),
      "ucf_101": ucf_101(),
  }
  expected_sizes = {"kinetics_400": 400, "kinetics_600": 600, "hmdb_51": 51, "ucf_101": 101}
  status = 0
  for name, names in lists.items():
    if len(names) != expected_sizes[name] or len(set(names)) != len(names):
      raise ValueError(f"{name}: {len(names)} names ({len(set(names))} distinct), expected {expected_sizes[name]}")
    digest = write_csv(names, os.path.join(args.out, f"{name}_labels.csv"))
    line = f"{name}: {len(names)} classes, sha256 {digest}"
    if args.check:
      official = videox_csv(args.videox, name)
      same = official == names
      status |= not same
      line += "; identical to X-CLIP's CSV" if same else "; DIFFERS from X-CLIP's CSV"
    print(line)
  return status


if __name__ == "__main__":
  sys.exit(main())

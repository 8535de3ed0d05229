"""Markdown as the docs checker reads it: prose (code blanked out), fenced code blocks, links, GitHub anchors."""

from __future__ import annotations

import dataclasses
import functools
import pathlib
import re


@dataclasses.dataclass
class CodeBlock:
  language: str
  first_line: int  # 1-based number of the block's first content line
  lines: list[str]


@dataclasses.dataclass
class Markdown:
  """A markdown file split into prose lines (code blanked out) and fenced code blocks."""

  prose: list[str]
  blocks: list[CodeBlock]

  @classmethod
  def parse(cls, text: str) -> Markdown:
    prose, blocks, fence, block = [], [], None, None
    for number, line in enumerate(text.splitlines(), start=1):
      stripped = line.lstrip()
      if fence is None and (stripped.startswith("```") or stripped.startswith("~~~")):
        fence = stripped[:3]
        block = CodeBlock(stripped[3:].strip().split(" ")[0].lower(), number + 1, [])
        prose.append("")
      elif fence is not None and stripped.startswith(fence):
        blocks.append(block)
        fence, block = None, None
        prose.append("")
      elif fence is not None:
        block.lines.append(line)
        prose.append("")
      else:
        prose.append(line)
    if block is not None:
      blocks.append(block)
    return cls(prose, blocks)

  def anchors(self) -> set[str]:
    """GitHub's heading ids (duplicates get -1, -2, ...) and explicit <a name=...> / id=... anchors."""
    anchors, counts = set(), {}
    for line in self.prose:
      heading = re.match(r"\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$", line)
      if heading:
        base = slug(heading.group(1))
        count = counts.get(base, 0)
        counts[base] = count + 1
        anchors.add(base if count == 0 else f"{base}-{count}")
      anchors.update(re.findall(r"<a\s+(?:name|id)=\"([^\"]+)\"", line))
    return anchors

  def links(self) -> list[tuple[int, str]]:
    """(line, target) of every inline link or image and reference definition outside code."""
    found = []
    for number, line in enumerate(self.prose, start=1):
      line = re.sub(r"`[^`]*`", "", line)
      found += [(number, target) for target in re.findall(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)", line)]
      found += [(number, target) for target in re.findall(r"^\s{0,3}\[(?!\^)[^\]]+\]:\s*(\S+)", line)]
    return found

  def inline_code(self) -> list[tuple[int, str]]:
    return [(number, span) for number, line in enumerate(self.prose, start=1)
            for span in re.findall(r"`([^`]+)`", line)]


def slug(heading: str) -> str:
  """GitHub's heading id: the rendered text lower-cased, punctuation other than - and _ dropped, spaces to -."""
  text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links and images: their text
  text = re.sub(r"<[^>]+>", "", text)  # inline HTML tags
  text = re.sub(r"[^\w\- ]", "", text.lower())
  return text.replace(" ", "-")


@functools.cache
def anchors_of(path: pathlib.Path) -> frozenset[str]:
  return frozenset(Markdown.parse(path.read_text()).anchors())

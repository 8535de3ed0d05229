"""Checks the import rule that docs/layout.md states against the code: a room of xclip_jax/ imports only rooms
of lower layers (its table), except the imports its "Known exceptions" list names; and no module imports
itself through others (no import circle, between rooms or between the modules of one room).

A room is a sub-package (`models/`) or a top-level module (`inference.py`). Every import counts, inside
functions too. `python -m tests.layout_checker` prints the violations of this checkout.
"""

from __future__ import annotations

import ast
import dataclasses
import pathlib
import re
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = "xclip_jax"


@dataclasses.dataclass(frozen=True)
class Rule:
  layers: dict[str, int]  # room -> layer
  exceptions: frozenset[tuple[str, str]]  # (file relative to the repo, imported module)


def read_rule(layout_md: pathlib.Path) -> Rule:
  """The layer table (`| 2 | `models/`, `data/` |`) and the exception bullets of docs/layout.md."""
  layers, exceptions = {}, set()
  for line in layout_md.read_text().splitlines():
    row = re.match(r"\|\s*(\d+)\s*\|(.*)\|\s*$", line)
    if row:
      for room in re.findall(r"`([^`]+)`", row.group(2)):
        layers[room] = int(row.group(1))
    bullet = re.match(rf"- `({PACKAGE}/[\w/]+\.py)` imports `({PACKAGE}[\w.]*)`", line)
    if bullet:
      exceptions.add((bullet.group(1), bullet.group(2)))
  return Rule(layers, frozenset(exceptions))


def room_of(repo: pathlib.Path, module: str) -> str:
  """`xclip_jax.models.cct` -> `models/`; `xclip_jax.inference` -> `inference.py`; `xclip_jax` -> `__init__.py`."""
  parts = module.split(".")
  if len(parts) == 1:
    return "__init__.py"
  return f"{parts[1]}/" if (repo / PACKAGE / parts[1]).is_dir() else f"{parts[1]}.py"


def _module_name(repo: pathlib.Path, path: pathlib.Path) -> str:
  parts = list(path.relative_to(repo).with_suffix("").parts)
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(repo: pathlib.Path, dotted: str) -> bool:
  path = repo.joinpath(*dotted.split("."))
  return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def lazy_exports(repo: pathlib.Path) -> dict[str, str]:
  """The package root's names and the modules they load from on first use (`_EXPORTS` in __init__.py)."""
  for node in ast.parse((repo / PACKAGE / "__init__.py").read_text()).body:
    if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "_EXPORTS" for t in node.targets):
      return ast.literal_eval(node.value)
  return {}


def imports_of(repo: pathlib.Path, path: pathlib.Path) -> list[tuple[int, str]]:
  """(line, module) of every xclip_jax module the file imports. `from pkg import mod` counts `pkg.mod`; the
  package root's lazy names count as the modules they load from (`xclip_jax.load_model`: xclip_jax.inference)."""
  module = _module_name(repo, path)
  package = module if path.name == "__init__.py" else module.rpartition(".")[0]
  exports = lazy_exports(repo)
  tree = ast.parse(path.read_text())
  found = []
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      found += [(node.lineno, alias.name) for alias in node.names if alias.name != PACKAGE]
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:
        anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
        base = ".".join(anchor + ([node.module] if node.module else []))
      names = [f"{base}.{a.name}" if _is_module(repo, f"{base}.{a.name}") else exports.get(a.name, base)
               if base == PACKAGE else base for a in node.names]
      found += [(node.lineno, m) for m in names]
    elif (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == PACKAGE
          and path.name != "__init__.py"):  # `import xclip_jax` then `xclip_jax.NAME`
      name = f"{PACKAGE}.{node.attr}"
      found.append((node.lineno, name if _is_module(repo, name) else exports.get(node.attr, PACKAGE)))
  return [(line, m) for line, m in found if m.split(".")[0] == PACKAGE]


def import_graph(repo: pathlib.Path) -> dict[str, set[str]]:
  """{module: the xclip_jax modules it imports} over every module of the package (a package is its __init__)."""
  graph = {}
  for path in sorted((repo / PACKAGE).rglob("*.py")):
    module = _module_name(repo, path)
    graph[module] = {m for _, m in imports_of(repo, path) if m != module and _is_module(repo, m)}
  return graph


def import_circles(graph: dict[str, set[str]]) -> list[list[str]]:
  """The strongly connected groups of more than one module (Tarjan), each sorted, in sorted order."""
  index, low, stack, on_stack, groups = {}, {}, [], set(), []

  def visit(node: str) -> None:
    index[node] = low[node] = len(index)
    stack.append(node)
    on_stack.add(node)
    for other in sorted(graph.get(node, ())):
      if other not in index:
        visit(other)
        low[node] = min(low[node], low[other])
      elif other in on_stack:
        low[node] = min(low[node], index[other])
    if low[node] == index[node]:
      group = []
      while True:
        member = stack.pop()
        on_stack.discard(member)
        group.append(member)
        if member == node:
          break
      if len(group) > 1:
        groups.append(sorted(group))

  for node in sorted(graph):
    if node not in index:
      visit(node)
  return sorted(groups)


def _circle_path(graph: dict[str, set[str]], group: list[str]) -> list[str]:
  """One import path around a circle: from its first module back to it, inside the group."""
  start, members = group[0], set(group)
  paths = {start: [start]}
  frontier = [start]
  while frontier:
    node = frontier.pop(0)
    for other in sorted(graph[node] & members):
      if other == start:
        return paths[node] + [start]
      if other not in paths:
        paths[other] = paths[node] + [other]
        frontier.append(other)
  return group


def check(repo: pathlib.Path = REPO) -> list[str]:
  """Every import that breaks the rule of docs/layout.md, every listed exception that no longer occurs, and
  every import circle."""
  rule = read_rule(repo / "docs" / "layout.md")
  problems, seen_exceptions = [], set()
  for path in sorted((repo / PACKAGE).rglob("*.py")):
    source = str(path.relative_to(repo))
    importer = room_of(repo, _module_name(repo, path))
    if importer not in rule.layers:
      problems.append(f"{source}: room `{importer}` has no row in the layer table of docs/layout.md")
      continue
    for line, module in imports_of(repo, path):
      imported = room_of(repo, module)
      if imported == importer:
        continue
      listed = {(f, m) for f, m in rule.exceptions if f == source and (module + ".").startswith(m + ".")}
      if listed:
        seen_exceptions |= listed
      elif imported not in rule.layers:
        problems.append(f"{source}:{line}: imports {module}, whose room `{imported}` has no row in docs/layout.md")
      elif rule.layers[imported] >= rule.layers[importer]:
        problems.append(f"{source}:{line}: imports {module}: `{importer}` (layer {rule.layers[importer]}) may "
                        f"only import lower layers, `{imported}` is layer {rule.layers[imported]}")
  for source, module in sorted(rule.exceptions - seen_exceptions):
    problems.append(f"docs/layout.md lists `{source}` importing `{module}`, which it no longer does")
  graph = import_graph(repo)
  for group in import_circles(graph):
    problems.append(f"import circle between {', '.join(group)}: {' -> '.join(_circle_path(graph, group))}")
  return problems


if __name__ == "__main__":
  violations = check()
  print("\n".join(violations) or "layout: no violations")
  sys.exit(1 if violations else 0)

"""Finds what has rotted in README.md and docs/*.md (used by tests/test_docs.py).

- every relative link and `#anchor` resolves (GitHub's heading ids);
- every repository path in a command (scripts/, configs/, notebooks/, ...) or quoted in the text exists;
- every one of our commands in a ```bash block (`python -m xclip_jax.<module>`, `python scripts/<name>.py`)
  accepts `--help`, and every `--flag` it shows is defined by that command (tests/docs_commands.py);
- every `--config.a.b=v` override applies to the config file, with its `:args`, loaded by the same command;
- every `xclip_jax` import in a ```python block, and the attributes used on the imported modules, exist.

`python -m tests.docs_checker` prints the problems of this checkout.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import pathlib
import re
import sys

from tests.docs_commands import (
  SHELL_LANGUAGES,
  Command,
  prefetch_help,
  run_help,
  shell_commands,
  subcommands_of,
  target_exists,
)
from tests.docs_markdown import CodeBlock, Markdown, anchors_of

REPO = pathlib.Path(__file__).resolve().parents[1]
PATH_PREFIXES = ("scripts/", "configs/", "notebooks/", "xclip_jax/", "tests/", "docs/")  # in commands
PROSE_PATH_PREFIXES = ("scripts/", "configs/", "xclip_jax/", "tests/")  # in `code` in prose (not outputs)


@dataclasses.dataclass(frozen=True)
class Problem:
  file: str
  line: int
  message: str

  def __str__(self) -> str:
    return f"{self.file}:{self.line}: {self.message}"


def check_links(markdown: Markdown, where: pathlib.Path, repo: pathlib.Path) -> list[tuple[int, str]]:
  problems = []
  for line, target in markdown.links():
    if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("//"):
      continue  # external (https:, mailto:, ...)
    path_part, _, anchor = target.partition("#")
    path = (where.parent / path_part).resolve() if path_part else where
    if path_part and not path.exists():
      problems.append((line, f"broken link {target!r}: no such file {path_part!r}"))
    elif anchor and path.suffix == ".md":
      anchors = anchors_of(path) if path_part else frozenset(markdown.anchors())
      if anchor not in anchors:
        problems.append((line, f"broken anchor {target!r}: no heading with id {anchor!r} in {path.name}"))
  return problems


def _path_words(word: str, prefixes: tuple[str, ...]) -> list[str]:
  candidates = [word] + ([word.split("=", 1)[1]] if "=" in word else [])
  return [c.strip("'\"[]") for c in candidates if c.strip("'\"[]").startswith(prefixes)]


def check_path(repo: pathlib.Path, word: str) -> str | None:
  """An error if `word` names a repository path that does not exist (config `:args` and globs allowed)."""
  path = word.split(":")[0].rstrip(".,;)")
  if any(c in path for c in "<>{}$") or path.endswith("/..."):
    return None  # a placeholder
  if "*" in path:
    return None if list(repo.glob(path)) else f"no file matches {path!r}"
  return None if (repo / path).exists() else f"no such path {path!r}"


def check_paths(markdown: Markdown, commands: list[Command], repo: pathlib.Path) -> list[tuple[int, str]]:
  words = [(c.line, w, PATH_PREFIXES) for c in commands for w in c.words]
  words += [(line, w, PROSE_PATH_PREFIXES) for line, span in markdown.inline_code() for w in span.split()]
  problems = []
  for line, word, prefixes in words:
    for path in _path_words(word, prefixes):
      error = check_path(repo, path)
      if error:
        problems.append((line, error))
  return problems


def check_command(repo: pathlib.Path, command: Command) -> list[str]:
  """The command exists, accepts --help, defines every flag shown; its config loads and takes its overrides."""
  target = command.target
  if not target_exists(repo, target):
    return [f"no such module {target.name!r}" if target.kind == "module" else f"no such script {target.name!r}"]
  subcommands = subcommands_of(repo, command)
  help_ = run_help(repo, target, subcommands)
  shown = " ".join([str(target), *subcommands])
  if not help_.accepted:
    return [f"'{shown} --help' failed (exit {help_.code}): {help_.output.strip()[-600:]}"]
  problems, config_files, overrides = [], {}, []
  words = command.args[:command.args.index("--")] if "--" in command.args else command.args  # `--`: not ours
  for index, word in enumerate(words):
    flag = word.strip("[]")
    if not flag.startswith("--"):
      continue
    name, has_value, value = flag.partition("=")
    root = name[2:].split(".")[0]
    if "." in name and root in help_.config_flags:
      overrides.append((root, flag))
    elif name not in help_.options:
      hyphenated = name.replace("_", "-")
      spelled = f" (spelled {hyphenated}: docs/layout.md#command-lines)" if hyphenated in help_.options else ""
      problems.append(f"unknown flag {name} for {shown}{spelled}")
    elif name[2:] in help_.config_flags:
      config_files[name[2:]] = value if has_value else (words[index + 1] if index + 1 < len(words) else "")
  for root, config_file in config_files.items():
    error = check_config(repo, root, config_file)
    if error:
      problems.append(f"config {config_file} does not load: {error}")
  for root, flag in overrides:
    if root not in config_files:
      problems.append(f"config override {flag} without --{root}=<file> in the same command")
    elif not check_config(repo, root, config_files[root]):
      error = check_config(repo, root, config_files[root], flag)
      if error:
        problems.append(f"config override {flag} does not apply to {config_files[root]}: {error}")
  return problems


def check_config(repo: pathlib.Path, flag_name: str, config_file: str, override: str | None = None) -> str | None:
  """Loads the config file with its :args and applies the override as every command does (`cli.load_config`):
  None, or the one-line error a user would see."""
  from xclip_jax import cli

  try:
    cli.load_config(str(repo / config_file), [override] if override else [], flag=flag_name)
  except cli.UsageError as error:
    return str(error).replace(f"{repo}/", "")
  return None


def check_python_block(block: CodeBlock) -> list[tuple[int, str]]:
  """Imports from xclip_jax in a ```python block resolve, and so do attributes used on the imported modules."""
  try:
    tree = ast.parse("\n".join(block.lines))
  except SyntaxError as error:
    return [(block.first_line + (error.lineno or 1) - 1, f"Python block does not parse: {error.msg}")]
  problems, bound = [], {}
  for node in ast.walk(tree):
    line = block.first_line + getattr(node, "lineno", 1) - 1
    if isinstance(node, ast.Import):
      for alias in node.names:
        if alias.name.split(".")[0] == "xclip_jax":
          obj, error = _resolve(alias.name)
          if error:
            problems.append((line, error))
          else:
            bound[alias.asname or alias.name.split(".")[0]] = _resolve(alias.name.split(".")[0])[0]
    elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "xclip_jax":
      for alias in node.names:
        obj, error = _resolve(f"{node.module}.{alias.name}")
        if error:
          problems.append((line, error))
        else:
          bound[alias.asname or alias.name] = obj
  for node in ast.walk(tree):
    if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
      chain, base = [], node
      while isinstance(base, ast.Attribute):
        chain.insert(0, base.attr)
        base = base.value
      if isinstance(base, ast.Name) and base.id in bound and _is_module(bound[base.id]):
        error = _resolve_attributes(bound[base.id], chain)
        if error:
          problems.append((block.first_line + node.lineno - 1, f"{base.id}.{'.'.join(chain)}: {error}"))
  return sorted(set(problems))


def _is_module(obj) -> bool:
  return type(obj).__name__ == "module"


def _resolve(dotted: str):
  """(object, None) for a module or a module's attribute named by a dotted path, else (None, error)."""
  parts = dotted.split(".")
  for split in range(len(parts), 0, -1):
    try:
      obj = importlib.import_module(".".join(parts[:split]))
    except ModuleNotFoundError:
      continue
    error = _resolve_attributes(obj, parts[split:])
    return (None, f"cannot import {dotted}: {error}") if error else (_walk(obj, parts[split:]), None)
  return None, f"cannot import {dotted}: no such module"


def _walk(obj, chain):
  for attr in chain:
    obj = getattr(obj, attr)
  return obj


def _resolve_attributes(obj, chain: list[str]) -> str | None:
  """Follows attributes while they are modules (importing submodules); checks the first non-module one."""
  for attr in chain:
    if not _is_module(obj):
      return None
    if not hasattr(obj, attr):
      try:
        importlib.import_module(f"{obj.__name__}.{attr}")
      except ModuleNotFoundError:
        return f"{obj.__name__} has no attribute or submodule {attr!r}"
    obj = getattr(obj, attr)
  return None


def doc_files(repo: pathlib.Path) -> list[pathlib.Path]:
  """README.md and every docs/*.md page (pages added later are checked too)."""
  return [p for p in [repo / "README.md", *sorted((repo / "docs").glob("*.md"))] if p.exists()]


def check_markdown(text: str, where: pathlib.Path, repo: pathlib.Path = REPO) -> list[Problem]:
  """Every problem of one markdown text, read as the file `where` (links resolve from its folder)."""
  markdown = Markdown.parse(text)
  name = str(where.relative_to(repo)) if where.is_relative_to(repo) else str(where)
  found: list[tuple[int, str]] = []
  split_errors: list[str] = []
  commands = [c for b in markdown.blocks if b.language in SHELL_LANGUAGES for c in shell_commands(b, split_errors)]
  found += [(int(e.split(":")[0]), e.split(": ", 1)[1]) for e in split_errors]
  found += check_links(markdown, where, repo)
  found += check_paths(markdown, commands, repo)
  ours = [c for c in commands if c.target]
  prefetch_help(repo, ours)
  found += [(c.line, problem) for c in ours for problem in check_command(repo, c)]
  for block in markdown.blocks:
    if block.language in ("python", "py"):
      found += check_python_block(block)
  return [Problem(name, line, message) for line, message in sorted(set(found))]


def check_repo(repo: pathlib.Path = REPO) -> list[Problem]:
  files = doc_files(repo)
  all_commands = [c for f in files for b in Markdown.parse(f.read_text()).blocks if b.language in SHELL_LANGUAGES
                  for c in shell_commands(b) if c.target]
  prefetch_help(repo, all_commands)  # every --help of every page at once, in parallel
  return [p for f in files for p in check_markdown(f.read_text(), f, repo)]


if __name__ == "__main__":
  problems = check_repo()
  print("\n".join(map(str, problems)) or "docs: no problems")
  sys.exit(1 if problems else 0)

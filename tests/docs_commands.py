"""The commands of a shell block, which of them are ours, and what each of ours defines.

A line ending in `\\` continues on the next; `#` starts a comment; `|`, `&&`, `||`, `;` and `&` separate commands;
leading `VAR=value`, `time`, `env` ... are skipped. Ours are `python -m xclip_jax.<module>` and
`python scripts/<name>.py`. Each is run once with `--help` (and with its sub-command, e.g.
`python -m xclip_jax.zoo download --help`) in a subprocess that records the flags its real argparse parsers (and
absl FLAGS, for a command that still uses them) define, so flags are checked against their definitions rather than
against help text. A `--config` flag of `xclip_jax.cli.add_config` is recorded as one that takes a config file
and its `--config.a.b=v` overrides.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import os
import pathlib
import re
import shlex
import subprocess
import sys
import tempfile

from tests.docs_markdown import CodeBlock

SHELL_LANGUAGES = {"bash", "sh", "shell", "console"}
SEPARATORS = {"|", "||", "&&", ";", "&"}
PREFIX_WORDS = {"time", "nohup", "env", "sudo", "exec", "do", "then", "else"}
HELP_TIMEOUT_S = 180


@dataclasses.dataclass(frozen=True)
class Target:
  """One of our own command lines: a module under xclip_jax, or a Python script in scripts/."""

  kind: str  # "module" or "script"
  name: str  # "xclip_jax.zoo" or "scripts/convert_checkpoint.py"

  def __str__(self) -> str:
    return f"python -m {self.name}" if self.kind == "module" else f"python {self.name}"


@dataclasses.dataclass
class Command:
  line: int
  words: list[str]
  target: Target | None = None
  args: list[str] = dataclasses.field(default_factory=list)  # the words after the target


def _words(logical: str) -> list[str]:
  lexer = shlex.shlex(logical, posix=True, punctuation_chars=";&|")
  lexer.whitespace_split, lexer.commenters = True, "#"
  return list(lexer)


def shell_commands(block: CodeBlock, problems: list[str] | None = None) -> list[Command]:
  """The commands of a shell block: continuation lines and multi-line quotes joined, comments and here-documents
  dropped, split at | && || ; &."""
  commands, pending, start, heredoc_end = [], "", 0, None
  for offset, line in enumerate(block.lines):
    if heredoc_end is not None:
      heredoc_end = None if line.strip() == heredoc_end else heredoc_end
      continue
    if not pending:
      start = block.first_line + offset
    if line.rstrip().endswith("\\"):
      pending += line.rstrip()[:-1] + " "
      continue
    logical = (pending + line).strip()
    logical = logical[2:] if logical.startswith("$ ") else logical
    try:
      words = _words(logical)
    except ValueError as error:
      if "closing quotation" in str(error) and offset + 1 < len(block.lines):
        pending = pending + line + "\n"  # a quoted string goes on over lines
        continue
      if problems is not None:
        problems.append(f"{start}: cannot split the command ({error}): {logical}")
      pending = ""
      continue
    pending = ""
    heredoc = re.search(r"<<-?\s*['\"]?(\w+)", logical)
    heredoc_end = heredoc.group(1) if heredoc else None
    current: list[str] = []
    for word in [*words, ";"]:
      if word in SEPARATORS:
        if current:
          commands.append(_command(start, current))
        current = []
      else:
        current.append(word)
  return commands


def _command(line: int, words: list[str]) -> Command:
  redirect = re.compile(r"\d?(?:>>?|<)")
  words = [w for i, w in enumerate(words) if not redirect.fullmatch(w) and not (i and redirect.fullmatch(words[i - 1]))]
  while words and (words[0] in PREFIX_WORDS or re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=\S*", words[0])):
    words = words[1:]
  command = Command(line, words)
  if not words or not re.fullmatch(r"(?:\S*/)?python(?:3(?:\.\d+)?)?", words[0]):
    return command
  rest = words[1:]
  while rest and rest[0].startswith("-") and rest[0] != "-m":
    rest = rest[1:]  # interpreter options such as -u
  if len(rest) >= 2 and rest[0] == "-m" and rest[1].split(".")[0] == "xclip_jax":
    command.target, command.args = Target("module", rest[1]), rest[2:]
  elif rest and rest[0].startswith("scripts/") and rest[0].endswith(".py"):
    command.target, command.args = Target("script", rest[0]), rest[1:]
  return command


def module_exists(repo: pathlib.Path, module: str) -> bool:
  path = repo.joinpath(*module.split("."))
  return path.with_suffix(".py").is_file() or (path / "__main__.py").is_file()


# Runs the command as `python -m` / `python script` would, with its argparse parsers and absl FLAGS recorded.
# A parser called with parse_known_args by the script itself hands the rest of the words on to another parser
# (scripts/profile_step.py to scripts/benchmark.py's): with forward=1 it lets `--help` through to that one.
_HELP_DRIVER = r"""
import argparse, json, runpy, sys, traceback
kind, name, out, forward, *args = sys.argv[1:]
parsers, depth = [], [0]
parse_args, parse_known_args = argparse.ArgumentParser.parse_args, argparse.ArgumentParser.parse_known_args
def counting(self, args=None, namespace=None):
  depth[0] += 1
  try:
    return parse_args(self, args, namespace)
  finally:
    depth[0] -= 1
def recording(self, args=None, namespace=None):
  subcommands = [c for a in self._actions if isinstance(a, argparse._SubParsersAction) for c in a.choices]
  forwards = depth[0] == 0 and not parsers
  config = [s[2:] for a in self._actions if getattr(a, "config_file", False) for s in a.option_strings]
  parsers.append({"options": [s for a in self._actions for s in a.option_strings], "subcommands": subcommands,
                  "forwards": forwards, "config_flags": config})
  words = list(sys.argv[1:] if args is None else args)
  if forwards and forward == "1" and "--help" in words:
    namespace, rest = parse_known_args(self, [w for w in words if w not in ("-h", "--help")], namespace)
    return namespace, [*rest, "--help"]
  return parse_known_args(self, args, namespace)
argparse.ArgumentParser.parse_args = counting
argparse.ArgumentParser.parse_known_args = recording
code = 0
try:
  sys.argv = [name, *args]
  if kind == "module":
    runpy.run_module(name, run_name="__main__", alter_sys=True)
  else:
    sys.path.insert(0, str(__import__("pathlib").Path(name).resolve().parent))
    runpy.run_path(name, run_name="__main__")
except SystemExit as exit:
  code = exit.code if isinstance(exit.code, int) else (0 if exit.code is None else 1)
except BaseException:
  traceback.print_exc()
  code = "exception"
absl, config_flags = [], []
if "absl.flags" in sys.modules and not parsers:  # absl-based (a library imported absl beside argparse: not)
  FLAGS = sys.modules["absl.flags"].FLAGS
  for flag_name in list(FLAGS):
    flag = FLAGS[flag_name]
    absl += [flag_name] + (["no" + flag_name] if flag.boolean else [])
    if type(flag).__name__ == "_ConfigFlag":
      config_flags.append(flag_name)
with open(out, "w") as f:
  json.dump({"code": code, "parsers": parsers, "absl": absl, "config_flags": config_flags}, f)
"""


@dataclasses.dataclass(frozen=True)
class Help:
  """What `<target> [subcommands] --help` did: its exit, output and the flags its parsers define."""

  code: int | str
  output: str
  options: frozenset[str]
  subcommands: frozenset[str]
  config_flags: frozenset[str]
  uses_absl: bool

  @property
  def accepted(self) -> bool:
    # absl prints --help and exits 1 (it then points at --helpfull); argparse exits 0.
    return self.code == 0 or (self.uses_absl and self.code == 1 and "--helpfull" in self.output)


_HELP_CACHE: dict[tuple, Help] = {}


def _run_driver(repo: pathlib.Path, target: Target, words: tuple[str, ...], forward: bool) -> tuple[dict, str]:
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")]),
             JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3", XLA_FLAGS="")
  with tempfile.TemporaryDirectory() as tmp:
    out = pathlib.Path(tmp) / "flags.json"
    command = [sys.executable, "-c", _HELP_DRIVER, target.kind, target.name, str(out), str(int(forward)), *words]
    try:
      run = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True, timeout=HELP_TIMEOUT_S,
                           check=False)
    except subprocess.TimeoutExpired:
      return {"code": "timeout", "parsers": [], "absl": [], "config_flags": []}, f"timed out after {HELP_TIMEOUT_S} s"
    if out.exists():
      return json.loads(out.read_text()), run.stdout + run.stderr
    return {"code": run.returncode, "parsers": [], "absl": [], "config_flags": []}, run.stdout + run.stderr


def run_help(repo: pathlib.Path, target: Target, subcommands: tuple[str, ...] = ()) -> Help:
  """`target subcommands... --help` in a subprocess at the repo root; cached, so each runs once per session."""
  key = (str(repo), target, subcommands)
  if key in _HELP_CACHE:
    return _HELP_CACHE[key]
  recorded, output = _run_driver(repo, target, (*subcommands, "--help"), forward=False)
  parsers = recorded["parsers"]
  options = {o for p in parsers for o in p["options"]} | {"--" + f for f in recorded["absl"]}
  if parsers and parsers[0]["forwards"]:  # the flags of the parser the rest goes to
    forwarded, _ = _run_driver(repo, target, (*subcommands, "--help"), forward=True)
    options |= {o for p in forwarded["parsers"] for o in p["options"]}
  config_flags = {*recorded["config_flags"], *(f for p in parsers for f in p.get("config_flags", []))}
  result = Help(code=recorded["code"], output=output, options=frozenset(options),
                subcommands=frozenset(parsers[-1]["subcommands"]) if parsers else frozenset(),
                config_flags=frozenset(config_flags), uses_absl=bool(recorded["absl"]))
  _HELP_CACHE[key] = result
  return result


def subcommands_of(repo: pathlib.Path, command: Command) -> tuple[str, ...]:
  """The words that name sub-commands of the target (`download` of xclip_jax.zoo), after any top-level flags."""
  chosen: tuple[str, ...] = ()
  for word in command.args:
    if word == "--":
      break
    if not word.startswith("-") and word in run_help(repo, command.target, chosen).subcommands:
      chosen += (word,)
  return chosen


def prefetch_help(repo: pathlib.Path, commands: list[Command], workers: int = 4) -> None:
  """Runs the --help calls the commands need in parallel (top level first, then sub-commands)."""
  targets = {c.target for c in commands if c.target and target_exists(repo, c.target)}
  with concurrent.futures.ThreadPoolExecutor(workers) as pool:
    list(pool.map(lambda t: run_help(repo, t), targets))
    needed = {(c.target, subcommands_of(repo, c)) for c in commands if c.target in targets}
    list(pool.map(lambda key: run_help(repo, *key), needed))


def target_exists(repo: pathlib.Path, target: Target) -> bool:
  return module_exists(repo, target.name) if target.kind == "module" else (repo / target.name).is_file()

"""How the project's commands read their command line: one convention, one helper.

The convention (docs/layout.md, "Command lines") for `python -m xclip_jax.<module>` and `python scripts/<name>.py`:

- flags are parsed by argparse, through `cli.parser()`; a flag of several words is spelled with hyphens
  (`--batch-size`); the underscore spelling (`--batch_size`) is accepted too, but never shown;
- a run configuration is `--config FILE[:args]` with `--config.a.b=v` overrides (`cli.add_config`), read by
  ml_collections' own config flag exactly as before; `--print-config` prints the result and exits;
- a usage error (a missing or unknown flag, a bad value, a config field that does not exist, a config value the
  command refuses) is ONE line on stderr, `<prog>: error: <what>`, and exit status 2;
- Ctrl-C stops a command cleanly: what is complete is kept, one line says so, exit status 130 (`cli.run`);
- results go to stdout; progress, logs and errors to stderr.

This module imports nothing of the package and no heavy library at import time (the light core's `predict` and
`zoo` use it); ml_collections and absl are imported only by commands that take a `--config`.
"""

from __future__ import annotations

import _thread
import argparse
import ast
import difflib
import importlib.util
import os
import pathlib
import re
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

USAGE_ERROR = 2  # argparse's exit status for a bad command line
INTERRUPTED = 130  # 128 + SIGINT: what a shell reports for a command stopped by Ctrl-C


def _ignore_sigint_in_workers() -> None:
  """A worker process of a command ignores the terminal's Ctrl-C, which reaches its whole process group: the
  command stops its workers itself. multiprocessing's spawn imports the command's module (and so this one)
  before anything else in a worker, so a Ctrl-C finds no worker in the middle of its start-up."""
  import multiprocessing

  child = getattr(multiprocessing.current_process(), "_inheriting", False) or (  # in spawn's set-up, or after
      multiprocessing.parent_process() is not None)
  if child and threading.current_thread() is threading.main_thread():
    signal.signal(signal.SIGINT, signal.SIG_IGN)


_ignore_sigint_in_workers()


class UsageError(Exception):
  """A command line, or a config it names, that the command cannot run: printed as one line, exit status 2."""


class Parser(argparse.ArgumentParser):
  """argparse with the project's conventions: hyphenated flags (underscores accepted), one-line errors, and the
  `--config` of `add_config` (ml_collections' file + overrides)."""

  def __init__(self, *args, **kwargs):
    kwargs.setdefault("allow_abbrev", False)  # `--config.x` must never read as an abbreviation of a flag
    kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
    super().__init__(*args, **kwargs)
    self.config_flag: str | None = None

  def error(self, message: str) -> NoReturn:
    """One line (argparse's own prints the usage first), exit status 2."""
    self.exit(USAGE_ERROR, f"{short_prog(self.prog)}: error: {message}\n")

  def _hyphenated(self, word: str) -> str:
    """`--batch_size[=v]` -> `--batch-size[=v]` when that is one of this parser's flags."""
    if not word.startswith("--") or "_" not in word:
      return word
    name, equals, value = word.partition("=")
    spelled = name.replace("_", "-")
    if name not in self._option_string_actions and spelled in self._option_string_actions:
      return spelled + equals + value
    return word

  def parse_known_args(self, args: Sequence[str] | None = None, namespace: Any = None):
    words = list(sys.argv[1:] if args is None else args)
    cut = words.index("--") if "--" in words else len(words)
    words = [self._hyphenated(w) for w in words[:cut]] + words[cut:]
    overrides: list[str] = []
    if self.config_flag:
      words, overrides = _split_overrides(words, self.config_flag)
    namespace, rest = super().parse_known_args(words, namespace)
    if self.config_flag:
      self._load_config(namespace, overrides)
    return namespace, rest

  def _load_config(self, namespace: Any, overrides: list[str]) -> None:
    name = self.config_flag
    path = getattr(namespace, name)
    if path is None:
      if overrides or getattr(namespace, "print_config", False):
        self.error(f"{overrides[0].split('=')[0] if overrides else '--print-config'} needs --{name}=FILE")
      return
    try:
      config = load_config(path, overrides, flag=name)
    except UsageError as error:
      self.error(str(error))
    setattr(namespace, name, config)
    setattr(namespace, f"{name}_file", path)
    if getattr(namespace, "print_config", False):
      print(config)
      self.exit(0)


def short_prog(prog: str) -> str:
  """"python -m xclip_jax.plan" -> "xclip_jax.plan" (the prefix of its error lines)."""
  return re.sub(r"^python3?\s+(-m\s+)?", "", prog)


def parser(prog: str | None = None, description: str | None = None, **kwargs) -> Parser:
  """The parser of one command. `prog` as the user types it, e.g. "python -m xclip_jax.plan"."""
  return Parser(prog=prog, description=description, **kwargs)


def add_config(parser_: Parser, *, name: str = "config",
               help: str = "Run configuration file, configs/<name>.py[:args]; override any field with "
                           "--config.a.b=VALUE.") -> None:
  """`--config FILE[:args]` (+ `--config.a.b=v` overrides) and `--print-config`.

  After parsing, `args.config` is the loaded ConfigDict (locked, as with ml_collections' absl flag) and
  `args.config_file` the string given. The command checks its required flags with `require` after parsing, so
  that `--print-config` works without them.
  """
  action = parser_.add_argument(f"--{name}", metavar="FILE[:args]", default=None, help=help)
  action.config_file = True  # tests/docs_commands.py: this flag takes a config file and its overrides
  parser_.add_argument("--print-config", action="store_true",
                       help=f"print the --{name} (after its :args and overrides), every field with its value, and exit")
  parser_.config_flag = name


def require(parser_: Parser, args: argparse.Namespace, *names: str) -> None:
  """A one-line usage error unless every flag in `names` (dest names) was given."""
  missing = [f"--{n.replace('_', '-')}" for n in names if getattr(args, n, None) in (None, "")]
  if missing:
    parser_.error(f"the following arguments are required: {', '.join(missing)}")


def _split_overrides(words: list[str], name: str) -> tuple[list[str], list[str]]:
  """(the other words, the `--config.a.b[=v]` words with their separate values)."""
  pattern = re.compile(rf"^--?(no)?{re.escape(name)}\.")
  rest, overrides, i = [], [], 0
  while i < len(words):
    word = words[i]
    if word == "--":
      rest.extend(words[i:])
      break
    if pattern.match(word):
      overrides.append(word)
      if "=" not in word and i + 1 < len(words) and not words[i + 1].startswith("--"):
        overrides.append(words[i + 1])  # `--config.a.b VALUE`: absl reads the value from the next word
        i += 1
    else:
      rest.append(word)
    i += 1
  return rest, overrides


def load_config(path: str, overrides: Sequence[str] = (), *, flag: str = "config"):
  """The ConfigDict of `path[:args]` with its `--config.a.b=v` overrides, read by ml_collections' config flag.

  Raises UsageError with one line naming the file, the field and (for a mistyped field) the closest one.
  """
  from absl import flags
  from ml_collections import config_flags

  argv = ["xclip_jax", f"--{flag}={path}", *overrides]
  values = flags.FlagValues()
  config_flags.DEFINE_config_file(flag, None, "", flag_values=values, lock_config=True, sys_argv=argv)
  try:
    with warnings.catch_warnings():
      warnings.simplefilter("ignore", DeprecationWarning)  # ml_collections loads config files with load_module
      values(argv)
      config = getattr(values, flag)
      config.keys()  # a file that failed to load raises here (ml_collections defers the error to first use)
      return config
  except (flags.Error, KeyError, AttributeError, ValueError, TypeError, OSError, SyntaxError) as error:
    raise UsageError(_config_error(path, overrides, error, flag)) from None


def _last_line(error: BaseException) -> str:
  lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
  return lines[-1] if lines else type(error).__name__


def _config_error(path: str, overrides: Sequence[str], error: BaseException, flag: str) -> str:
  file = path.split(":", 1)[0]
  if isinstance(error, (KeyError, AttributeError)):
    field = _bad_field(overrides, error, flag)
    if field is not None:
      return _unknown_field(path, field, flag)
  message = _last_line(error)
  if "No such file" in message:
    return f"--{flag}={path}: {file} does not exist"
  if isinstance(error, OSError):
    return f"--{flag}={path}: cannot read {file}: {message}"
  if message.startswith(f"flag --{flag}."):  # absl's "flag --config.a.b=v: reason": a bad override value
    return message[len("flag "):]
  message = re.sub(r"^\w*Error: ", "", message)  # a config file's own error, e.g. an unknown :args key
  return f"--{flag}={path}: {message}"


def _bad_field(overrides: Sequence[str], error: BaseException, flag: str) -> str | None:
  """Which override names a field that does not exist (ml_collections names only the last part)."""
  missing = re.match(r"['\"\\]*([A-Za-z_]\w*)", str(error).strip().strip("'\""))
  for word in overrides:
    if not word.startswith("-"):
      continue
    field = word.lstrip("-").split("=", 1)[0].split(".", 1)[1]
    if missing and missing.group(1) in field.split("."):
      return field
  return None


def _unknown_field(path: str, field: str, flag: str) -> str:
  """`--config.train.totl_steps: configs/demo.py has no field train.totl_steps; did you mean train.total_steps?`"""
  config = load_config(path, flag=flag)
  node, known = config, []
  parts = field.split(".")
  for depth, part in enumerate(parts):
    keys = list(node.keys()) if hasattr(node, "keys") else []
    if part in keys and depth < len(parts) - 1:
      node, known = node[part], [*known, part]
      continue
    close = difflib.get_close_matches(part, [str(k) for k in keys], n=1, cutoff=0.6)
    prefix = ".".join(known)
    hint = f"; did you mean {'.'.join([*known, close[0], *parts[depth + 1:]])}?" if close else (
        f"; {prefix or 'the config'} has {', '.join(sorted(map(str, keys)))}" if keys else "")
    return f"--{flag}.{field}: {path} has no field {field}{hint}"
  return f"--{flag}.{field}: {path} has no field {field}"


def config_catalogue(directory: str | pathlib.Path | None = None) -> str:
  """'configs/<name>.py  <first line of its docstring>' for each config file (for a command's --help)."""
  folder = pathlib.Path(directory) if directory else pathlib.Path(__file__).resolve().parents[1] / "configs"
  if not folder.is_dir():
    return "(no configs/ folder next to this installation; see the repository's configs/)"
  rows = []
  for file in sorted(folder.glob("*.py")):
    if file.name.startswith("_"):
      continue
    try:
      doc = ast.get_docstring(ast.parse(file.read_text(encoding="utf-8"))) or ""
    except (OSError, SyntaxError):
      doc = ""
    rows.append((f"configs/{file.name}", doc.strip().splitlines()[0] if doc.strip() else ""))
  width = max((len(name) for name, _ in rows), default=0)
  return "\n".join(f"  {name:<{width}}  {line}" for name, line in rows)


def use_absl_logging():
  """absl's log format and INFO level, as `absl.app.run` sets them up; returns the handler (to add filters)."""
  from absl import flags, logging

  if not flags.FLAGS.is_parsed():  # absl's own flags (verbosity, log_dir, ...) keep their defaults
    flags.FLAGS.mark_as_parsed()
  logging.use_absl_handler()
  logging.set_verbosity(logging.INFO)
  return logging.get_absl_handler()


def _hardware_utils():
  """jax's own PCI scan for TPU chips and GPUs (jax/_src/hardware_utils.py, standard library only), loaded
  without importing jax: JAX reads JAX_PLATFORMS when it is imported. None where this jax has no such file."""
  spec = importlib.util.find_spec("jax")
  if spec is None or not spec.origin:
    return None
  path = pathlib.Path(spec.origin).parent / "_src" / "hardware_utils.py"
  module_spec = importlib.util.spec_from_file_location("_xclip_jax_hardware_utils", path)
  if not path.is_file() or module_spec is None:
    return None
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module


def cpu_unless_accelerator(environ: dict[str, str] | None = None) -> bool:
  """JAX_PLATFORMS=cpu where libtpu is installed but no TPU (and no GPU) is attached; returns whether it set it.

  JAX otherwise starts libtpu on every run, which then prints "unexpected worker hostname", "Failed to find
  host bounds for accelerator type" and "No jellyfish device found" (or, beside another libtpu process, a
  lock-file error). A JAX_PLATFORMS the user set is kept; TPU planning compiles with libtpu on the CPU
  platform (`python -m xclip_jax.plan`), so it is not affected.
  """
  environ = os.environ if environ is None else environ
  if "JAX_PLATFORMS" in environ or importlib.util.find_spec("libtpu") is None:
    return False
  try:
    hardware = _hardware_utils()
    if hardware is None:
      return False
    tpu_chips, _ = hardware.num_available_tpu_chips_and_device_id()
    gpu = hardware.has_visible_nvidia_gpu() or os.path.exists("/dev/kfd")  # NVIDIA; AMD ROCm
  except Exception:  # another jax's layout: leave the choice to JAX
    return False
  if tpu_chips or gpu:
    return False
  environ["JAX_PLATFORMS"] = "cpu"
  jax = sys.modules.get("jax")
  if environ is os.environ and jax is not None:  # a command that imported jax already: its backends start later
    jax.config.update("jax_platforms", "cpu")
  return True


_redelivering = False  # a swallowed KeyboardInterrupt is being raised again (not a new Ctrl-C)


def taking_redelivery() -> bool:
  """Whether this SIGINT is a swallowed KeyboardInterrupt raised again (then not a new Ctrl-C); resets it."""
  global _redelivering
  again, _redelivering = _redelivering, False
  return again


_in_unraisable_hook = False


def redelivery_deferred() -> bool:
  """Whether a SIGINT handler runs inside the unraisable hook; then the SIGINT is sent again shortly from a
  helper thread, because a KeyboardInterrupt raised inside the hook would be swallowed again ("Exception
  ignored in sys.unraisablehook")."""
  if not _in_unraisable_hook:
    return False
  threading.Timer(0.01, _thread.interrupt_main).start()
  return True


def _raise_keyboard_interrupt(signum, frame) -> None:
  del signum, frame
  if redelivery_deferred():
    return
  taking_redelivery()
  raise KeyboardInterrupt


def _unraisable(unraisable) -> None:
  """sys.unraisablehook: a KeyboardInterrupt that could not propagate is raised again in the main thread, once
  this hook has returned (a helper thread sends the SIGINT; the handler runs in the main thread)."""
  global _redelivering, _in_unraisable_hook
  if unraisable.exc_type is not None and issubclass(unraisable.exc_type, KeyboardInterrupt):
    _in_unraisable_hook = True
    try:
      _redelivering = True
      threading.Timer(0.01, _thread.interrupt_main).start()
    finally:
      _in_unraisable_hook = False
    return
  sys.__unraisablehook__(unraisable)


def install_interrupts() -> None:
  """For a command's process (`cli.run`): Ctrl-C raises KeyboardInterrupt, which is never lost in a garbage-
  collector callback. Only from the main thread; does nothing elsewhere."""
  if threading.current_thread() is not threading.main_thread():
    return
  if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
    signal.signal(signal.SIGINT, _raise_keyboard_interrupt)
  sys.unraisablehook = _unraisable


def run(main: Callable[[], int | None], *, prog: str,
        interrupted: str = "nothing was left half-written") -> NoReturn:
  """Runs a command's `main()` and exits with its status: a UsageError is one line and exit status 2; Ctrl-C
  that `main` did not handle itself is one line (`interrupted`: what was kept) and exit status 130 (and is never
  lost: `install_interrupts`). JAX keeps
  off libtpu where no TPU is attached (`cpu_unless_accelerator`)."""
  cpu_unless_accelerator()
  install_interrupts()
  try:
    code = main()
  except UsageError as error:
    print(f"{prog}: error: {error}", file=sys.stderr)
    code = USAGE_ERROR
  except KeyboardInterrupt:
    print(f"\n{prog}: stopped by Ctrl-C; {interrupted}", file=sys.stderr)
    code = INTERRUPTED
  if code == INTERRUPTED and threading.current_thread() is threading.main_thread():
    # Stopped by Ctrl-C, its line printed: a further SIGINT while the interpreter shuts down (where Python gives
    # SIGINT back its default action) would end the process by the signal instead of with 130 (a test saw -2 once).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
  sys.exit(code or 0)

"""The command-line convention (docs/layout.md#command-lines), as a user meets it: real commands in subprocesses,
their exit status and the lines they print; and a scan that every command follows it."""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

import pytest

from tests import process_fixtures, training_fixtures
from tests.training_fixtures import user_env
from xclip_jax import cli
from xclip_jax.zoo import registry

REPO = training_fixtures.REPO


def _run(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, *args], cwd=REPO, env=training_fixtures.subprocess_env(), text=True,
                        capture_output=True, timeout=timeout, check=False)


def _one_line(result: subprocess.CompletedProcess) -> str:
  """The single line a refused command prints (stderr may hold library start-up noise before it)."""
  assert "Traceback" not in result.stderr, result.stderr
  lines = [line for line in result.stderr.splitlines() if ": error: " in line]
  assert len(lines) == 1, result.stderr
  return lines[0]


def test_main_help_lists_the_configs_and_how_to_print_one():
  result = _run("-m", "xclip_jax.main", "--help")
  assert result.returncode == 0, result.stderr
  for config in sorted((REPO / "configs").glob("*.py")):
    first_line = ast.get_docstring(ast.parse(config.read_text())).splitlines()[0]
    assert f"configs/{config.name}  " in result.stdout and first_line in result.stdout
  assert "python -m xclip_jax.main --config configs/demo.py --print-config" in result.stdout


def test_print_config_shows_every_field_after_args_and_overrides():
  result = _run("-m", "xclip_jax.main", "--config", "configs/demo.py:shrink=true", "--config.train.lr=0.25",
                "--print-config")
  assert result.returncode == 0, result.stderr
  shrunk = cli.load_config("configs/demo.py:shrink=true")
  assert f"\n  total_steps: {shrunk.train.total_steps}\n" in result.stdout  # the value :shrink=true gives
  assert "\n  lr: 0.25\n" in result.stdout and "\nprotocol: demo\n" in result.stdout  # the override; a default


@pytest.mark.parametrize("args, expected", [
    (["--config.train.totl_steps=5"],
     "xclip_jax.main: error: --config.train.totl_steps: configs/demo.py has no field train.totl_steps; did you mean "
     "train.total_steps?"),
    (["--config.trian.lr=1"], "has no field trian.lr; did you mean train.lr?"),
    (["--config.train.total_steps=five"], "error: --config.train.total_steps=five: invalid literal for int()"),
    (["--config.mesh.data=1", "--bogus=1"], "error: unrecognized arguments: --bogus=1"),
])
def test_a_mistyped_config_field_is_one_line_with_the_close_match(args, expected, tmp_path):
  result = _run("-m", "xclip_jax.main", "--config", "configs/demo.py", "--workdir", str(tmp_path / "w"), *args)
  assert result.returncode == 2
  assert expected in _one_line(result)
  assert not (tmp_path / "w").exists()  # refused before any work


def test_a_config_file_error_names_the_file():
  result = _run("-m", "xclip_jax.main", "--config", "configs/demo.py:shrnk=true", "--workdir", "unused")
  assert result.returncode == 2
  assert _one_line(result) == ("xclip_jax.main: error: --config=configs/demo.py:shrnk=true: config argument "
                               "'shrnk=true': expected key=value with key in ['seed', 'shrink']")
  missing = _run("-m", "xclip_jax.main", "--config", "configs/nope.py", "--workdir", "unused")
  assert missing.returncode == 2
  assert _one_line(missing) == "xclip_jax.main: error: --config=configs/nope.py: configs/nope.py does not exist"


def test_values_main_refuses_are_one_line_before_any_work(tmp_path):
  """One subprocess, several refused values in turn would each pay JAX's import; the first refusal ends it,
  so the values are checked one per run for the kinds main validates (mode, model, mesh)."""
  for override, expected in [
      ("--config.mode=trian", "configs/demo.py: config.mode must be 'train' or 'evaluate', got 'trian'"),
      ("--config.model.variant=B/99", "configs/demo.py: Unknown variant 'B/99'; choose one of B/32, B/16"),
      ("--config.mesh.data=3", "config.mesh {'data': 3, 'fsdp': 1, 'tensor': 1} does not divide the 1 available"),
  ]:
    result = _run("-m", "xclip_jax.main", "--config", "configs/demo.py", "--workdir", str(tmp_path / "w"), override)
    assert result.returncode == 2, result.stderr[-2000:]
    assert expected in _one_line(result)
    assert not (tmp_path / "w").exists()


def test_missing_flags_and_the_underscore_spelling():
  result = _run("-m", "xclip_jax.main", "--config", "configs/demo.py")
  assert result.returncode == 2
  assert _one_line(result) == "xclip_jax.main: error: the following arguments are required: --workdir"
  parser = cli.parser("python -m example", "doc")
  parser.add_argument("--batch-size", type=int)
  parser.add_argument("--out")
  assert parser.parse_args(["--batch_size", "3", "--out=a_b"]).batch_size == 3
  assert parser.parse_args(["--batch_size=4"]).batch_size == 4
  assert "--batch_size" not in parser.format_help()


def test_a_cpu_run_with_libtpu_installed_prints_nothing_of_libtpu(tmp_path):
  """libtpu is installed here (requirements-dev) and no TPU is attached: main starts JAX's backends (to check
  the mesh), and the one line it refuses the mesh with is all it prints."""
  pytest.importorskip("libtpu")
  environ: dict[str, str] = {}
  if not cli.cpu_unless_accelerator(environ):
    pytest.skip("an accelerator is attached: JAX is meant to start it")
  result = subprocess.run([sys.executable, "-m", "xclip_jax.main", "--config", "configs/demo.py", "--workdir",
                           str(tmp_path / "w"), "--config.mesh.data=3"], cwd=REPO, env=user_env(), text=True,
                          capture_output=True, timeout=300, check=False)
  assert result.returncode == 2
  assert result.stderr.splitlines() == [
      "xclip_jax.main: error: configs/demo.py: config.mesh {'data': 3, 'fsdp': 1, 'tensor': 1} does not divide the "
      "1 available devices."]


def _commands() -> list[pathlib.Path]:
  files = [*REPO.glob("scripts/*.py"), *REPO.glob("xclip_jax/**/*.py")]
  return [f for f in files if f.name != "cli.py" or f.parent.name != "xclip_jax"]


def test_every_command_follows_the_convention():
  """argparse through cli.parser, no absl flags, no underscores in flag names."""
  problems = []
  for path in _commands():
    tree = ast.parse(path.read_text(encoding="utf-8"))
    name = path.relative_to(REPO)
    for node in ast.walk(tree):
      if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
        continue
      owner = node.func.value.id if isinstance(node.func.value, ast.Name) else ""
      if node.func.attr == "ArgumentParser" and owner == "argparse":
        problems.append(f"{name}:{node.lineno}: argparse.ArgumentParser (use cli.parser)")
      if node.func.attr.startswith("DEFINE_") or (owner == "app" and node.func.attr == "run"):
        problems.append(f"{name}:{node.lineno}: absl flags (use cli.parser)")
      if node.func.attr == "add_argument":
        flags = [a.value for a in node.args if isinstance(a, ast.Constant) and str(a.value).startswith("--")]
        problems += [f"{name}:{node.lineno}: {f} (spell it with hyphens)" for f in flags if "_" in f]
  assert not problems, "\n".join(problems)


def test_predict_help_names_real_models_and_where_to_list_them():
  result = _run("-m", "xclip_jax.predict", "--help")
  assert result.returncode == 0, result.stderr
  assert "python -m xclip_jax.zoo list" in result.stdout
  names = [line.split("--checkpoint ")[1].split()[0] for line in result.stdout.splitlines()
           if line.strip().startswith("python -m xclip_jax.predict --checkpoint")]
  assert names, result.stdout
  assert [n for n in names if not n.startswith("runs/")] and all(
      registry.is_registered(n) for n in names if not n.startswith("runs/"))  # real names; runs/...: a workdir


_SWALLOWED_CTRL_C = """
import sys, time
from xclip_jax import cli

class RaisesInDel:
  def __del__(self):
    raise KeyboardInterrupt  # as a Ctrl-C landing in a garbage-collector callback: Python cannot propagate it

cli.install_interrupts()
try:
  obj = RaisesInDel()
  del obj
  end = time.monotonic() + 2.0
  while time.monotonic() < end:
    pass
except KeyboardInterrupt:
  sys.exit(0)
sys.exit(1)
"""


def test_a_ctrl_c_swallowed_in_a_gc_callback_is_raised_again_in_the_main_code():
  """The unraisable hook hands the KeyboardInterrupt back to the main thread once it has returned; raised inside
  the hook, it was lost again with an 'Exception ignored in sys.unraisablehook' traceback."""
  with process_fixtures.sigint_not_ignored():  # as a terminal's job, even when the tests run in the background
    run = subprocess.run([sys.executable, "-c", _SWALLOWED_CTRL_C], cwd=REPO, env=user_env(), capture_output=True,
                         text=True, timeout=120)
  assert run.returncode == 0, run.stderr[-2000:]
  assert "Exception ignored" not in run.stderr, run.stderr[-2000:]

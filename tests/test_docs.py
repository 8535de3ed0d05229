"""README.md and docs/*.md cannot silently rot (issue 13): links, anchors, paths, commands, flags, config keys and
Python imports they show are checked against the code (tests/docs_checker.py), and the import rule of
docs/layout.md against the imports (tests/layout_checker.py). The checkers are shown to catch each kind of rot
on small bad snippets, against this repository and against a scratch one."""

from __future__ import annotations

import pathlib
import textwrap

from tests import docs_checker, layout_checker
from tests.docs_commands import Command, Target, shell_commands
from tests.docs_markdown import CodeBlock, Markdown, slug

REPO = docs_checker.REPO


def test_readme_and_docs_pages_have_no_rot():
  problems = docs_checker.check_repo(REPO)
  assert not problems, "\n".join(map(str, problems))


def test_the_import_rule_of_docs_layout_holds():
  violations = layout_checker.check(REPO)
  assert not violations, "\n".join(violations)


def _problems(markdown: str, where: str = "docs/_snippet.md", repo: pathlib.Path = REPO) -> list[str]:
  return [f"{p.line}: {p.message}" for p in docs_checker.check_markdown(textwrap.dedent(markdown), repo / where, repo)]


def _assert_found(problems: list[str], expected: list[tuple[int, str]]) -> None:
  """Every expected (line, fragment) is reported, and nothing else."""
  unexplained = [p for p in problems if not any(p.startswith(f"{line}: ") and f in p for line, f in expected)]
  missing = [(line, f) for line, f in expected if not any(p.startswith(f"{line}: ") and f in p for p in problems)]
  assert not missing and not unexplained, f"missing: {missing}\nunexplained: {unexplained}\nall: {problems}"


def test_checker_reports_each_kind_of_rot_in_this_repository():
  snippet = """\
    # Page

    ## Same
    ## Same

    Good: [a](#same), [b](#same-1), [c](training.md#resuming-and-preemption), [d](../scripts/flops_table.py).
    Bad: [e](#same-2), [f](nowhere.md), [g](training.md#no-such-heading).
    Quoted: `scripts/flops_table.py`, `configs/demo.py:shrink=true`, `scripts/renamed.py`.

    ```bash
    python -m xclip_jax.predict --checkpoint zero --video a.mp4 --labels-file c.csv --top 3
    python -m xclip_jax.predict --checkpoint zero --video a.mp4 --labels_file c.csv
    python scripts/renamed.py --help
    python -m xclip_jax.renamed --help
    HF_HUB_OFFLINE=1 python -m xclip_jax.zoo download openai:ViT-B/16 --frames 32 && \\
        python -m xclip_jax.zoo download k400_32_8 --frame 8   # a sub-command's flag
    python -m xclip_jax.main --config configs/demo.py --workdir w --config.train.lr=2e-3 \\
        --config.train.renamed=1 --work_dir x
    python -m xclip_jax.main --config configs/kinetics.py:variant=B/16,frames=8 --workdir w \\
        --config.model.overrides.video_position_init_std=0
    python -m xclip_jax.main --config configs/kinetics.py:variant=B/16,renamed=1 --workdir w
    python -m xclip_jax.main --workdir w --config.train.lr=1
    python scripts/profile_step.py --framework hf --variant B/32 --renamed 1
    python scripts/benchmark.py --peer none --scan-layers --cpus 0 configs/renamed.py
    ```

    ```python
    import xclip_jax
    from xclip_jax.evaluation import labelled_videos, renamed_module
    xclip_jax.load_model; xclip_jax.zoo.sample_video; xclip_jax.zoo.renamed_function
    labelled_videos.labelled_set; labelled_videos.renamed
    ```
    """
  _assert_found(_problems(snippet), [
      (7, "broken anchor '#same-2'"),
      (7, "broken link 'nowhere.md'"),
      (7, "broken anchor 'training.md#no-such-heading'"),
      (8, "no such path 'scripts/renamed.py'"),
      (12, "unknown flag --labels_file for python -m xclip_jax.predict"),
      (13, "no such script 'scripts/renamed.py'"),
      (13, "no such path 'scripts/renamed.py'"),
      (14, "no such module 'xclip_jax.renamed'"),
      (15, "unknown flag --frame for python -m xclip_jax.zoo download"),
      (17, "config override --config.train.renamed=1 does not apply to configs/demo.py: --config.train.renamed: "
           "configs/demo.py has no field train.renamed"),
      (17, "unknown flag --work_dir for python -m xclip_jax.main"),
      (19, "config override --config.model.overrides.video_position_init_std=0 does not apply"),
      (21, "config configs/kinetics.py:variant=B/16,renamed=1 does not load"),
      (22, "config override --config.train.lr=1 without --config=<file>"),
      (23, "unknown flag --renamed for python scripts/profile_step.py"),  # --variant: benchmark.py's, forwarded
      (24, "no such path 'configs/renamed.py'"),
      (29, "cannot import xclip_jax.evaluation.renamed_module"),
      (30, "xclip_jax.zoo.renamed_function"),
      (31, "labelled_videos.renamed"),
  ])


def test_checker_runs_help_and_reads_flags_of_scripts_it_has_not_seen(tmp_path):
  """A scratch repository: a script that breaks on --help, one with a sub-command, one that hands its other
  flags on to a second parser; a README that uses them rightly and wrongly."""
  (tmp_path / "scripts").mkdir()
  (tmp_path / "scripts" / "broken.py").write_text("raise ImportError('moved away')\n")
  (tmp_path / "scripts" / "tool.py").write_text(textwrap.dedent("""\
      import argparse
      parser = argparse.ArgumentParser()
      parser.add_argument("--alpha")
      commands = parser.add_subparsers(dest="command", required=True)
      commands.add_parser("run").add_argument("--beta-rate", type=float)
      parser.parse_args()
      """))
  (tmp_path / "scripts" / "forward.py").write_text(textwrap.dedent("""\
      import argparse
      first = argparse.ArgumentParser()
      first.add_argument("--gamma")
      _, rest = first.parse_known_args()
      second = argparse.ArgumentParser()
      second.add_argument("--delta")
      second.parse_args(rest)
      """))
  readme = """\
    ```bash
    python scripts/broken.py --anything
    python scripts/tool.py --alpha 1 run --beta-rate 0.5
    python scripts/tool.py run --beta_rate 0.5
    python scripts/forward.py --gamma 1 --delta 2
    python scripts/forward.py --epsilon 3
    ```
    """
  problems = _problems(readme, "README.md", tmp_path)
  _assert_found(problems, [
      (2, "'python scripts/broken.py --help' failed (exit exception)"),
      (4, "unknown flag --beta_rate for python scripts/tool.py run"),
      (6, "unknown flag --epsilon for python scripts/forward.py"),
  ])
  assert "moved away" in next(p for p in problems if p.startswith("2: "))


def test_github_heading_ids():
  markdown = Markdown.parse(textwrap.dedent("""\
      # What `make demo` shows
      ## Zero-shot (HMDB-51, UCF-101, Kinetics-600)
      ## Fully supervised (Kinetics-400/600) from CLIP
      ## Same
      ## Same
      ## Same
      ```bash
      # not a heading
      ```
      ## [A link](x.md) and `scan_layers`
      <a name="explicit"></a>
      """))
  assert markdown.anchors() == {"what-make-demo-shows", "zero-shot-hmdb-51-ucf-101-kinetics-600",
                                "fully-supervised-kinetics-400600-from-clip", "same", "same-1", "same-2",
                                "a-link-and-scan_layers", "explicit"}
  assert slug("Devices, sharding and multi-host") == "devices-sharding-and-multi-host"


def test_shell_commands_join_continuations_and_split_at_separators():
  block = CodeBlock("bash", 10, [
      "# a comment line",
      "HF_HUB_OFFLINE=1 python -m xclip_jax.zoo list --json && time python scripts/flops_table.py \\",
      "    --params 2>&1 > out/flops.txt  # trailing comment",
      "$ python3 -u scripts/demo_seeds.py --seeds 3 -- --config.train.lr=1",
      "tensorboard --logdir runs/ | tee log",
      "for i in 0 1; do python -m xclip_jax.predict --help; done",
      "cat > notes.txt <<'EOF'",
      "python -m xclip_jax.inside_a_here_document",
      "EOF",
      'python -c "import xclip_jax',
      'print(xclip_jax)"',
  ])
  commands = [(c.line, c.target, c.args) for c in shell_commands(block) if c.target]
  assert commands == [
      (11, Target("module", "xclip_jax.zoo"), ["list", "--json"]),
      (11, Target("script", "scripts/flops_table.py"), ["--params"]),
      (13, Target("script", "scripts/demo_seeds.py"), ["--seeds", "3", "--", "--config.train.lr=1"]),
      (15, Target("module", "xclip_jax.predict"), ["--help"]),
  ]
  others = [c.words for c in shell_commands(block) if not c.target]
  assert ["tensorboard", "--logdir", "runs/"] in others
  assert ["python", "-c", "import xclip_jax\nprint(xclip_jax)"] in others  # a quoted string over two lines
  # Words after `--` belong to another command line (demo_seeds.py passes them to xclip_jax.main).
  assert docs_checker.check_command(REPO, Command(13, [], Target("script", "scripts/demo_seeds.py"),
                                                  ["--seeds", "3", "--", "--config.train.lr=1"])) == []


def test_layout_checker_reports_upward_imports_unknown_rooms_stale_exceptions_and_circles(tmp_path):
  package = tmp_path / "xclip_jax"
  for folder in ("models", "training"):
    (package / folder).mkdir(parents=True)
    (package / folder / "__init__.py").write_text("")
  (package / "__init__.py").write_text('_EXPORTS = {"fit": "xclip_jax.training.loop"}\n')
  (package / "models" / "net.py").write_text("from xclip_jax.training import loop\n")
  (package / "models" / "head.py").write_text("import xclip_jax\n\ndef f():\n  return xclip_jax.fit\n")
  (package / "training" / "loop.py").write_text("from xclip_jax.models import net\nfrom xclip_jax import extra\n")
  (package / "extra.py").write_text("")
  (package / "models" / "a.py").write_text("def f():\n  from xclip_jax.models import b\n")  # a circle in a room
  (package / "models" / "b.py").write_text("from xclip_jax.models import a\n")
  (tmp_path / "docs").mkdir()
  (tmp_path / "docs" / "layout.md").write_text(textwrap.dedent("""\
      | layer | rooms |
      |---|---|
      | 1 | `models/` |
      | 2 | `training/` |
      | 3 | `__init__.py` |

      - `xclip_jax/models/gone.py` imports `xclip_jax.training.loop`: no longer true.
      """))
  assert layout_checker.check(tmp_path) == [
      "xclip_jax/extra.py: room `extra.py` has no row in the layer table of docs/layout.md",
      "xclip_jax/models/head.py:4: imports xclip_jax.training.loop: `models/` (layer 1) may only import lower "
      "layers, `training/` is layer 2",
      "xclip_jax/models/net.py:1: imports xclip_jax.training.loop: `models/` (layer 1) may only import lower "
      "layers, `training/` is layer 2",
      "xclip_jax/training/loop.py:2: imports xclip_jax.extra, whose room `extra.py` has no row in docs/layout.md",
      "docs/layout.md lists `xclip_jax/models/gone.py` importing `xclip_jax.training.loop`, which it no longer does",
      "import circle between xclip_jax.models.a, xclip_jax.models.b: xclip_jax.models.a -> xclip_jax.models.b -> "
      "xclip_jax.models.a",
      "import circle between xclip_jax.models.net, xclip_jax.training.loop: xclip_jax.models.net -> "
      "xclip_jax.training.loop -> xclip_jax.models.net",
  ]

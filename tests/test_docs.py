"""The README and docs/ say only what is true: generated pages match the code they are generated
from, and hand-written pages name only commands, options, operations and files that exist; the
README's examples run and its transcripts are what racetrack prints."""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import tracker.ops
import tracker.strategies
from sim.cli import build_parser, main
from sim.cli.reference import REGENERATE, markdown, option_strings, subcommands

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = [README, *sorted(DOCS.glob("*.md"))]

# Flags of other programs that the pages show, and where each is defined.
OTHER_FLAGS = {
    "--racetrack-profile": ROOT / "sim" / "pytest_plugin.py",  # pytest, through the plugin
    "--hypothesis-profile": None,  # pytest, through Hypothesis' plugin
    "--nthreads": None,  # dask worker
    "--port": None,  # dask scheduler
    "--help": None,  # every command
    "--no-deps": None,  # pip
}
# Pages generated from the results format and the invariants' code (tests/test_generated_docs.py).
WRITTEN_ELSEWHERE = {DOCS / "results.md", DOCS / "invariants.md"}


def _commands() -> dict[str, argparse.ArgumentParser]:
    return {name: sub for name, _, sub in subcommands(build_parser())}


def _text(page: Path) -> str:
    return page.read_text()


def _code_blocks(text: str) -> list[str]:
    return re.findall(r"^```[a-z]*\n(.*?)^```", text, flags=re.S | re.M)


def _racetrack_lines(text: str) -> list[str]:
    """Every ``racetrack ...`` command line shown: in code blocks, and in inline code spans."""
    lines = [m.group(1) for block in _code_blocks(text) for m in re.finditer(r"^\$? ?(racetrack [^\n]*)$", block, flags=re.M)]
    lines += re.findall(r"`(racetrack [^`]*)`", text)
    return [line.split("#")[0].rstrip(" \\") for line in lines]


def test_the_command_reference_is_generated_from_the_parser():
    assert (DOCS / "commands.md").read_text() == markdown(build_parser()), (
        f"docs/commands.md is out of date; regenerate it: {REGENERATE}"
    )


def test_the_command_reference_lists_every_option_of_every_command():
    page = (DOCS / "commands.md").read_text()
    for name, sub in _commands().items():
        section = page[page.index(f"## `racetrack {name}`"):]
        section = section[: section.find("\n## ", 1)] if "\n## " in section[1:] else section
        for flag in option_strings(sub):
            assert f"`{flag}" in section or f", {flag}" in section, (name, flag)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_racetrack_command_shown_exists_with_the_options_shown(page):
    commands = _commands()
    for line in _racetrack_lines(_text(page)):
        words = shlex.split(line)
        if len(words) < 2 or words[1].startswith(("-", "<", "[", "COMMAND")) or words[1] == "...":
            continue
        assert words[1] in commands, f"{page.name}: `{line}`: no command {words[1]!r}"
        known = option_strings(commands[words[1]]) | {"--help", "-h"}
        for word in words[2:]:
            flag = word.split("=")[0]
            if flag.startswith("-") and flag != "-" and not re.fullmatch(r"-?\d.*", flag):
                assert flag in known, f"{page.name}: `{line}`: racetrack {words[1]} has no {flag}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_flag_named_exists_on_some_command(page):
    every = set().union(option_strings(build_parser()), *(option_strings(sub) for sub in _commands().values()))
    text = re.sub(r"python benchmarks/\S+[^\n]*", "", _text(page))  # the benchmark's own flags: checked below
    text = re.sub(r"scripts/\S+[^\n`]*", "", text)  # a project script's own flags (its --help lists them)
    for flag in sorted(set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", text))):
        if flag in every:
            continue
        assert flag in OTHER_FLAGS, f"{page.name}: {flag} is no option of any racetrack command"
        if OTHER_FLAGS[flag] is not None:
            assert flag in OTHER_FLAGS[flag].read_text(), flag


def test_benchmark_flags_shown_exist_in_the_benchmark():
    text = _text(DOCS / "scaling.md")
    script = (ROOT / "benchmarks" / "sweep_scaling.py").read_text()
    for line in re.findall(r"python benchmarks/sweep_scaling\.py([^\n#]*)", text):
        for flag in re.findall(r"--[a-z][a-z0-9-]*", line):
            assert flag == "--help" or flag in script, flag


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_point_at_files_that_exist(page):
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", _text(page)):
        path = (page.parent / target).resolve()
        assert path.exists() or path in WRITTEN_ELSEWHERE, f"{page.name}: link to {target} (no such file)"


def test_links_into_the_command_reference_name_its_anchors():
    page = (DOCS / "commands.md").read_text()
    anchors = {"racetrack-" + name for name in _commands()}
    for doc in PAGES:
        for anchor in re.findall(r"\]\(commands\.md#([^)]+)\)", _text(doc)):
            assert anchor in anchors, f"{doc.name}: commands.md#{anchor}"
    assert all(f"## `racetrack {a.removeprefix('racetrack-')}`" in page for a in anchors)


def test_strategies_page_names_every_operation_expression_guard_and_field():
    text = _text(DOCS / "strategies.md")
    ops = [tracker.ops.Select, tracker.ops.Insert, tracker.ops.Update, tracker.ops.Begin, tracker.ops.Commit,
           tracker.ops.Rollback, tracker.ops.Rpc, tracker.ops.Sleep, tracker.ops.ReadClock]
    assert set(tracker.ops.DB_OPS) <= set(ops)
    exprs = [tracker.ops.Col, tracker.ops.DbNow, tracker.ops.Greatest, tracker.ops.Least, tracker.ops.Coalesce,
             tracker.ops.Case, tracker.ops.Cond]
    for cls in [*ops, *exprs]:
        assert f"`{cls.__name__}(" in text, cls.__name__
    for helper in ("eq", "ne", "lt", "le", "gt", "ge", "is_in", "not_in", "is_null", "not_null"):
        assert f"`{helper}`" in text, helper
    for field in dataclasses.fields(tracker.strategies.JobView):
        assert f"| `{field.name}` |" in text, f"JobView.{field.name}"
    for field in dataclasses.fields(tracker.strategies.HandlerContext):
        assert f"`{field.name}`" in text, f"HandlerContext.{field.name}"
    for event in tracker.strategies.EVENTS:
        assert f"| `on_{event}` |" in text, event
    for name in tracker.strategies.BUILTIN:
        assert f"| `{name}` |" in text, name


def test_strategies_page_names_only_operations_that_exist():
    text = _text(DOCS / "strategies.md")
    known = set(vars(tracker.ops)) | set(vars(tracker.strategies))
    python = "\n".join(_code_blocks(text))
    for name in set(re.findall(r"`([A-Z][a-z][A-Za-z]*)\(", text)) | set(re.findall(r"\b([A-Z][A-Za-z]+)\(", python)):
        assert name in known, f"docs/strategies.md names {name}(...), which tracker.ops does not define"
    for package, name in set(re.findall(r"tracker\.(ops|strategies)\.([A-Za-z_]+)", text)):
        # a submodule (tracker.strategies.atomic) is in vars() only once something imported it
        assert name in known or (package == "strategies" and importlib.util.find_spec(f"tracker.strategies.{name}") is not None), name


def _readme_python(name: str) -> str:
    blocks = re.findall(r"```python\n# " + re.escape(name) + r"\n(.*?)```", _text(README), flags=re.S)
    assert len(blocks) == 1, name
    return blocks[0]


def test_the_readme_quick_start_is_the_two_documented_commands():
    quick = _text(README).split("## Quick start", 1)[1]
    block = re.search(r"```\n(.*?)```", quick, flags=re.S)
    assert block and block.group(1).splitlines() == ['pip install -e ".[dev]" && racetrack sweep', "pytest"]


def test_the_readme_strategy_runs_as_shown(tmp_path, monkeypatch, capsys):
    (tmp_path / "mymod.py").write_text(_readme_python("mymod.py"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    shown = [line for line in _racetrack_lines(_text(README)) if "mymod:STRATEGY" in line]
    assert shown
    for line in shown:
        code = main(shlex.split(line)[1:])
        out = capsys.readouterr().out
        # a sweep names the strategy by its name; run's header, a command, by what was typed
        assert code in (0, 1) and ("mine" in out if line.split()[1] == "sweep" else "--strategy mymod:STRATEGY" in out), line
    # what the README says of them: the run holds, the sweep finds terminal-status violations
    assert main(["run", "seed-fast-jobs", "--strategy", "mymod:STRATEGY"]) == 0
    assert "verdict: all 7 invariants held" in capsys.readouterr().out
    assert "verdict: all 7 invariants held" in _text(README)
    main(["sweep", "seed-fast-jobs", "--strategies", "mymod:STRATEGY", "--runs", "50", "--workers", "1", "--json"])
    import json

    (row,) = json.loads(capsys.readouterr().out)["results"]
    assert row["violating_runs"] > 0 and row["violations"]["terminal-status"] > 0


def test_the_readme_strategy_is_about_ten_lines():
    code = [line for line in _readme_python("mymod.py").splitlines() if line.strip()]
    assert len(code) <= 12


@pytest.mark.parametrize("strategy", ["naive", "atomic"])
def test_the_readme_transcripts_are_what_racetrack_prints(strategy):
    text = _text(README)
    shown = re.search(r"\$ racetrack run seed-fast-jobs --strategy " + strategy + r"\n(.*?)```", text, flags=re.S)
    assert shown, strategy
    done = subprocess.run([sys.executable, "-m", "sim", "run", "seed-fast-jobs", "--strategy", strategy],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == (1 if strategy == "naive" else 0)
    printed = done.stdout.splitlines()
    for line in shown.group(1).splitlines():
        if line in ("...", ""):
            continue
        prefix = line.removesuffix(" ...")
        assert any(p.startswith(prefix) for p in printed), f"README shows a line racetrack does not print: {line}"


def test_the_readme_is_short():
    assert len(_text(README)) < 8000

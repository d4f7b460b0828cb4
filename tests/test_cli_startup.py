"""The quick commands (``--help``, ``--version``, ``strategies``, ``scenarios``, ``invariants``)
answer without importing the heavy libraries the other commands need: each runs in a fresh
interpreter, which then reports what it imported. (How fast they are is measured by
``benchmarks/cli_startup.py``, not here.)"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from sim.cli import args as cli_args
from sim.runs import sweep

#: Libraries that cost tens to hundreds of milliseconds to import and that listing or helping
#: never needs: results files (pyarrow, numpy), reports (pandas, matplotlib), PostgreSQL
#: (psycopg), Dask, the simulation (SimPy), searches (Hypothesis).
HEAVY = ("pyarrow", "numpy", "pandas", "matplotlib", "psycopg", "dask", "distributed", "simpy", "hypothesis")

PROBE = """
import contextlib, io, json, sys
from sim.cli import main
with contextlib.redirect_stdout(io.StringIO()) as out:
    try:
        code = main(sys.argv[1:])
    except SystemExit as exit:  # --help and --version end through argparse's exit
        code = exit.code
print(json.dumps({"code": code, "printed": bool(out.getvalue()), "modules": sorted(sys.modules)}))
"""


def imported_by(*argv: str) -> dict[str, object]:
    proc = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, check=True)
    result: dict[str, object] = json.loads(proc.stdout)
    return result


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["strategies"], ["scenarios"], ["invariants"]],
                         ids=lambda argv: " ".join(argv))
def test_quick_commands_import_no_heavy_library(argv):
    result = imported_by(*argv)
    assert result["code"] == 0 and result["printed"]
    loaded = {str(name).split(".")[0] for name in result["modules"]}  # type: ignore[attr-defined]
    assert sorted(loaded & set(HEAVY)) == []


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["scenarios"], ["invariants"]], ids=lambda argv: " ".join(argv))
def test_commands_that_make_no_record_do_not_import_dataclasses(argv):
    # dataclasses imports inspect (ast, dis, tokenize) and generates code for every class: about
    # a fifth of such a command's start-up. The parser takes its defaults and choices from
    # sim.engine.limit_defaults and sim.runs.backend_kinds; `strategies` loads the strategies,
    # which are dataclasses (the probe sees that below).
    result = imported_by(*argv)
    assert result["code"] == 0
    assert "dataclasses" not in result["modules"]  # type: ignore[operator]


def test_the_probe_sees_dataclasses_when_a_command_imports_them():
    assert "dataclasses" in imported_by("strategies")["modules"]  # type: ignore[operator]


def test_the_probe_sees_a_heavy_import_when_a_command_makes_one(tmp_path):
    # The same probe on a command that runs a simulation must see SimPy, or the test above
    # would pass for a probe that sees nothing.
    result = imported_by("run", "seed-fast-jobs", "--strategy", "atomic", "--json")
    assert "simpy" in result["modules"]  # type: ignore[operator]


def test_the_parser_offers_the_executors_and_defaults_the_sweep_has():
    # sim.cli.args keeps its own copy so that building the parser does not import the sweep.
    assert cli_args.EXECUTORS == sweep.EXECUTORS
    assert cli_args.default_workers() == sweep.default_workers()
    assert cli_args.DEFAULT_IN_FLIGHT == sweep.DEFAULT_IN_FLIGHT

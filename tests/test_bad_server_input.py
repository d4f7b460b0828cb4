"""A bad value in a DSN or a scheduler address is one line naming it, exit 2, and nothing else on
stderr (no traceback, no 'Exception ignored' at exit)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sim.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("query", "parameter"),
    [("connect_timeout=abc", "connect_timeout"), ("port=abc", "port"), ("keepalives=x", "keepalives"),
     ("tcp_user_timeout=1.5", "tcp_user_timeout")],
)
def test_an_invalid_dsn_parameter_is_one_line_naming_it(capsys, query, parameter):
    code = main(["sweep", "seed-fast-jobs", "--runs", "1", "--workers", "1", "--backend", "postgres",
                 "--dsn", f"postgresql://postgres:s3cret@127.0.0.1:5432/test?{query}"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and f"--dsn: {parameter} must be a whole number" in err
    assert "s3cret" not in err


def test_an_invalid_database_url_parameter_names_database_url(capsys, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test?connect_timeout=abc")
    assert main(["run", "seed-fast-jobs", "--backend", "postgres"]) == 2
    assert capsys.readouterr().err == "racetrack: DATABASE_URL: connect_timeout must be a whole number (got 'abc')\n"


def test_a_scheduler_address_that_is_not_a_url_is_only_one_line():
    pytest.importorskip("distributed")
    done = subprocess.run([sys.executable, "-m", "sim", "sweep", "seed-fast-jobs", "--runs", "1", "--scheduler", "notaurl"],
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.startswith("racetrack: --scheduler notaurl: ")
    assert done.stderr.count("\n") == 1, done.stderr

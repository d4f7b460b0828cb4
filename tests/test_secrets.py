"""No secret in any output: a run given a DSN with a password (the machine's server accepts any,
by trust auth) never shows it in stdout, stderr, the Ctrl-C hint, error lines, results files or
reports."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SECRET = "s3cret"

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def dsn() -> str:
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgresql://postgres@"):
        pytest.skip("needs DATABASE_URL of a trust-auth server (any password accepted)")
    return url.replace("postgresql://postgres@", f"postgresql://postgres:{SECRET}@", 1)


def racetrack(*args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "sim", *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def outputs(*args: str) -> str:
    proc = racetrack(*args)
    out, err = proc.communicate(timeout=600)
    return out + err


def test_no_output_file_or_report_shows_the_password(dsn, tmp_path):
    said = []
    out = tmp_path / "out.parquet"
    sweep = ["sweep", "seed-fast-jobs", "--runs", "3000", "--workers", "2", "--backend", "postgres", "--dsn", dsn,
             "--out", str(out)]
    proc = racetrack(*sweep, start_new_session=True)
    try:
        partial = tmp_path / "out.parquet.partial"
        deadline = time.monotonic() + 120
        while proc.poll() is None and not (partial.exists() and partial.stat().st_size > 2000):
            assert time.monotonic() < deadline, "the sweep wrote no rows within 120 s"
            time.sleep(0.1)
        os.killpg(proc.pid, signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130 and "--resume" in stderr  # the hint was printed...
    said.append(stdout + stderr)
    said.append(outputs("sweep", "seed-fast-jobs", "--runs", "3", "--workers", "2", "--backend", "both", "--dsn", dsn,
                        "--out", str(tmp_path / "both.csv"), "--report", str(tmp_path / "report")))
    said.append(outputs("check", "--runs", "2", "--workers", "2", "--backend", "postgres", "--dsn", dsn))
    said.append(outputs("run", "seed-fast-jobs", "--backend", "postgres", "--dsn", dsn, "--schema", "Bad-Name"))
    said.append(outputs("sweep", "seed-fast-jobs", "--runs", "1", "--backend", "postgres",
                        "--dsn", dsn.replace("127.0.0.1:5432", "127.0.0.1:1") + "?connect_timeout=2"))
    said.append(outputs("clean", "--dsn", dsn, "--json"))
    for text in said:
        assert SECRET not in text, text
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name.endswith(".partial") for p in files) and any(p.name == "index.html" for p in files)
    for path in files:
        assert SECRET.encode() not in path.read_bytes(), path

"""A non-editable install carries the bundled scenarios, the schema and the ``py.typed`` markers
(package data); Dask is an extra, not a requirement."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_wheel_ships_every_scenario_file_the_schema_and_the_typing_markers(tmp_path):
    # Built from a copy: setuptools builds in the source tree and would leave build/ and
    # *.egg-info in the checkout.
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis", "test-artifacts"))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(source)],
        check=True, capture_output=True,
    )
    (wheel,) = tmp_path.glob("racetrack-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    bundled = {f"scenarios/{p.name}" for p in (ROOT / "scenarios").glob("*.toml")}
    assert bundled and bundled <= names
    assert "tracker/schema.sql" in names
    assert any(n.endswith("entry_points.txt") for n in names)
    assert {"tracker/py.typed", "sim/py.typed"} <= names
    (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
    requires = [line for line in zipfile.ZipFile(wheel).read(metadata).decode().splitlines() if line.startswith("Requires-Dist:")]
    dask = [line for line in requires if "dask" in line]
    assert dask and all("extra ==" in line for line in dask), dask  # only under extras
    assert any('extra == "dask"' in line for line in dask) and any('extra == "dev"' in line for line in dask)

"""A non-editable install carries the bundled scenarios and the schema (package data)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_ships_every_scenario_file_and_the_schema(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(ROOT)],
        check=True, capture_output=True,
    )
    (wheel,) = tmp_path.glob("racetrack-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    bundled = {f"scenarios/{p.name}" for p in (ROOT / "scenarios").glob("*.toml")}
    assert bundled and bundled <= names
    assert "tracker/schema.sql" in names
    assert any(n.endswith("entry_points.txt") for n in names)

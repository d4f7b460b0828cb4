"""Bundled scenario files (TOML), one per behaviour; found and validated by name by
``sim.engine.scenario.load``.

:func:`names` and :func:`description` read them without validating (``racetrack scenarios``
answers at once; a test keeps them equal to what the validated files say)."""

from __future__ import annotations

import tomllib
from pathlib import Path

#: Where the bundled files live (this package's folder).
DIRECTORY = Path(__file__).parent


def names() -> list[str]:
    return sorted(p.stem for p in DIRECTORY.glob("*.toml"))


def description(name: str) -> str:
    """The bundled scenario's ``description`` ("" when it has none, the format's default).

    Only the top of the file is parsed: TOML puts top-level keys before the first table, and
    parsing every table of every file would cost most of the listing's time."""
    text = (DIRECTORY / f"{name}.toml").read_text(encoding="utf-8")
    top = "" if text.startswith("[") else text.split("\n[", 1)[0]
    return str(tomllib.loads(top).get("description", ""))

"""The reference pages generated from code are up to date: the code is the one declaration."""

from __future__ import annotations

from pathlib import Path

import pytest

from sim.judge.invariants import reference as invariants_reference
from sim.runs.columns import reference as results_reference

DOCS = Path(__file__).resolve().parent.parent / "docs"


@pytest.mark.parametrize(
    ("page", "generate", "command"),
    [
        ("invariants.md", invariants_reference, "python -m sim.judge.invariants > docs/invariants.md"),
        ("results.md", results_reference, "python -m sim.runs.columns > docs/results.md"),
    ],
)
def test_generated_reference_page_is_up_to_date(page, generate, command):
    on_disk = (DOCS / page).read_text(encoding="utf-8")
    assert on_disk == generate(), f"docs/{page} is out of date; regenerate it with: {command}"


def test_invariants_page_holds_each_checkers_precise_rule():
    page = invariants_reference()
    assert "`invariants.timestamp_slack_ms` plus the largest error any host clock" in page
    assert "distinct attempt\nnumbers (a stall re-run is the same attempt)" in page


def test_results_page_lists_every_column_in_order():
    from sim.runs.runner import RESULT_COLUMNS

    page = results_reference()
    positions = [page.index(f"| `{c}` |") for c in RESULT_COLUMNS]
    assert positions == sorted(positions)

"""The report in a real browser: headless Chromium (Debian's ``chromium``, which ``.ci/run``
installs) opens ``index.html`` from disk; every image must load and no console error may appear.
A screenshot of the first screen is kept in ``test-artifacts/`` (gitignored).

Set ``RACETRACK_SKIP_BROWSER=1`` to skip on a machine without Chromium; CI never sets it, so a
missing browser fails there instead of passing silently.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from chromium import check_page, find_chromium

from sim.cli import main

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


@pytest.fixture(scope="module")
def browser() -> None:
    if find_chromium() is None:
        if os.environ.get("RACETRACK_SKIP_BROWSER") == "1":
            pytest.skip("RACETRACK_SKIP_BROWSER=1 and no chromium")
        pytest.fail("chromium not found: install it (apt-get install chromium; .ci/run does) or set RACETRACK_SKIP_BROWSER=1")


def test_report_opens_from_disk_with_every_image_loaded_and_no_console_error(
    browser: None, tmp_path: Path
) -> None:
    out = tmp_path / "report"
    code = main(["sweep", "seed-fast-jobs", "--runs", "4", "--strategies", "naive,atomic,db-clock",
                 "--grid", "network.db_rtt.median_ms=1,80", "--grid", "job.duration.median_ms=10,100",
                 "--report", str(out)])
    assert code == 0
    seen = check_page(out / "index.html")
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "report-first-screen.png").write_bytes(seen.screenshot_png)
    assert seen.title == "racetrack report"
    expected = (out / "index.html").read_text().count("<img ")
    assert expected >= 4  # rates, grid, errors, one timeline at least
    assert len(seen.images) == expected
    assert all(i["complete"] and i["naturalWidth"] > 0 for i in seen.images), seen.images
    assert seen.console_errors == ()
    assert seen.screenshot_png[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_check_catches_a_broken_image_and_a_console_error(browser: None, tmp_path: Path) -> None:
    page = tmp_path / "broken.html"
    page.write_text('<!doctype html><title>broken</title><img src="missing.png">'
                    '<script>console.error("boom")</script>')
    seen = check_page(page)
    assert [i["naturalWidth"] for i in seen.images] == [0]
    assert any("boom" in e for e in seen.console_errors)
    assert any("missing.png" in e for e in seen.console_errors)

"""The report in a real browser: headless Chromium (Debian's ``chromium``, which ``.ci/run``
installs) opens ``index.html`` from disk; every image must load and no console error may appear.
A screenshot of the first screen is kept in ``test-artifacts/`` (gitignored).

Without Chromium these tests are skipped, saying how to enable them; with
``RACETRACK_REQUIRE_BROWSER=1`` (which ``.ci/run`` sets) a missing Chromium fails instead, so CI
cannot pass without having looked.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import pytest
from chromium import check_page, find_chromium

from sim.cli import main

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


MISSING = "chromium not found: apt-get install chromium to run the report's browser tests"


def require_chromium(environ: Mapping[str, str]) -> str:
    """The browser to use; without one, skip (or fail when ``RACETRACK_REQUIRE_BROWSER=1``)."""
    found = find_chromium(environ)
    if found is None:
        if environ.get("RACETRACK_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{MISSING} (RACETRACK_REQUIRE_BROWSER=1: required here)", pytrace=False)
        pytest.skip(f"{MISSING}, or set RACETRACK_REQUIRE_BROWSER=1 to make its absence fail")
    return found


@pytest.fixture(scope="module")
def browser() -> None:
    require_chromium(os.environ)


def test_without_chromium_the_browser_tests_skip_saying_how_to_enable_them() -> None:
    with pytest.raises(pytest.skip.Exception, match="apt-get install chromium"):
        require_chromium({"RACETRACK_CHROMIUM": "/nonexistent/chromium"})


def test_without_chromium_but_required_the_browser_tests_fail() -> None:
    with pytest.raises(pytest.fail.Exception, match="RACETRACK_REQUIRE_BROWSER=1"):
        require_chromium({"RACETRACK_CHROMIUM": "/nonexistent/chromium", "RACETRACK_REQUIRE_BROWSER": "1"})


def test_a_named_chromium_that_exists_is_used(tmp_path: Path) -> None:
    binary = tmp_path / "chromium"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    assert require_chromium({"RACETRACK_CHROMIUM": str(binary)}) == str(binary)


@pytest.mark.browser
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


@pytest.mark.browser
def test_the_check_catches_a_broken_image_and_a_console_error(browser: None, tmp_path: Path) -> None:
    page = tmp_path / "broken.html"
    page.write_text('<!doctype html><title>broken</title><img src="missing.png">'
                    '<script>console.error("boom")</script>')
    seen = check_page(page)
    assert [i["naturalWidth"] for i in seen.images] == [0]
    assert any("boom" in e for e in seen.console_errors)
    assert any("missing.png" in e for e in seen.console_errors)

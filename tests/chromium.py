"""Driving Debian's headless Chromium over the DevTools protocol, for the report's browser test.

Starts ``chromium`` with a throwaway profile and a DevTools port, opens one page, waits for its
load event, and reports what a reader's browser saw: every image (loaded, natural width), every
console message and uncaught exception, and a PNG of the first screen. Needs only the
``chromium`` package and ``websocket-client`` (no browser download).

``RACETRACK_CHROMIUM`` names the binary to use instead of looking ``chromium`` up on the PATH
(a path that does not exist means "no browser", which is how the skip path is tested).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import websocket

FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
    "--window-size=1280,900", "--remote-debugging-port=0", "--remote-allow-origins=*",
)
IMAGES_JS = (
    "JSON.stringify(Array.from(document.images).map(i => "
    "({src: i.src.slice(0, 40), complete: i.complete, naturalWidth: i.naturalWidth})))"
)


@dataclass(frozen=True)
class PageCheck:
    images: tuple[dict[str, Any], ...]
    console_errors: tuple[str, ...]
    title: str
    screenshot_png: bytes


def find_chromium(environ: Mapping[str, str] = os.environ) -> str | None:
    named = environ.get("RACETRACK_CHROMIUM")
    if named:
        return named if os.access(named, os.X_OK) else None
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


class _Session:
    """One DevTools websocket: send commands, collect events until a condition holds."""

    def __init__(self, url: str) -> None:
        self.ws = websocket.create_connection(url, timeout=30, suppress_origin=True)
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    def wait_for(self, method: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == method for e in self.events):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {method} within {timeout} s")
            self.events.append(json.loads(self.ws.recv()))


def check_page(page: Path, timeout: float = 60.0) -> PageCheck:
    """Open ``page`` (a file) in headless Chromium and report what it saw."""
    binary = find_chromium()
    if binary is None:
        raise FileNotFoundError("chromium not found (Debian: apt-get install chromium)")
    profile = tempfile.mkdtemp(prefix="racetrack-chromium-")
    try:
        # its own process group: the renderer and helper processes go with it, so none of them
        # is still writing into the profile when it is removed
        proc = subprocess.Popen([binary, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            port_file = Path(profile) / "DevToolsActivePort"
            deadline = time.monotonic() + timeout
            while not port_file.exists() or not port_file.read_text().strip():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"chromium did not start (exit code {proc.poll()})")
                time.sleep(0.05)
            port = int(port_file.read_text().split()[0])
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as response:
                targets = json.load(response)
            target = next(t for t in targets if t["type"] == "page")
            session = _Session(target["webSocketDebuggerUrl"])
            try:
                for domain in ("Page", "Runtime", "Log"):
                    session.call(f"{domain}.enable")
                session.call("Page.navigate", url=page.resolve().as_uri())
                session.wait_for("Page.loadEventFired", timeout)
                images = json.loads(session.call("Runtime.evaluate", expression=IMAGES_JS, returnByValue=True)["result"]["value"])
                title = session.call("Runtime.evaluate", expression="document.title", returnByValue=True)["result"]["value"]
                shot = session.call("Page.captureScreenshot", format="png")
                errors = console_errors(session.events)
            finally:
                session.ws.close()
        finally:
            _stop_group(proc)
    finally:
        _remove_profile(profile)
    return PageCheck(tuple(images), tuple(errors), title, base64.b64decode(shot["data"]))


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    """End Chromium and every process it started (SIGTERM, then SIGKILL after 10 s)."""
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue


def _remove_profile(profile: str) -> None:
    """Remove the profile folder; a helper process that outlived the group may still be writing
    into it for a moment, so a failed removal is tried again for a few seconds."""
    deadline = time.monotonic() + 5.0
    while True:
        try:
            shutil.rmtree(profile)
            return
        except FileNotFoundError:
            return
        except OSError:
            if time.monotonic() > deadline:
                shutil.rmtree(profile, ignore_errors=True)
                return
            time.sleep(0.1)


def console_errors(events: list[dict[str, Any]]) -> list[str]:
    """Console errors, uncaught exceptions and browser log errors (failed loads) among events."""
    out = []
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            out.append("console: " + " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", [])))
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            out.append("exception: " + str(details.get("exception", {}).get("description", details.get("text", ""))))
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            out.append(f"log: {entry.get('text', '')} {entry.get('url', '')}".strip())
    return out

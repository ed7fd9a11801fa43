"""Headless Chromium driven over the DevTools protocol on a pipe (no extra libraries).

`--remote-debugging-pipe` makes Chromium read JSON commands from fd 3 and write answers
and events to fd 4, each message ending with a NUL byte.
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
from typing import Any

BINARIES = ("chromium", "chromium-browser", "google-chrome")
ANSWER_TIMEOUT = 20.0


def chromium_binary() -> str | None:
    return next((path for path in map(shutil.which, BINARIES) if path), None)


class Browser:
    """One headless Chromium with one page."""

    def __init__(self, width: int = 1200, height: int = 800) -> None:
        binary = chromium_binary()
        assert binary is not None, "chromium is not installed"
        self.profile = tempfile.mkdtemp(prefix="fanout-chromium-")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        flags = ["--headless=new", "--remote-debugging-pipe", "--no-sandbox", "--disable-gpu",
                 "--mute-audio", "--autoplay-policy=no-user-gesture-required",
                 "--no-first-run", f"--user-data-dir={self.profile}",
                 f"--window-size={width},{height}", "about:blank"]
        self.proc = subprocess.Popen(
            [binary, *flags], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, pass_fds=(3, 4),
            preexec_fn=lambda: (os.dup2(to_browser_r, 3), os.dup2(from_browser_w, 4)))
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []
        self.session = self._attach_page()

    def _attach_page(self) -> str:
        targets = self.call("Target.getTargets", session=None)["targetInfos"]
        page = next(t for t in targets if t["type"] == "page")
        session: str = self.call("Target.attachToTarget", {"targetId": page["targetId"],
                                                           "flatten": True}, session=None)["sessionId"]
        return session

    def call(self, method: str, params: dict[str, Any] | None = None,
             session: str | None | bool = True) -> dict[str, Any]:
        """Send a command (to the page unless session=None) and return its result."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session is True:
            message["sessionId"] = self.session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + ANSWER_TIMEOUT
        while time.monotonic() < deadline:
            answer = self._read_message()
            if answer.get("id") == self._next_id:
                assert "error" not in answer, answer["error"]
                result: dict[str, Any] = answer["result"]
                return result
            self.events.append(answer)
        raise AssertionError(f"no answer to {method}")

    def _read_message(self) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            chunk = os.read(self._from_browser, 65536)
            assert chunk, "chromium closed its pipe"
            self._buffer += chunk
        raw, _, self._buffer = self._buffer.partition(b"\0")
        message: dict[str, Any] = json.loads(raw)
        return message

    def open(self, url: str) -> None:
        """Navigate and return once the page's load event fired."""
        self.navigate_by(lambda: self.call("Page.navigate", {"url": url}))

    def navigate_by(self, action: Any) -> None:
        """Run `action` (a navigation, a form's submit…) and return once the page it led
        to fired its load event."""
        self.call("Page.enable")
        self.events.clear()
        action()
        deadline = time.monotonic() + ANSWER_TIMEOUT
        while not any(e.get("method") == "Page.loadEventFired" for e in self.events):
            assert time.monotonic() < deadline, "the page did not load"
            self.events.append(self._read_message())

    def send_with_every_request(self, headers: dict[str, str]) -> None:
        """Add `headers` to every request the page makes (e.g. Basic credentials)."""
        self.call("Network.enable")
        self.call("Network.setExtraHTTPHeaders", {"headers": headers})

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression (promises are awaited)."""
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                "awaitPromise": True})
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    def screenshot(self) -> bytes:
        """A PNG of the viewport."""
        return base64.b64decode(self.call("Page.captureScreenshot", {"format": "png"})["data"])

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_browser)
        os.close(self._from_browser)
        shutil.rmtree(self.profile, ignore_errors=True)

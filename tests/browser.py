"""Headless Chromium driven over the DevTools protocol: what a page logged and requested."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from websockets.sync.client import ClientConnection, connect

START_TIMEOUT_S = 60
LOAD_TIMEOUT_S = 60
# late errors (a script run after load) still count
SETTLE_S = 0.5


class DevTools:
    """A minimal Chrome DevTools Protocol client over one page's websocket."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def call(self, method: str, timeout: float = 30, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            message = json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise AssertionError(f"{method} failed: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result
            self.events.append(message)

    def wait_for(self, method: str, timeout: float) -> None:
        if any(e.get("method") == method for e in self.events):
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            self.events.append(message)
            if message.get("method") == method:
                return
        raise AssertionError(f"no {method} within {timeout} s")

    def drain(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                self.events.append(json.loads(self.ws.recv(timeout=left)))
            except TimeoutError:
                return

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression!r} threw: {result['exceptionDetails']}")
        return result["result"].get("value")


class Page:
    """What one page load did: its console errors and every request it made."""

    def __init__(self, tools: DevTools, url: str) -> None:
        self.tools, self.url = tools, url

    def errors(self) -> list[str]:
        found: list[str] = []
        for event in self.tools.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.exceptionThrown":
                found.append(json.dumps(params["exceptionDetails"])[:500])
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                found.append(json.dumps(params.get("args"))[:500])
            elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                entry = params["entry"]
                found.append(f"{entry.get('source')}: {entry.get('text')} {entry.get('url', '')}")
        return found

    def requests(self) -> list[str]:
        return [
            e["params"]["request"]["url"]
            for e in self.tools.events
            if e.get("method") == "Network.requestWillBeSent"
        ]

    def outside_requests(self) -> list[str]:
        """Requests to anything but the report file itself and data: URLs."""
        return [u for u in self.requests() if u != self.url and not u.startswith("data:")]


class Browser:
    """Headless Chromium in its own process group, with a throwaway profile."""

    def __init__(self, exe: str, profile: Path, log: Path) -> None:
        args = [
            exe,
            "--headless=new",
            "--disable-gpu",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--window-size=1400,1000",
            "--remote-debugging-port=0",
            f"--user-data-dir={profile}",
            "about:blank",
        ]
        if os.geteuid() == 0:
            # Chromium's sandbox refuses to run as root (CI containers run as root)
            args.insert(1, "--no-sandbox")
        self.log = log
        self.log_file = log.open("wb")
        self.proc = subprocess.Popen(
            args, stdout=self.log_file, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.port = self._wait_port(profile / "DevToolsActivePort")

    def _wait_port(self, file: Path) -> int:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"chromium exited {self.proc.returncode}: {self.log_tail()}")
            lines = file.read_text().splitlines() if file.is_file() else []
            if lines and lines[0].isdigit():
                return int(lines[0])
            time.sleep(0.1)
        raise AssertionError(f"chromium gave no DevTools port in {START_TIMEOUT_S} s")

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:]

    @contextlib.contextmanager
    def open(self, url: str) -> Iterator[Page]:
        """`url` loaded in a fresh tab, its protocol domains enabled first so no event is lost."""
        base = f"http://127.0.0.1:{self.port}"
        # the DevTools endpoint of the browser started above, on localhost
        request = urllib.request.Request(f"{base}/json/new?about:blank", method="PUT")  # noqa: S310
        with urllib.request.urlopen(request, timeout=30) as reply:  # noqa: S310
            target = json.load(reply)
        with connect(target["webSocketDebuggerUrl"], max_size=None, open_timeout=30) as ws:
            tools = DevTools(ws)
            for domain in ("Runtime", "Log", "Network", "Page"):
                tools.call(f"{domain}.enable")
            tools.events.clear()  # about:blank's own events
            tools.call("Page.navigate", url=url)
            tools.wait_for("Page.loadEventFired", LOAD_TIMEOUT_S)
            tools.drain(SETTLE_S)
            yield Page(tools, url)

    def close(self) -> None:
        try:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        finally:
            self.log_file.close()

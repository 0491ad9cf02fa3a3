"""A real headless Chromium, driven over the DevTools protocol, to check a page as a browser sees it.

Starts the distribution's ``chromium`` with a fresh profile, no network
services and a DevTools port chosen by the browser (port 0), loads a file,
and reports what a person would notice: console errors, uncaught exceptions,
requests that left the file, what the DOM holds, a tooltip after a pointer
move, and a screenshot. The protocol goes over a WebSocket with aiohttp (a
dependency of litellm, so always installed with lpo-ci).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--remote-debugging-port=0",
         "--remote-allow-origins=*", "--hide-scrollbars", "--mute-audio")


def chromium_binary() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@dataclass
class PageCheck:
    console: list[str] = field(default_factory=list)     # console messages of type error or warning
    exceptions: list[str] = field(default_factory=list)  # uncaught exceptions
    requests: list[str] = field(default_factory=list)    # URLs other than the page itself
    dom: object = None                                   # what the DOM expression returned
    tooltip: str = ""                                    # the tooltip text after the pointer move
    screenshot: bytes = b""


class _Devtools:
    def __init__(self, ws):
        self.ws, self.next_id, self.events = ws, 0, []

    async def call(self, method: str, **params):
        self.next_id += 1
        ident = self.next_id
        await self.ws.send_str(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            message = json.loads((await self.ws.receive(timeout=60)).data)
            if message.get("id") == ident:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    async def wait_for(self, method: str, timeout: float = 60):  # noqa: ASYNC109 - a polling deadline
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == method for e in self.events):
            message = json.loads((await self.ws.receive(timeout=max(0.1, deadline - time.monotonic()))).data)
            self.events.append(message)


async def _check(port: int, url: str, dom_expression: str, hover: tuple[str, float] | None,
                 size: tuple[int, int]) -> PageCheck:
    import aiohttp

    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{port}/json/list") as answer:
            targets = await answer.json(content_type=None)
        page = next(t for t in targets if t.get("type") == "page")
        async with http.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
            tools = _Devtools(ws)
            for domain in ("Page", "Runtime", "Log", "Network"):
                await tools.call(f"{domain}.enable")
            await tools.call("Emulation.setDeviceMetricsOverride", width=size[0], height=size[1],
                             deviceScaleFactor=1, mobile=False)
            await tools.call("Page.navigate", url=url)
            await tools.wait_for("Page.loadEventFired")
            result = PageCheck()
            value = await tools.call("Runtime.evaluate", expression=dom_expression, returnByValue=True,
                                     awaitPromise=True)
            result.dom = value.get("result", {}).get("value")
            if hover:
                selector, fraction = hover
                box = await tools.call("Runtime.evaluate", returnByValue=True, expression=(
                    f"(function(){{var e=document.querySelector({json.dumps(selector)});e.scrollIntoView();"
                    f"var r=e.getBoundingClientRect();return [r.left+r.width*{fraction},r.top+r.height/2];}})()"))
                x, y = box["result"]["value"]
                await tools.call("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y)
                tip = await tools.call("Runtime.evaluate", returnByValue=True,
                                       expression="document.getElementById('tip').textContent")
                result.tooltip = tip.get("result", {}).get("value") or ""
            await tools.call("Runtime.evaluate", expression="window.scrollTo(0, 0)")
            shot = await tools.call("Page.captureScreenshot", format="png")
            result.screenshot = base64.b64decode(shot["data"])
            await asyncio.sleep(0.2)  # late console messages
            await tools.call("Runtime.evaluate", expression="1")
    for event in tools.events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "warning", "assert"):
            result.console.append(" ".join(str(a.get("value", a.get("description", ""))) for a in params["args"]))
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            result.exceptions.append(details.get("exception", {}).get("description") or details.get("text", ""))
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") in ("error", "warning"):
            result.console.append(params["entry"].get("text", ""))
        elif method == "Network.requestWillBeSent":
            requested = params.get("request", {}).get("url", "")
            if requested != url:
                result.requests.append(requested)
    return result


def check_page(path: Path, *, dom_expression: str = "document.title", hover: tuple[str, float] | None = None,
               size: tuple[int, int] = (1100, 900)) -> PageCheck:
    """Load ``path`` in a fresh headless Chromium and report what happened; ``hover`` moves the
    pointer over the element of a CSS selector, at a fraction of its width, before the screenshot."""
    binary = chromium_binary()
    if binary is None:
        raise FileNotFoundError("chromium is not installed (apt-get install chromium)")
    with tempfile.TemporaryDirectory(prefix="lpo-ci-chromium-") as profile:
        process = subprocess.Popen([binary, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            port_file = Path(profile) / "DevToolsActivePort"
            deadline = time.monotonic() + 60
            while not port_file.exists() or not port_file.read_text().strip():
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"chromium did not start (exit status {process.poll()})")
                time.sleep(0.05)
            port = int(port_file.read_text().split()[0])
            return asyncio.run(_check(port, Path(path).resolve().as_uri(), dom_expression, hover, size))
        finally:  # the browser and the helpers it started: its own process group
            _signal_group(process, signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                _signal_group(process, signal.SIGKILL)
                process.wait(10)


def _signal_group(process: subprocess.Popen, number: int) -> None:
    try:
        os.killpg(process.pid, number)
    except ProcessLookupError:
        pass

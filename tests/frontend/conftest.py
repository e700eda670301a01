"""Browser tests: the PWA in Debian's Chromium (Playwright for Python) against `hearth up`.

Each test gets its own `hearth up` on free ports and its own data directory,
and a fresh Chromium with an empty profile; every person is an isolated
browser context. Screenshots of the main screens go to tests/artifacts/.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.timing import MS

ROOT = Path(__file__).resolve().parents[2]
DIST = ROOT / "frontend" / "dist"
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = os.environ.get("HEARTH_CHROMIUM", "/usr/bin/chromium")
SERVICES = ("frontend", "resolver", "keyserver", "router", "syncserver")

# Chromium on one machine: WebRTC between two contexts needs real (not mDNS)
# host candidates and loopback allowed as a candidate.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--allow-loopback-in-peer-connection",
    "--disable-dev-shm-usage",
]

# Playwright waits, in milliseconds, scaled like every test time.
WAIT = int(20_000 * MS * 1000)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Stack:
    """One `hearth up` run: its URLs, and stop/start for offline tests."""

    data_dir: Path
    ports: dict[str, int] = field(default_factory=dict)
    proc: subprocess.Popen[str] | None = None
    output: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ports['frontend']}/"

    def service(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def start(self) -> None:
        env = {**os.environ, "HEARTH_LOG_LEVEL": "warning"}
        env.update({f"HEARTH_{n.upper()}_PORT": str(p) for n, p in self.ports.items()})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hearth", "up", "--data-dir", str(self.data_dir)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        ready = threading.Event()

        def pump(proc: subprocess.Popen[str]) -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                self.output.append(line)
                if "Ctrl-C" in line:
                    ready.set()
            ready.set()

        self.reader = threading.Thread(target=pump, args=(self.proc,), daemon=True)
        self.reader.start()
        if not ready.wait(30_000 * MS) or self.proc.poll() is not None:
            self.stop()
            raise AssertionError("hearth up did not start:\n" + "".join(self.output))
        deadline = time.monotonic() + 30_000 * MS
        for name in SERVICES:
            while True:
                try:
                    httpx.get(self.service(name) + "/", timeout=5)
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline:
                        raise

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=30_000 * MS)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.reader is not None:
            self.reader.join(timeout=10)  # it ends at the pipe's end of file
            self.reader = None
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.proc = None

    def metrics(self, service: str) -> dict[str, float]:
        """Prometheus samples of a service, labels kept in the name."""
        text = httpx.get(self.service(service) + "/metrics", timeout=5).text
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out


def ensure_built() -> None:
    if not (DIST / "index.html").is_file():
        subprocess.run(["bash", str(ROOT / "scripts" / "build-frontend.sh")], check=True)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    if not Path(CHROMIUM).exists() or shutil.which("node") is None:
        pytest.fail(f"browser tests need {CHROMIUM} and node (make install-test installs them)")
    ensure_built()
    s = Stack(tmp_path / "data", {name: free_port() for name in SERVICES})
    try:
        s.start()
        yield s
    finally:
        s.stop()


@pytest.fixture
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


def shot(page: Page, name: str) -> None:
    """Save a screenshot for people to look at (tests/artifacts/<name>.png)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))

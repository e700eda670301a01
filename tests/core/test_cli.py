"""The `hearth` command: `hearth up` runs every service and stops cleanly; services run alone."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from hearth import __version__
from tests.timing import MS

SERVICES = ("frontend", "resolver", "keyserver", "router", "syncserver")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def hearth(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "hearth", *args],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def read_until(proc: subprocess.Popen[str], marker: str) -> list[str]:
    lines = []
    assert proc.stdout is not None
    deadline = time.monotonic() + 30_000 * MS
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if marker in line:
            return lines
    raise AssertionError("".join(lines))


def wait_http(url: str) -> httpx.Response:
    deadline = time.monotonic() + 30_000 * MS
    while True:
        try:
            return httpx.get(url, timeout=5)
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_hearth_up_runs_everything_and_stops_cleanly(tmp_path: Path) -> None:
    ports = {name: free_port() for name in SERVICES}
    env = {f"HEARTH_{name.upper()}_PORT": str(port) for name, port in ports.items()}
    proc = hearth("up", "--data-dir", str(tmp_path / "data"), env=env)
    try:
        lines = read_until(proc, "Ctrl-C")
        text = "".join(lines)
        for name, port in ports.items():
            assert f"http://127.0.0.1:{port}" in text, (name, text)
        # Every service answers; the frontend tells the app where the services are.
        config = wait_http(f"http://127.0.0.1:{ports['frontend']}/config.json").json()
        assert config["services"]["router"] == f"http://127.0.0.1:{ports['router']}"
        health = wait_http(f"http://127.0.0.1:{ports['resolver']}/xrpc/_health")
        assert health.status_code == 200
        for name in ("keyserver", "router", "syncserver"):
            r = wait_http(f"http://127.0.0.1:{ports[name]}/xrpc/_health")
            assert r.status_code == 200, (name, r.status_code)
            assert r.json()["version"] == __version__, (name, r.text)
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert "Traceback" not in out, out


def test_single_service_with_flags(tmp_path: Path) -> None:
    port = free_port()
    proc = hearth(
        "resolver",
        "--port",
        str(port),
        "--public-url",
        "https://resolver.example.com",
        "--data-dir",
        str(tmp_path),
        env={},
    )
    try:
        read_until(proc, "resolver")
        doc = wait_http(f"http://127.0.0.1:{port}/.well-known/did.json").json()
        assert doc["id"] == "did:web:resolver.example.com"
        assert doc["service"][0]["serviceEndpoint"] == "https://resolver.example.com"
        # Browser apps on other origins may call the XRPC endpoints (CORS preflight).
        pre = httpx.options(
            f"http://127.0.0.1:{port}/xrpc/com.atproto.identity.resolveHandle",
            headers={
                "Origin": "https://app.example",
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "authorization",
            },
        )
        assert pre.status_code == 200
        assert pre.headers["access-control-allow-origin"] == "*"
        assert "authorization" in pre.headers["access-control-allow-headers"].lower()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    assert proc.returncode == 0


def test_bad_configuration_is_a_clear_error() -> None:
    proc = hearth("resolver", "--port", "1", env={"HEARTH_HTTP_HOSTS": "garbage"})
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert "configuration error" in out and "HEARTH_HTTP_HOSTS" in out


def test_busy_port_is_a_clear_error() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = hearth("resolver", "--port", str(port), env={})
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in out
    assert "Traceback" not in out


def test_port_zero_reports_the_chosen_port(tmp_path: Path) -> None:
    proc = hearth("resolver", "--port", "0", "--data-dir", str(tmp_path), env={})
    try:
        line = read_until(proc, "resolver")[-1]
        url = line.split(" on ", 1)[1].strip()
        assert not url.endswith(":0")
        doc = wait_http(f"{url}/.well-known/did.json").json()
        assert doc["id"] == "did:web:127.0.0.1%3A" + url.rsplit(":", 1)[1]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    assert proc.returncode == 0

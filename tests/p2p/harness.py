"""Network namespaces for WebRTC tests.

Neither aiortc nor Chromium offers 127.0.0.1 as an ICE host candidate, and the
machine's outward address is not ours to use, so every WebRTC scenario runs in
a process of its own inside a fresh network namespace (`unshare -n`): loopback
up, plus (unless told otherwise) a veth pair with two private addresses and a
default route, which gives aiortc host candidates that reach each other.

The test calls `run_scenario(name, **args)`; the child runs
`tests.p2p.scenarios.<name>(**args)` and prints its result as one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.timing import MS

ROOT = Path(__file__).resolve().parents[2]
VETH = ("hveth0", "hveth1")
ADDRESSES = ("10.77.0.1/24", "10.77.0.2/24")
RESULT_PREFIX = "SCENARIO-RESULT "


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def setup_loopback() -> None:
    ip("link", "set", "lo", "up")


def add_veth() -> None:
    """Give this namespace two routable private addresses (host candidates)."""
    a, b = VETH
    ip("link", "add", a, "type", "veth", "peer", "name", b)
    ip("addr", "add", ADDRESSES[0], "dev", a)
    ip("addr", "add", ADDRESSES[1], "dev", b)
    ip("link", "set", a, "up")
    ip("link", "set", b, "up")
    ip("route", "add", "default", "via", "10.77.0.254", "dev", a)


async def run_scenario(name: str, limit: float = 120_000 * MS, **args: Any) -> dict[str, Any]:
    """Run one scenario in a fresh network namespace; its JSON result.

    Fails (AssertionError) with the child's stderr if it exits non-zero, prints
    no result, or runs past `limit` seconds.
    """
    proc = await asyncio.create_subprocess_exec(
        "unshare",
        "-n",
        sys.executable,
        "-W",
        "error",  # as pytest's filterwarnings = error, in the child too
        "-m",
        "tests.p2p.scenarios",
        name,
        json.dumps(args),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), limit)
    except TimeoutError:
        proc.kill()
        out, err = await proc.communicate()
        raise AssertionError(
            f"scenario {name} timed out after {limit:.0f}s\n{err.decode()[-6000:]}"
        ) from None
    text = out.decode()
    results = [line for line in text.splitlines() if line.startswith(RESULT_PREFIX)]
    assert proc.returncode == 0 and results, (
        f"scenario {name} failed (exit {proc.returncode})\n{text[-2000:]}\n{err.decode()[-6000:]}"
    )
    result: dict[str, Any] = json.loads(results[-1][len(RESULT_PREFIX) :])
    return result

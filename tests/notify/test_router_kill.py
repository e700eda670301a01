"""kill -9 a real `hearth router` process after `stored` receipts: nothing is lost."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from hearth.identity import web_did_for_url
from tests.notify.helpers import WAIT
from tests.notify.routerfix import Client, Router
from tests.notify.test_router_mail import Person


async def start(data_dir: Path, port: int = 0) -> tuple[asyncio.subprocess.Process, Router]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hearth", "router", "--port", str(port),
        "--data-dir", str(data_dir), "--log-level", "warning",
        env={**os.environ, "HEARTH_ROUTER_PING_INTERVAL": "0"},
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    line = (await asyncio.wait_for(proc.stdout.readline(), WAIT)).decode()
    url = line.split(" on ", 1)[1].strip()  # "router <version> on http://127.0.0.1:PORT"
    router = Router(url, web_did_for_url(url), int(url.rsplit(":", 1)[1]))
    return proc, router


async def connect(router: Router, who: Person, device: str) -> Client:
    """Connect once the router process accepts connections."""
    deadline = asyncio.get_running_loop().time() + WAIT
    while True:
        try:
            return await Client.open(router, who.signer, device=device)
        except OSError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.05)


async def test_kill_9_after_stored_receipts_loses_nothing(tmp_path: Path) -> None:
    alice, bob = Person(), Person()
    sealed = [alice.seal_for(bob, f"m{i}", f"mail {i}".encode()) for i in range(20)]
    proc, router = await start(tmp_path)
    try:
        b = await connect(router, bob, "bob-phone")  # bob's device becomes known
        await b.close()
        a = await connect(router, alice, "alice-laptop")
        for i, body in enumerate(sealed):
            await a.send(["mail", bob.did, f"m{i}", 600, "normal"], body)
        for i in range(20):
            assert (await a.recv())[0] == ["receipt", f"m{i}", "stored"]
    finally:
        proc.send_signal(signal.SIGKILL)  # no shutdown, no flush: as a power cut
        await proc.wait()
    proc, router = await start(tmp_path, router.port)
    try:
        b = await connect(router, bob, "bob-phone")
        for i in range(20):
            header, body = await b.recv()
            assert header[:3] == ["mail", alice.did, f"m{i}"]
            assert body == sealed[i]
        await b.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        await proc.wait()

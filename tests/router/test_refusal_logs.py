"""A flood of refused handshakes costs the router's log a bounded number of lines
(a real `hearth router` process, its logging set up as in production)."""

from __future__ import annotations

import asyncio
import base64
import os
import re
import sys
from pathlib import Path

import httpx

from hearth.jwt import Signer
from tests.timing import MS

TIMEOUT = 30_000 * MS
BURST = 5


async def refused_status(port: int, did: str) -> int:
    """One WebSocket upgrade with an invalid router token; the answer's status."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                f"GET /connect/as/{did} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                "Sec-WebSocket-Protocol: authorization, not-a-token\r\n\r\n"
            ).encode()
        )
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), TIMEOUT)
        return int(status_line.split()[1])
    finally:
        writer.close()


async def test_a_flood_of_bad_handshakes_logs_a_bounded_number_of_lines(tmp_path: Path) -> None:
    count = 200
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hearth", "router", "--port", "0",
        "--data-dir", str(tmp_path), "--log-level", "info",
        env={**os.environ, "HEARTH_LOG_REPEAT_BURST": str(BURST),
             "HEARTH_LOG_REPEAT_WINDOW": "600", "HEARTH_ROUTER_PING_INTERVAL": "0"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), TIMEOUT)).decode()
        url = line.split(" on ", 1)[1].strip()  # "router <version> on http://127.0.0.1:PORT"
        port = int(url.rsplit(":", 1)[1])
        did = Signer.generate().did_key
        for _ in range(count):
            assert await refused_status(port, did) == 403
        # Every refusal is counted (the line is logged before the answer is sent).
        async with httpx.AsyncClient() as http:
            metrics = (await http.get(f"{url}/metrics")).text
        assert re.search(
            r'^hearth_router_handshakes_refused_total\{reason="bad_token"\} 200(\.0)?$',
            metrics,
            re.MULTILINE,
        ), metrics
    finally:
        proc.terminate()
        _out, err = await asyncio.wait_for(proc.communicate(), TIMEOUT)
    lines = [x for x in err.decode().splitlines() if "refused connection" in x]
    assert lines, err.decode()[-2000:]
    assert len(lines) <= BURST, f"{len(lines)} lines for {count} refusals"

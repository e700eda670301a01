"""hearth.netlimits bookkeeping, hearth.logs filters, and a descriptor flood against a
real service whose file-descriptor limit is small."""

from __future__ import annotations

import logging
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from hearth.logs import RedactUrlQuery, RepeatFilter
from hearth.netlimits import ConnectionTable, Lease, SocketBudget, address_key, sockets_for_fd_limit
from tests.timing import MS


def test_addresses_count_by_ipv4_address_and_ipv6_64() -> None:
    assert address_key("192.0.2.7") == "192.0.2.7"
    assert address_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert address_key("2001:db8:1:2:3:4:5:6") == address_key("2001:db8:1:2:ffff::1")
    assert address_key("2001:db8:1:2::1") != address_key("2001:db8:1:3::1")
    assert address_key("fe80::1%eth0") == "fe80::/64"
    assert address_key(None) == ""


def test_per_address_and_process_caps() -> None:
    budget = SocketBudget(limit=3)
    a, b = ConnectionTable(2, budget), ConnectionTable(2, budget)
    first = a.admit("10.0.0.1")
    second = a.admit("10.0.0.1")
    assert isinstance(first, Lease) and isinstance(second, Lease)
    assert a.admit("10.0.0.1") == "per_address"
    assert isinstance(b.admit("10.0.0.1"), Lease)  # another service counts apart
    assert a.admit("10.0.0.2") == "sockets"  # but the process's budget is shared
    first.release()
    first.release()  # idempotent
    assert budget.open == 2
    assert isinstance(a.admit("10.0.0.2"), Lease)
    assert a.refused == {"per_address": 1, "sockets": 1}
    second.release()
    assert a.by_address == {"10.0.0.2": 1}
    assert sockets_for_fd_limit(1024) == 768 and sockets_for_fd_limit(100) == 36


def record(msg: str, *args: object, level: int = logging.WARNING) -> logging.LogRecord:
    return logging.LogRecord("hearth.net", level, __file__, 1, msg, args, None)


def test_repeated_warnings_collapse_with_a_count() -> None:
    now = [0.0]
    f = RepeatFilter(burst=3, window=60.0, clock=lambda: now[0])
    passed = [f.filter(record("refused %s from port 4%d", "a", i)) for i in range(100)]
    assert passed.count(True) == 3
    assert f.filter(record("something else"))  # another kind has its own budget
    assert f.filter(record("access %s", "x", level=logging.INFO))  # below WARNING: never
    now[0] = 61.0
    summary = record("refused %s from port 4%d", "a", 1)
    assert f.filter(summary)
    assert "97 more like this were not logged" in summary.getMessage()


def test_urls_lose_their_query_in_logs() -> None:
    rec = logging.LogRecord(
        "httpx",
        logging.INFO,
        __file__,
        1,
        'HTTP Request: %s %s "%s"',
        ("GET", httpx.URL("http://h:1/xrpc/x?documentId=abc&token=t"), "http://h/y?token=u"),
        None,
    )
    RedactUrlQuery().filter(rec)
    line = rec.getMessage()
    assert "abc" not in line and "token=" not in line and "/xrpc/x?…" in line


def test_a_connection_flood_is_refused_with_a_few_log_lines(tmp_path: Path) -> None:
    """With 256 descriptors, 600 held connections used to make `accept()` fail with
    EMFILE and asyncio log ~2,000 tracebacks a second; now the excess is refused
    and logged a few times, and the service answers once the flood ends."""
    port = 0
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    def small_fd_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))

    env = {
        **os.environ,
        "HEARTH_MAX_CONNECTIONS_PER_ADDRESS": "0",  # the process cap is what is tested
        "HEARTH_HEADER_TIMEOUT": str(60_000 * MS),
        "HEARTH_LOG_LEVEL": "info",
    }
    log = tmp_path / "resolver.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hearth", "resolver", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=small_fd_limit,
            cwd=tmp_path,
        )
    url = f"http://127.0.0.1:{port}/xrpc/_health"
    held: list[socket.socket] = []
    try:
        deadline = time.monotonic() + 30_000 * MS
        while True:
            try:
                httpx.get(url, timeout=5)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)
        lines_before = len(log.read_text().splitlines())
        refused = 0
        for _ in range(600):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(b"GET /xrpc/_health HTTP/1.1\r\nHost: x\r\n")  # never finished
            held.append(sock)
        for sock in held[-100:]:
            answer = sock.recv(4096)
            refused += answer.startswith(b"HTTP/1.1 503")
        assert refused == 100  # the last ones, beyond the cap, were answered at once
        for sock in held:
            sock.close()
        held.clear()
        deadline = time.monotonic() + 30_000 * MS
        while True:
            try:
                r = httpx.get(url, timeout=5)
                if r.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        for sock in held:
            sock.close()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    text = log.read_text()
    flood = text.splitlines()[lines_before:]
    assert "Traceback" not in text and "Too many open files" not in text, text[:3000]
    assert len(flood) <= 20, "\n".join(flood[:50])

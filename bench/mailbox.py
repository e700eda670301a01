"""Mailbox and Web Push benchmark: the router's store-and-forward and push paths, with anchors.

    .venv/bin/python bench/mailbox.py [--quick]

Runs `hearth router` as a subprocess (fresh data directory, SQLite WAL with
synchronous=FULL) and a local RFC 8030 push endpoint as another subprocess
(it answers 201 and counts). The load comes from this process. Measures:

1. mails/s stored: senders send sealed-size mails (256 bytes) to offline
   recipients with a window in flight, until every `stored` receipt is back;
2. mails/s delivered: the recipients connect, say which device they are,
   receive every waiting mail and ack it, until every `delivered` receipt;
3. pushes/s: mails to offline recipients registered for Web Push, until the
   endpoint has counted every push (RFC 8291 encryption + VAPID + HTTP POST).

Anchors, in the same run: one SQLite INSERT + COMMIT per mail with the same
pragmas (what durable storage costs without group commit), and pywebpush's
own `webpush()` in a loop to the same endpoint.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import websockets  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from websockets.asyncio.client import ClientConnection, connect  # noqa: E402

from bench.common import free_port  # noqa: E402
from hearth.identity import web_did_for_url  # noqa: E402
from hearth.jwt import Signer, mint_service_jwt  # noqa: E402
from router.frames import decode_frame, encode_frame  # noqa: E402

CONNECT_LXM = "chat.hearth.v1.router.connect"
BODY = os.urandom(256)


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def serve_endpoint(port: int) -> None:
    """The push endpoint subprocess: 201 for every push, `GET /count` says how many."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    count = 0
    changed = asyncio.Condition()

    async def push(request: Request) -> Response:
        nonlocal count
        await request.body()
        count += 1
        async with changed:
            changed.notify_all()
        return Response(status_code=201)

    async def get_count(request: Request) -> Response:
        # ?atLeast=N waits (long poll) until N pushes have arrived
        wanted = int(request.query_params.get("atLeast", "0"))
        async with changed:
            await changed.wait_for(lambda: count >= wanted)
        return JSONResponse({"count": count})

    app = Starlette(
        routes=[Route("/push/{id}", push, methods=["POST"]), Route("/count", get_count)]
    )
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=1,  # keep-alive pools would hold it open
    )


def wait_ready(url: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class Conn:
    def __init__(self, ws: ClientConnection, did: str) -> None:
        self.ws = ws
        self.did = did

    @classmethod
    async def open(cls, base: str, router_did: str, signer: Signer) -> Conn:
        token = mint_service_jwt(signer, iss=signer.did_key, aud=router_did, lxm=CONNECT_LXM)
        ws = await connect(
            f"ws{base[4:]}/connect/as/{signer.did_key}",
            subprotocols=[
                websockets.Subprotocol("authorization"),
                websockets.Subprotocol(token),
                websockets.Subprotocol("hearth.v1"),
            ],
            compression=None,
            max_size=None,
        )
        await ws.recv(decode=False)  # welcome
        return cls(ws, signer.did_key)

    async def recv(self) -> tuple[list[Any], bytes]:
        data = await ws_recv(self.ws)
        header, body = decode_frame(data)
        return list(header), bytes(body)


async def ws_recv(ws: ClientConnection) -> bytes:
    data = await ws.recv(decode=False)
    assert isinstance(data, bytes)
    return data


async def send_mails(
    senders: list[Conn], plan: list[list[tuple[str, str]]], window: int, urgency: str = "normal"
) -> None:
    """Each sender sends its (recipient, msgId) list, `window` in flight, until all are stored."""

    async def one(conn: Conn, items: list[tuple[str, str]]) -> None:
        sent = acked = 0
        while acked < len(items):
            while sent < len(items) and sent - acked < window:
                to, msg_id = items[sent]
                await conn.ws.send(encode_frame(["mail", to, msg_id, 3600, urgency], BODY))
                sent += 1
            header, _ = await conn.recv()
            if header[0] == "receipt" and header[2] == "stored":
                acked += 1
            elif header[0] == "error":
                raise RuntimeError(f"router refused a mail: {header}")

    await asyncio.gather(*(one(c, items) for c, items in zip(senders, plan, strict=True)))


async def wait_receipts(senders: list[Conn], status: str, total: int) -> None:
    remaining = [total]
    done = asyncio.Event()

    async def one(conn: Conn) -> None:
        while not done.is_set():
            header, _ = await conn.recv()
            if header[0] == "receipt" and header[2] == status:
                remaining[0] -= 1
                if remaining[0] == 0:
                    done.set()

    tasks = [asyncio.create_task(one(c)) for c in senders]
    await done.wait()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def deliver(base: str, router_did: str, recipients: list[Signer], per: int) -> None:
    async def one(signer: Signer) -> None:
        conn = await Conn.open(base, router_did, signer)
        await conn.ws.send(encode_frame(["device", "bench-device"]))
        for _ in range(per):
            header, _ = await conn.recv()
            assert header[0] == "mail", header
            await conn.ws.send(encode_frame(["ack", header[2]]))
        await conn.ws.close()

    await asyncio.gather(*(one(s) for s in recipients))


def subscription(endpoint_port: int, i: int) -> dict[str, Any]:
    key = ec.generate_private_key(ec.SECP256R1())
    point = key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return {
        "endpoint": f"http://127.0.0.1:{endpoint_port}/push/{i}",
        "keys": {"p256dh": b64u(point), "auth": b64u(os.urandom(16))},
    }


async def endpoint_count(client: httpx.AsyncClient, port: int, at_least: int = 0) -> int:
    resp = await client.get(f"http://127.0.0.1:{port}/count", params={"atLeast": at_least})
    count: int = resp.json()["count"]
    return count


def anchor_sqlite(n: int, directory: str) -> float:
    db = sqlite3.connect(os.path.join(directory, "anchor.sqlite3"), isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute(
        "CREATE TABLE mail (seq INTEGER PRIMARY KEY, sender, msg_id, body, UNIQUE(sender, msg_id))"
    )
    start = time.perf_counter()
    for i in range(n):
        db.execute("BEGIN")
        db.execute("INSERT INTO mail (sender, msg_id, body) VALUES (?, ?, ?)", ("s", str(i), BODY))
        db.execute("COMMIT")
    elapsed = time.perf_counter() - start
    db.close()
    return n / elapsed


def encrypt_only(n: int, directory: str) -> float:
    """RFC 8291 encryption + VAPID header per second, in this process, no I/O."""
    from router.push import PushMessage, PushSubscription, VapidKey, WebPushSender
    from router.urgency import PushUrgency

    vapid = VapidKey.load_or_create(Path(directory) / "bench-vapid.pem", "mailto:b@hearth.invalid")
    sender = WebPushSender(vapid, allow_private=True)
    subs = [
        PushSubscription.from_json(subscription(9, i), allow_insecure=True, allow_private=True)
        for i in range(16)
    ]
    start = time.perf_counter()
    for i in range(n):
        sender.build_request(PushMessage(subs[i % 16], BODY, 3600, PushUrgency.LOW))
    return n / (time.perf_counter() - start)


def anchor_pywebpush(n: int, endpoint_port: int) -> float:
    from py_vapid import Vapid02
    from pywebpush import webpush

    vapid = Vapid02()
    vapid.generate_keys()
    subs = [subscription(endpoint_port, 100_000 + i) for i in range(16)]
    start = time.perf_counter()
    for i in range(n):
        webpush(
            subs[i % len(subs)],
            data=BODY,
            vapid_private_key=vapid,
            vapid_claims={"sub": "mailto:bench@hearth.invalid"},
            ttl=3600,
        )
    return n / (time.perf_counter() - start)


async def main(args: argparse.Namespace) -> None:
    n_senders, n_recipients, per_recipient = (10, 50, 20) if args.quick else (20, 200, 50)
    n_push_recipients, pushes_per = (20, 10) if args.quick else (50, 40)
    window = 32
    total = n_recipients * per_recipient

    data = tempfile.mkdtemp(prefix="hearth-bench-mailbox-")
    port, endpoint_port = free_port(), free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "HEARTH_LOG_LEVEL": os.environ.get("HEARTH_LOG_LEVEL", "warning"),
        "HEARTH_ROUTER_PUSH_ALLOW_HTTP": "1",
        "HEARTH_ALLOW_PRIVATE_HOSTS": "1",  # the push endpoint is on loopback
        "HEARTH_MAX_CONNECTIONS_PER_ADDRESS": "0",  # every client is 127.0.0.1
        "HEARTH_ROUTER_MAILBOX_PER_SENDER": str(total * 2),
        "HEARTH_ROUTER_MAIL_RATE": "100000",
        "HEARTH_ROUTER_MAIL_BURST": "100000",
        "HEARTH_ROUTER_AUTH_RATE": "0",  # every client is 127.0.0.1: no per-address budget
    }
    log = open(os.path.join(data, "bench.log"), "wb")  # noqa: ASYNC230 - before any load
    router = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "hearth", "router", "--port", str(port), "--data-dir", data],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    endpoint = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--endpoint",
        str(endpoint_port),
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    try:
        await asyncio.to_thread(wait_ready, f"{base}/xrpc/_health")
        await asyncio.to_thread(wait_ready, f"http://127.0.0.1:{endpoint_port}/count")
        router_did = web_did_for_url(base)
        senders_keys = [Signer.generate() for _ in range(n_senders)]
        recipients = [Signer.generate() for _ in range(n_recipients)]
        senders = [await Conn.open(base, router_did, s) for s in senders_keys]
        # msgIds are unique per sender (the router refuses one reused for another recipient)
        msgs = [
            (r.did_key, f"m{j}-{k}") for j in range(per_recipient) for k, r in enumerate(recipients)
        ]
        plan = [msgs[i::n_senders] for i in range(n_senders)]

        t0 = time.perf_counter()
        await send_mails(senders, plan, window)
        stored_rate = total / (time.perf_counter() - t0)

        t0 = time.perf_counter()
        waiter = asyncio.create_task(wait_receipts(senders, "delivered", total))
        await deliver(base, router_did, recipients, per_recipient)
        await waiter
        delivered_rate = total / (time.perf_counter() - t0)

        push_recipients = [Signer.generate() for _ in range(n_push_recipients)]
        async with httpx.AsyncClient(timeout=30) as client:
            for i, who in enumerate(push_recipients):
                nsid = "chat.hearth.v1.push.register"
                token = mint_service_jwt(who, iss=who.did_key, aud=router_did, lxm=nsid)
                resp = await client.post(
                    f"{base}/xrpc/{nsid}",
                    json={"subscription": subscription(endpoint_port, i), "device": "phone"},
                    headers={"Authorization": f"Bearer {token}"},
                )
                resp.raise_for_status()
            push_total = n_push_recipients * pushes_per
            pmsgs = [
                (r.did_key, f"p{j}-{k}")
                for j in range(pushes_per)
                for k, r in enumerate(push_recipients)
            ]
            pplan = [pmsgs[i::n_senders] for i in range(n_senders)]
            before = await endpoint_count(client, endpoint_port)
            t0 = time.perf_counter()
            await send_mails(senders, pplan, window, urgency="ping")
            await endpoint_count(client, endpoint_port, before + push_total)
            push_rate = push_total / (time.perf_counter() - t0)
        for c in senders:
            await c.ws.close()

        sqlite_rate = await asyncio.to_thread(anchor_sqlite, min(total, 2000), data)
        encrypt_rate = encrypt_only(500 if args.quick else 2000, data)
        pywebpush_rate = await asyncio.to_thread(
            anchor_pywebpush, 100 if args.quick else 300, endpoint_port
        )
    finally:
        for proc in (router, endpoint):
            proc.terminate()
        for proc in (router, endpoint):
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        log.close()

    print(
        f"mailbox: {n_senders} senders, {n_recipients} offline recipients x {per_recipient}"
        f" mails of {len(BODY)} bytes, window {window} per sender"
    )
    print(f"  stored    {stored_rate:9.0f} mails/s  (durable before the `stored` receipt)")
    print(f"  delivered {delivered_rate:9.0f} mails/s  (reconnect, deliver, ack, `delivered`)")
    print(f"  anchor: one SQLite INSERT+COMMIT per mail, same pragmas: {sqlite_rate:.0f}/s")
    print(f"  ratio stored/anchor: {stored_rate / sqlite_rate:.2f}")
    print(f"push: {n_push_recipients} offline recipients x {pushes_per} pings, local endpoint")
    print(f"  router    {push_rate:9.0f} pushes/s  (mail -> store -> RFC 8291 + VAPID -> 201)")
    print(f"  encryption + VAPID alone, one core, no I/O: {encrypt_rate:.0f}/s")
    print(f"  anchor: pywebpush.webpush() in a loop: {pywebpush_rate:.0f}/s")
    print(f"  ratio router/anchor: {push_rate / pywebpush_rate:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="a smaller run")
    parser.add_argument("--endpoint", type=int, help=argparse.SUPPRESS)
    cli = parser.parse_args()
    if cli.endpoint:
        serve_endpoint(cli.endpoint)
    else:
        asyncio.run(main(cli))

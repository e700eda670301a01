"""The router's mailbox through storage failures, shares and file modes, on a real router."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import httpx

from tests.faults import corrupt_middle_page, locked, not_private
from tests.notify.helpers import MS, within
from tests.notify.push_endpoint import PushEndpoint
from tests.notify.routerfix import Client, Router, running_router
from tests.notify.test_router_mail import Person

BUSY = 200 * MS


async def health(r: Router) -> httpx.Response:
    async with httpx.AsyncClient() as http:
        return await http.get(f"{r.url}/xrpc/_health")


async def health_ok(r: Router) -> dict[str, object]:
    """Wait (bounded) for the mailbox's own probe to find the file usable again."""

    async def poll() -> httpx.Response:
        while True:
            resp = await health(r)
            if resp.status_code == 200:
                return resp
            await asyncio.sleep(50 * MS)

    body: dict[str, object] = (await within(poll())).json()
    return body


async def health_503(r: Router) -> dict[str, object]:
    """Wait (bounded) for the stores' idle probe to notice a problem."""

    async def poll() -> httpx.Response:
        while True:
            resp = await health(r)
            if resp.status_code == 503:
                return resp
            await asyncio.sleep(50 * MS)

    body: dict[str, object] = (await within(poll())).json()
    return body


async def test_health_notices_a_lock_without_traffic_and_its_end(tmp_path: Path) -> None:
    async with running_router(tmp_path, storage_probe_interval=100 * MS) as r:
        assert (await health(r)).json()["storage"] == "ok"
        for name, store in (("mailbox", "mailbox"), ("push", "push-registry")):
            with locked(tmp_path / "router" / f"{name}.sqlite3"):
                storage = (await health_503(r))["storage"]
                assert isinstance(storage, str) and f"{store}: " in storage, storage
                assert "locked" in storage, storage
            assert (await health_ok(r))["storage"] == "ok"


async def test_a_locked_mailbox_fails_mail_with_an_error_then_recovers(tmp_path: Path) -> None:
    alice, bob = Person(), Person()
    async with running_router(tmp_path, storage_busy_timeout=BUSY) as r:
        assert (await health(r)).json()["storage"] == "ok"
        a = await Client.open(r, alice.signer)
        await a.send(["mail", bob.did, "early", 600, "normal"], b"before the lock")
        assert (await a.recv())[0] == ["receipt", "early", "stored"]

        with locked(tmp_path / "router" / "mailbox.sqlite3"):
            await a.send(["mail", bob.did, "m1", 600, "normal"], b"during the lock")
            header, _ = await a.recv()
            assert header[:2] == ["error", "storage_unavailable"] and header[3] == "mail"
            assert "locked" in header[2]
            resp = await health(r)
            assert resp.status_code == 503
            storage = resp.json()["storage"]
            assert storage.startswith("error: ") and "mailbox" in storage, storage
            # Bob's device cannot fetch its mail now: it is told so, and may ask again.
            b = await Client.open(r, bob.signer, device="bob-phone")
            header, _ = await b.recv()
            assert header[:2] == ["error", "storage_unavailable"] and header[3] == "device"

        assert (await health_ok(r))["storage"] == "ok"
        await b.send(["device", "bob-phone"])  # mail stored before the lock comes now
        got = [await b.expect("mail")]
        await a.send(["mail", bob.did, "m1", 600, "normal"], b"after the lock")
        assert (await a.recv())[0] == ["receipt", "m1", "stored"]
        got.append(await b.expect("mail"))
        assert [(h[2], body) for h, body in got] == [
            ("early", b"before the lock"),
            ("m1", b"after the lock"),
        ]
        for msg_id in ("early", "m1"):
            await b.send(["ack", msg_id])
            assert (await a.recv())[0] == ["receipt", msg_id, "delivered"]
        await a.close()
        await b.close()


async def test_one_sender_filling_its_share_leaves_room_for_a_friend(tmp_path: Path) -> None:
    alice, bob, carol = Person(), Person(), Person()
    options = {"mailbox_per_recipient": 8, "mailbox_share": 0.25}
    async with running_router(tmp_path, **options) as r:
        a = await Client.open(r, alice.signer)
        for i in range(2):
            await a.send(["mail", bob.did, f"a{i}", 600, "normal"], b"x" * 1000)
            assert (await a.recv())[0] == ["receipt", f"a{i}", "stored"]
        await a.send(["mail", bob.did, "a2", 600, "normal"], b"x")
        header, _ = await a.recv()
        assert header[:2] == ["error", "quota_exceeded"] and header[3] == "mail"
        assert "per sender and recipient (2 mails)" in header[2]
        c = await Client.open(r, carol.signer)
        await c.send(["mail", bob.did, "c0", 600, "normal"], b"hi")
        assert (await c.recv())[0] == ["receipt", "c0", "stored"]
        await a.close()
        await c.close()


async def test_every_file_the_router_writes_is_private(tmp_path: Path) -> None:
    alice, bob = Person(), Person()
    old = os.umask(0o022)
    try:
        async with running_router(tmp_path / "data") as r:
            a = await Client.open(r, alice.signer)
            await a.send(["mail", bob.did, "m", 600, "normal"], b"x")
            assert (await a.recv())[0] == ["receipt", "m", "stored"]
            await a.close()
            names = {p.name for p in (tmp_path / "data" / "router").iterdir()}
            assert {"mailbox.sqlite3-wal", "push.sqlite3", "vapid_private.pem"} <= names
            assert not_private(tmp_path / "data" / "router") == {}
    finally:
        os.umask(old)
    assert not_private(tmp_path / "data") == {}


async def test_a_corrupt_mailbox_is_reported_and_mail_refused_with_the_reason(
    tmp_path: Path,
) -> None:
    alice, bob = Person(), Person()
    async with running_router(tmp_path, mailbox_share=1.0) as r:
        a = await Client.open(r, alice.signer)
        for i in range(100):
            await a.send(["mail", bob.did, f"m{i}", 600, "normal"], os.urandom(300))
            assert (await a.recv())[0] == ["receipt", f"m{i}", "stored"]
        await a.close()
    corrupt_middle_page(tmp_path / "router" / "mailbox.sqlite3")

    async with running_router(tmp_path) as r:
        resp = await health(r)
        assert resp.status_code == 503
        storage = resp.json()["storage"]
        assert storage.startswith("error: mailbox: mailbox database unusable (integrity check")
        a = await Client.open(r, alice.signer)
        await a.send(["mail", bob.did, "new", 600, "normal"], b"x")
        header, _ = await a.recv()
        assert header[:2] == ["error", "storage_unavailable"] and "integrity" in header[2]
        # Routing goes on: the router itself is not down.
        b = await Client.open(r, bob.signer)
        await b.send(["listen", "doc"])
        await b.sync()
        assert (await b.expect("error"))[0][1] != "storage_unavailable"
        await a.send(["listen", "doc"])
        header, _ = await b.expect("join")
        assert header[1] == alice.did
        await a.close()
        await b.close()


async def test_a_locked_push_registry_answers_503_with_the_reason(tmp_path: Path) -> None:
    bob = Person()
    async with running_router(tmp_path, storage_busy_timeout=BUSY) as r:
        key = (await r.xrpc(None, "vapidPublicKey", {})).json()["publicKey"]
        endpoint = PushEndpoint(key)
        endpoint.url = "http://127.0.0.1:9"  # never pushed to here
        sub = endpoint.device().subscription
        body = {"subscription": sub, "level": "engaged", "device": "bob-phone"}
        with locked(tmp_path / "router" / "push.sqlite3"):
            resp = await r.xrpc(bob.signer, "register", body)
            assert resp.status_code == 503, resp.text
            assert resp.json()["error"] == "StorageUnavailable"
            assert "locked" in resp.json()["message"]
            health_resp = await health(r)
            assert health_resp.status_code == 503
            assert "push-registry" in health_resp.json()["storage"]
        await health_ok(r)
        assert (await r.xrpc(bob.signer, "register", body)).status_code == 200

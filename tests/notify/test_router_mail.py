"""Mailbox and push through a real router on port 0, with the local push service."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import httpx
import nacl.public

from hearth.jwt import Signer, mint_service_jwt
from hearth.keys import KeyType, PublicKey
from hearth.sealed import open_sealed, seal
from router.push import VapidKey
from tests.notify.helpers import MS, WAIT, within
from tests.notify.push_endpoint import PushEndpoint
from tests.notify.routerfix import Client, Router, running_router


class Person:
    def __init__(self) -> None:
        self.signer = Signer.generate()
        self.did = self.signer.did_key
        self.enc = nacl.public.PrivateKey.generate()
        self.enc_pub = PublicKey(KeyType.X25519, bytes(self.enc.public_key))

    def seal_for(self, other: Person, msg_id: str, payload: bytes) -> bytes:
        return seal(payload, sender=self.did, sender_key=self.signer, recipient=other.did,
                    recipient_key=other.enc_pub, msg_id=msg_id)  # fmt: skip


async def barrier(client: Client) -> None:
    """Frames the router sends for anything this client did before arrive before this returns.

    A mail to a nobody DID is stored behind everything queued earlier; its
    receipt comes after their results.
    """
    probe = "probe-" + os.urandom(6).hex()
    await client.send(["mail", "did:key:zNobody", probe, 60, "quiet"], b"p")
    header, _ = await client.recv()
    assert header == ["receipt", probe, "stored"], header


async def register(router: Router, who: Person, sub: dict[str, object], level: str,
                   device: str) -> None:  # fmt: skip
    resp = await router.xrpc(
        who.signer, "register", {"subscription": sub, "level": level, "device": device}
    )
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"device": device, "level": level}


async def escaped_xrpc(
    router: Router, who: Person, method: str, body: dict[str, object]
) -> httpx.Response:
    """POST `body` as ASCII JSON (non-ASCII escaped, so lone surrogates go through)."""
    nsid = f"chat.hearth.v1.push.{method}"
    token = mint_service_jwt(who.signer, iss=who.did, aud=router.did, lxm=nsid)
    async with httpx.AsyncClient(timeout=WAIT) as client:
        return await client.post(
            f"{router.url}/xrpc/{nsid}",
            content=json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )


async def test_push_xrpc_endpoints(tmp_path: Path) -> None:
    bob = Person()
    async with running_router(tmp_path) as r:
        key = (await r.xrpc(None, "vapidPublicKey", {})).json()["publicKey"]
        assert key == VapidKey.load_or_create(tmp_path / "router/vapid_private.pem", "x").public_key
        ep = PushEndpoint(key)
        ep.url = "http://127.0.0.1:9"
        sub = ep.device().subscription
        resp = await r.xrpc(None, "register", {"subscription": sub})
        assert resp.status_code == 401 and resp.json()["error"] == "AuthenticationRequired"
        resp = await r.xrpc(bob.signer, "register", {"subscription": {"endpoint": "x"}})
        assert resp.status_code == 400 and resp.json()["error"] == "InvalidSubscription"
        resp = await r.xrpc(bob.signer, "register", {"subscription": sub, "level": "loud"})
        assert resp.status_code == 400
        nsid = "chat.hearth.v1.push.register"
        token = mint_service_jwt(bob.signer, iss=bob.signer.did_key, aud=r.did, lxm=nsid)
        async with httpx.AsyncClient(timeout=WAIT) as client:
            resp = await client.post(
                f"{r.url}/xrpc/{nsid}",
                content=b"[" * 3000,
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            )
        assert resp.status_code == 400 and resp.json()["error"] == "InvalidRequest"
        resp = await r.xrpc(bob.signer, "register", {"subscription": sub})
        assert resp.status_code == 200
        derived = resp.json()["device"]
        assert derived.startswith("ep-") and resp.json()["level"] == "engaged"
        resp = await r.xrpc(bob.signer, "setLevel", {"level": "busy", "device": derived})
        assert resp.json() == {"updated": 1}
        resp = await r.xrpc(bob.signer, "setLevel", {"level": "busy", "device": "nope"})
        assert resp.status_code == 404
        resp = await r.xrpc(bob.signer, "subscribeDocument", {"device": derived, "docId": "d1"})
        assert resp.status_code == 200
        resp = await r.xrpc(bob.signer, "subscribeDocument", {"device": "other", "docId": "d1"})
        assert resp.status_code == 404
        # Lone surrogates (JSON escapes) cannot be stored: the body is a 400, not 500.
        lone = {"device": derived, "docId": "d\ud800"}
        resp = await escaped_xrpc(r, bob, "subscribeDocument", lone)
        assert resp.status_code == 400 and resp.json()["error"] == "InvalidRequest"
        odd = {**sub, "endpoint": "http://127.0.0.1:9/\udc00"}
        resp = await escaped_xrpc(r, bob, "register", {"subscription": odd})
        assert resp.status_code == 400 and resp.json()["error"] == "InvalidRequest"
        resp = await r.xrpc(bob.signer, "unsubscribeDocument", {"device": derived, "docId": "d1"})
        assert resp.json() == {"removed": True}
        resp = await r.xrpc(bob.signer, "unregister", {"endpoint": sub["endpoint"]})
        assert resp.json() == {"removed": 1}
        resp = await r.xrpc(bob.signer, "unregister", {"device": derived})
        assert resp.json() == {"removed": 0}


async def test_offline_mail_is_pushed_kept_across_restart_and_delivered_once(
    tmp_path: Path,
) -> None:
    alice, bob = Person(), Person()
    async with running_router(tmp_path) as r:
        key = (await r.xrpc(None, "vapidPublicKey", {})).json()["publicKey"]
    topic = VapidKey.load_or_create(tmp_path / "router/vapid_private.pem", "x").topic(alice.did)
    async with PushEndpoint(key).running() as endpoint:
        dev = endpoint.device()
        sealed = alice.seal_for(bob, "m1", b"see you at 8")
        async with running_router(tmp_path) as r:
            assert (await r.xrpc(None, "vapidPublicKey", {})).json()["publicKey"] == key
            await register(r, bob, dev.subscription, "engaged", "bob-phone")
            a = await Client.open(r, alice.signer)
            await a.send(["mail", bob.did, "m1", 3600, "ping"], sealed)
            header, _ = await a.recv()
            assert header == ["receipt", "m1", "stored"]
            push = await within(endpoint.received.get())
            assert push.plaintext == sealed
            assert (push.urgency, push.topic) == ("normal", topic)
            assert 3590 <= push.ttl <= 3600
            opened = open_sealed(push.plaintext, recipient=bob.did, recipient_key=bob.enc)
            assert (opened.sender, opened.payload) == (alice.did, b"see you at 8")
            # a resent mail is not stored, delivered or pushed twice
            await a.send(["mail", bob.did, "m1", 3600, "ping"], sealed)
            header, _ = await a.recv()
            assert header == ["receipt", "m1", "stored"]
            await a.close()
        # the router is gone; a new one on the same data directory
        async with running_router(tmp_path) as r:
            a = await Client.open(r, alice.signer)
            b = await Client.open(r, bob.signer, device="bob-phone")
            header, body = await b.recv()
            assert header[:3] == ["mail", alice.did, "m1"] and header[4] == "ping"
            assert isinstance(header[3], int) and body == sealed
            await b.send(["ack", "m1"])
            header, _ = await a.recv()
            assert header == ["receipt", "m1", "delivered"]
            await b.close()
            again = await Client.open(r, bob.signer, device="bob-phone")
            await barrier(again)  # no mail came before the probe's receipt
            await a.send(["mail", bob.did, "m1", 3600, "ping"], sealed)
            header, _ = await a.recv()
            assert header == ["receipt", "m1", "delivered"]
            await barrier(again)
            await again.close()
            await a.close()
        assert endpoint.received.empty()  # exactly one push for m1
        assert endpoint.refused == []


async def test_live_and_offline_devices(tmp_path: Path) -> None:
    alice, bob = Person(), Person()
    async with running_router(tmp_path) as r:
        key = (await r.xrpc(None, "vapidPublicKey", {})).json()["publicKey"]
        async with PushEndpoint(key).running() as endpoint:
            laptop = endpoint.device()
            phone = endpoint.device()
            await register(r, bob, laptop.subscription, "quiet", "laptop")
            await register(r, bob, phone.subscription, "engaged", "phone")
            b_phone = await Client.open(r, bob.signer, device="phone")
            await barrier(b_phone)
            a = await Client.open(r, alice.signer)
            sealed = alice.seal_for(bob, "m2", b"x" * 100)
            await a.send(["mail", bob.did, "m2", 60, "urgent"], sealed)
            assert (await a.recv())[0] == ["receipt", "m2", "stored"]
            header, body = await b_phone.recv()
            assert header[:3] == ["mail", alice.did, "m2"] and body == sealed
            # only the offline laptop is pushed, capped by its level (quiet: low)
            push = await within(endpoint.received.get())
            assert (push.sub_id, push.urgency, push.plaintext) == (laptop.sub_id, "low", sealed)
            await b_phone.send(["ack", "m2"])
            await barrier(b_phone)
            b_laptop = await Client.open(r, bob.signer, device="laptop")
            header, body = await b_laptop.recv()
            assert header[:3] == ["mail", alice.did, "m2"]
            await b_laptop.send(["ack", "m2"])
            assert (await a.recv())[0] == ["receipt", "m2", "delivered"]
            assert endpoint.received.empty()
            for c in (a, b_phone, b_laptop):
                await c.close()


async def test_push_retried_after_503(tmp_path: Path) -> None:
    alice, bob = Person(), Person()
    async with running_router(tmp_path, push_retry_base=20 * MS) as r:
        key = (await r.xrpc(None, "vapidPublicKey", {})).json()["publicKey"]
        async with PushEndpoint(key).running() as endpoint:
            dev = endpoint.device()
            endpoint.answer(dev, 503, 503)
            await register(r, bob, dev.subscription, "engaged", "d")
            a = await Client.open(r, alice.signer)
            sealed = alice.seal_for(bob, "m", b"retry me")
            await a.send(["mail", bob.did, "m", 60, "normal"], sealed)
            push = await within(endpoint.received.get())
            assert push.plaintext == sealed and push.urgency == "low"
            assert endpoint.attempts[dev.sub_id] == 3
            await a.close()


async def test_ttl_expiry_tells_the_sender(tmp_path: Path) -> None:
    alice, bob = Person(), Person()
    async with running_router(tmp_path, mail_sweep_interval=50 * MS) as r:
        a = await Client.open(r, alice.signer)
        await a.send(["mail", bob.did, "short", 1, "normal"], alice.seal_for(bob, "short", b"."))
        assert (await a.recv())[0] == ["receipt", "short", "stored"]
        assert (await a.recv())[0] == ["receipt", "short", "expired"]
        b = await Client.open(r, bob.signer, device="late")
        await barrier(b)  # nothing waits for bob any more
        await a.close()
        await b.close()


async def test_quotas_and_bad_mail(tmp_path: Path) -> None:
    alice, bob, carol = Person(), Person(), Person()
    async with running_router(
        tmp_path, mailbox_per_recipient=2, mailbox_per_sender=3, mailbox_share=1.0
    ) as r:
        a = await Client.open(r, alice.signer)
        for i in range(2):
            await a.send(["mail", bob.did, f"b{i}", 60, "normal"], b"s")
            assert (await a.recv())[0] == ["receipt", f"b{i}", "stored"]
        await a.send(["mail", bob.did, "b2", 60, "normal"], b"s")
        header, _ = await a.recv()
        assert header[:2] == ["error", "quota_exceeded"] and header[3] == "mail"
        assert "recipient" in header[2]
        await a.send(["mail", carol.did, "c0", 60, "normal"], b"s")
        assert (await a.recv())[0] == ["receipt", "c0", "stored"]
        await a.send(["mail", carol.did, "c1", 60, "normal"], b"s")
        header, _ = await a.recv()
        assert header[:2] == ["error", "quota_exceeded"] and "sender" in header[2]
        await a.send(["mail", carol.did, "b0", 60, "normal"], b"s")
        header, _ = await a.recv()
        assert header[:2] == ["error", "msg_id_conflict"]
        for bad, code in (
            (["mail", bob.did, "x", 0, "normal"], "bad_ttl"),
            (["mail", bob.did, "x", 10**9, "normal"], "bad_ttl"),
            (["mail", bob.did, "x", 60, "loud"], "bad_type"),
            (["mail", bob.did, "x", "60", "normal"], "bad_type"),
            (["mail", bob.did, "x", 60], "bad_arity"),
            (["ack"], "bad_arity"),
            (["device", "has space"], "bad_type"),
            (["notify", "doc", "loud"], "bad_type"),
        ):
            await a.send(bad, b"s")
            header, _ = await a.recv()
            assert header[:2] == ["error", code], (bad, header)
        await a.close()
        async with httpx.AsyncClient() as http:
            text = (await http.get(f"{r.url}/metrics")).text
        assert "hearth_router_mail_stored_total 3.0" in text
        assert "hearth_router_mail_refused_total 3.0" in text


async def test_crash_after_stored_receipt_loses_nothing(tmp_path: Path) -> None:
    # What is on disk the moment after `stored` (copied while the router still
    # runs, as a power cut would leave it) is enough for a new router.
    alice, bob = Person(), Person()
    live, crashed = tmp_path / "live", tmp_path / "crashed"
    sealed = [alice.seal_for(bob, f"k{i}", f"mail {i}".encode()) for i in range(5)]
    async with running_router(live) as r:
        a = await Client.open(r, alice.signer)
        await Client.open(r, bob.signer, device="bob-phone")
        b_laptop = await Client.open(r, bob.signer, device="bob-laptop")
        await barrier(b_laptop)
        await b_laptop.close()
        for i, body in enumerate(sealed):
            await a.send(["mail", bob.did, f"k{i}", 600, "normal"], body)
        for i in range(5):
            assert (await a.recv())[0] == ["receipt", f"k{i}", "stored"]
        shutil.copytree(live, crashed)
    async with running_router(crashed) as r:
        b = await Client.open(r, bob.signer, device="bob-laptop")
        for i in range(5):
            header, body = await b.recv()
            assert header[2] == f"k{i}" and body == sealed[i]
        await b.close()


async def test_receipt_kept_for_an_offline_sender(tmp_path: Path) -> None:
    alice, bob = Person(), Person()
    async with running_router(tmp_path) as r:
        a = await Client.open(r, alice.signer, device="alice-phone")
        await a.send(["mail", bob.did, "r1", 600, "normal"], alice.seal_for(bob, "r1", b"hi"))
        assert (await a.recv())[0] == ["receipt", "r1", "stored"]
        await a.close()
        b = await Client.open(r, bob.signer, device="bob-phone")
        header, _ = await b.recv()
        assert header[:3] == ["mail", alice.did, "r1"]
        await b.send(["ack", "r1"])
        await barrier(b)
        a = await Client.open(r, alice.signer, device="alice-phone")
        assert (await a.recv())[0] == ["receipt", "r1", "delivered"]
        await barrier(a)  # and only once
        await a.close()
        a = await Client.open(r, alice.signer, device="alice-phone")
        await barrier(a)
        await a.close()
        await b.close()

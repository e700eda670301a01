"""Notifications over the in-memory router core, with real pushes to the local push service."""

from __future__ import annotations

import base64
import itertools
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hearth.types import Did, DocumentId
from router.core import Connection, Router
from router.frames import decode_frame, encode_frame
from router.limits import Limits
from router.mailbox import SqliteMailbox
from router.notify import MAX_PUSH_PAYLOAD, Notifications, NotifySettings
from router.push import PushSubscription, VapidKey, WebPushSender
from router.push_queue import PushLimits
from router.push_store import SqlitePushRegistry
from router.urgency import Level, MailUrgency, push_urgency
from tests.notify.helpers import within
from tests.notify.push_endpoint import FakeDevice, PushEndpoint


class Peer:
    def __init__(self) -> None:
        self.frames: list[tuple[list[Any], bytes]] = []
        self.closed = False

    def write(self, frame: bytes) -> None:
        header, body = decode_frame(frame)
        self.frames.append((list(header), bytes(body)))

    def close(self, code: int, reason: str) -> None:
        self.closed = True

    def verbs(self) -> list[str]:
        return [h[0] for h, _ in self.frames]


@dataclass
class World:
    router: Router
    hub: Notifications
    endpoint: PushEndpoint

    def connect(self, did: str, device: str | None = None) -> tuple[Connection, Peer]:
        peer = Peer()
        conn = self.router.connect(Did(did), peer)
        if device is not None:
            self.router.receive(conn, encode_frame(["device", device]))
        return conn, peer

    async def register(self, did: str, device: str, level: Level) -> FakeDevice:
        dev = self.endpoint.device()
        sub = PushSubscription.from_json(dev.subscription, allow_insecure=True, allow_private=True)
        await self.hub.registry.register(Did(did), device, sub, level)
        await self.hub.mailbox.add_device(Did(did), device)
        return dev


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    vapid = VapidKey.load_or_create(tmp_path / "vapid.pem", "mailto:t@hearth.test")
    async with PushEndpoint(vapid.public_key).running() as endpoint:
        router = Router(Limits())
        hub = Notifications(
            router,
            await SqliteMailbox.open(tmp_path / "mail.sqlite3"),
            await SqlitePushRegistry.open(tmp_path / "push.sqlite3"),
            vapid,
            WebPushSender(vapid, allow_private=True),
            NotifySettings(
                push_allow_http=True, allow_private_hosts=True, push=PushLimits(retry_base=0.01)
            ),
        )
        hub.install()
        try:
            yield World(router, hub, endpoint)
        finally:
            await hub.aclose()


async def drain(w: World) -> list[Any]:
    await within(w.hub.idle())
    out = []
    while not w.endpoint.received.empty():
        out.append(w.endpoint.received.get_nowait())
    return out


async def test_every_level_and_urgency_pair(world: World) -> None:
    sender, _ = world.connect("did:key:zSender")
    devices = {}
    for level in Level:
        devices[level] = await world.register(f"did:key:z{level.value}", "d", level)
    for i, (level, urgency) in enumerate(itertools.product(Level, MailUrgency)):
        header = ["mail", f"did:key:z{level.value}", f"m{i}", 600, urgency.value]
        world.router.receive(sender, encode_frame(header, f"body{i}".encode()))
    pushes = {p.plaintext.decode(): p for p in await drain(world)}
    vapid_topic = world.hub.vapid.topic("did:key:zSender")
    for i, (level, urgency) in enumerate(itertools.product(Level, MailUrgency)):
        expected = push_urgency(level, urgency)
        got = pushes.pop(f"body{i}", None)
        if expected is None:
            assert got is None, (level, urgency)
            continue
        assert got is not None, (level, urgency)
        assert got.sub_id == devices[level].sub_id
        assert (got.urgency, got.topic) == (expected.value, vapid_topic)
        assert 590 <= got.ttl <= 600
    assert pushes == {}
    assert world.endpoint.refused == []


async def test_gone_subscription_is_removed(world: World) -> None:
    sender, _ = world.connect("did:key:zA")
    dev = await world.register("did:key:zB", "d", Level.ENGAGED)
    world.endpoint.answer(dev, 410)
    world.router.receive(sender, encode_frame(["mail", "did:key:zB", "1", 60, "normal"], b"x"))
    assert await drain(world) == []
    assert await world.hub.registry.registrations(Did("did:key:zB")) == []
    world.router.receive(sender, encode_frame(["mail", "did:key:zB", "2", 60, "normal"], b"x"))
    await drain(world)
    assert world.endpoint.attempts[dev.sub_id] == 1  # never pushed again
    samples = {
        (s.name, tuple(s.labels.values())): s.value
        for family in world.hub.metrics.collect()
        for s in family.samples
    }
    assert samples[("hearth_router_pushes_total", ("gone",))] == 1
    assert samples[("hearth_router_pushes_total", ("sent",))] == 0
    assert samples[("hearth_router_mail_stored_total", ())] == 2


async def test_large_mail_sends_a_hint(world: World) -> None:
    sender, _ = world.connect("did:key:zA")
    await world.register("did:key:zB", "d", Level.ENGAGED)
    big = b"s" * (MAX_PUSH_PAYLOAD + 1)
    world.router.receive(sender, encode_frame(["mail", "did:key:zB", "big", 60, "ping"], big))
    world.router.receive(
        sender, encode_frame(["mail", "did:key:zB", "fits", 60, "ping"], big[:MAX_PUSH_PAYLOAD])
    )
    pushes = await drain(world)
    payloads = sorted((p.plaintext for p in pushes), key=len)
    assert payloads[0].startswith(b'{"hearth":')
    assert json.loads(payloads[0]) == {"hearth": "mail", "from": "did:key:zA", "msgId": "big"}
    assert payloads[1] == big[:MAX_PUSH_PAYLOAD]
    assert len(payloads) == 2


async def test_online_device_is_not_pushed_until_it_leaves(world: World) -> None:
    sender, sender_peer = world.connect("did:key:zA")
    dev = await world.register("did:key:zB", "phone", Level.ENGAGED)
    conn, peer = world.connect("did:key:zB", "phone")
    await drain(world)
    world.router.receive(sender, encode_frame(["mail", "did:key:zB", "1", 60, "ping"], b"one"))
    assert await drain(world) == []
    assert peer.frames[-1] == (["mail", "did:key:zA", "1", peer.frames[-1][0][3], "ping"], b"one")
    world.router.disconnect(conn)
    world.router.receive(sender, encode_frame(["mail", "did:key:zB", "2", 60, "ping"], b"two"))
    pushes = await drain(world)
    assert [(p.sub_id, p.plaintext) for p in pushes] == [(dev.sub_id, b"two")]
    assert world.hub.tracked_connections() == 0  # the closed connection was forgotten
    assert sender_peer.verbs() == ["welcome", "receipt", "receipt"]


async def test_notify_fans_out_to_offline_subscribers_never_the_sender(world: World) -> None:
    doc = DocumentId("channel-1")
    registry = world.hub.registry
    subs: dict[str, FakeDevice] = {}
    for did, device, level in (
        ("did:key:zA", "a", Level.ENGAGED),  # the sender itself
        ("did:key:zB", "b", Level.ENGAGED),
        ("did:key:zC", "c", Level.BUSY),
        ("did:key:zD", "d", Level.ENGAGED),  # online: no push
        ("did:key:zE", "e", Level.SILENT),
    ):
        subs[did] = await world.register(did, device, Level.ENGAGED)
        await registry.subscribe_doc(Did(did), device, doc, level)
    await world.register("did:key:zF", "f", Level.ENGAGED)  # not subscribed
    sender, _ = world.connect("did:key:zA", "a")
    world.connect("did:key:zD", "d")
    world.router.receive(sender, encode_frame(["notify", doc, "normal"], b"hi"))
    pushes = await drain(world)
    assert [p.sub_id for p in pushes] == [subs["did:key:zB"].sub_id]
    assert pushes[0].urgency == "low"
    assert json.loads(pushes[0].plaintext) == {
        "hearth": "notify",
        "doc": doc,
        "from": "did:key:zA",
        "urgency": "normal",
        "body": base64.b64encode(b"hi").decode(),
    }
    world.router.receive(sender, encode_frame(["notify", doc, "ping"]))
    pushes = await drain(world)
    got = sorted((p.sub_id, p.urgency) for p in pushes)
    assert got == sorted(
        [(subs["did:key:zB"].sub_id, "normal"), (subs["did:key:zC"].sub_id, "normal")]
    )


async def test_device_frames(world: World) -> None:
    conn, peer = world.connect("did:key:zB", "one")
    world.router.receive(conn, encode_frame(["device", "one"]))  # repeating is fine
    world.router.receive(conn, encode_frame(["device", "two"]))
    await drain(world)
    assert peer.frames[-1][0][:2] == ["error", "bad_device"]
    assert world.hub.device_of(conn) == "one"
    assert await world.hub.mailbox.devices(Did("did:key:zB")) == {"one"}


async def test_closed_connections_leave_no_trace(world: World) -> None:
    for i in range(200):
        conn, _ = world.connect(f"did:key:z{i % 7}", f"dev{i % 3}")
        world.router.disconnect(conn)
    await drain(world)
    await world.hub.sweep()
    assert world.hub.tracked_connections() == 0
    assert world.hub._online == {}


async def test_mail_to_own_other_devices(world: World) -> None:
    phone, phone_peer = world.connect("did:key:zMe", "phone")
    laptop, laptop_peer = world.connect("did:key:zMe", "laptop")
    await drain(world)
    world.router.receive(phone, encode_frame(["mail", "did:key:zMe", "self-1", 60, "normal"], b"s"))
    await drain(world)
    assert laptop_peer.frames[-1][0][:3] == ["mail", "did:key:zMe", "self-1"]
    assert [h[0] for h, _ in phone_peer.frames[1:]] == ["receipt"]  # not delivered to itself
    world.router.receive(laptop, encode_frame(["ack", "self-1"]))
    await drain(world)
    assert phone_peer.frames[-1][0] == ["receipt", "self-1", "delivered"]


async def test_notify_needs_a_relation_to_the_document(world: World) -> None:
    doc = DocumentId("channel-2")
    bob = await world.register("did:key:zB", "b", Level.ENGAGED)
    await world.hub.registry.subscribe_doc(Did("did:key:zB"), "b", doc, Level.ENGAGED)
    # A DID unrelated to the document: no push, whatever body and urgency it picks.
    stranger, peer = world.connect("did:key:zStranger", "s")
    for _ in range(21):
        world.router.receive(stranger, encode_frame(["notify", doc, "urgent"], b"click me"))
    assert await drain(world) == []
    errors = [h for h, _ in peer.frames if h[0] == "error"]
    assert len(errors) == 21 and {tuple(h[1:2] + h[3:]) for h in errors} == {
        ("not_member", "notify")
    }
    assert not stranger.peer.closed  # type: ignore[attr-defined]
    # Listening to the document (visible presence) relates it; so does a subscription.
    world.router.receive(stranger, encode_frame(["listen", doc]))
    world.router.receive(stranger, encode_frame(["notify", doc, "normal"]))
    assert [p.sub_id for p in await drain(world)] == [bob.sub_id]
    world.router.receive(stranger, encode_frame(["listen"]))
    world.router.receive(stranger, encode_frame(["notify", doc, "normal"]))
    assert await drain(world) == []
    carol = await world.register("did:key:zC", "c", Level.ENGAGED)
    await world.hub.registry.subscribe_doc(Did("did:key:zC"), "c", doc, Level.ENGAGED)
    sender, _ = world.connect("did:key:zC", "c2")
    world.router.receive(sender, encode_frame(["notify", doc, "normal"]))
    assert [p.sub_id for p in await drain(world)] == [bob.sub_id]
    assert carol.sub_id != bob.sub_id
    # A membership check (the space authority), once installed, decides alone:
    # it refuses a related DID and admits a member the router knows nothing of.
    asked: list[tuple[str, str]] = []

    async def members_only(did: Did, doc_id: DocumentId) -> bool:
        asked.append((did, doc_id))
        return did == "did:key:zMember"

    world.hub.may_notify = members_only
    world.router.receive(sender, encode_frame(["notify", doc, "normal"]))
    assert await drain(world) == []
    member, _ = world.connect("did:key:zMember", "m")
    world.router.receive(member, encode_frame(["notify", doc, "normal"]))
    assert sorted(p.sub_id for p in await drain(world)) == sorted([bob.sub_id, carol.sub_id])
    assert asked == [("did:key:zC", doc), ("did:key:zMember", doc)]

"""Web Push sender against the local RFC 8030 push service fixture."""

from __future__ import annotations

import asyncio
import logging
import stat
from pathlib import Path

import pytest

from router.push import (
    PushMessage,
    PushOutcome,
    PushQueue,
    PushSubscription,
    SubscriptionError,
    VapidKey,
    WebPushSender,
    classify,
)
from router.push_queue import PushLimits
from router.urgency import PushUrgency
from tests.notify.dns_server import DnsServer
from tests.notify.helpers import MS, WAIT, within
from tests.notify.push_endpoint import PushEndpoint
from tests.notify.stall_endpoint import StallEndpoint

SUBJECT = "mailto:ops@hearth.test"
BOB, MALLORY = "did:key:zBob", "did:key:zMallory"


def loopback(subscription: object) -> PushSubscription:
    """A subscription whose endpoint is the local fixture (http, loopback)."""
    return PushSubscription.from_json(subscription, allow_insecure=True, allow_private=True)


def test_vapid_key_created_once_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "router" / "vapid.pem"
    first = VapidKey.load_or_create(path, SUBJECT)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = VapidKey.load_or_create(path, SUBJECT)
    assert again.public_key == first.public_key
    assert again.topic("did:key:zA") == first.topic("did:key:zA")
    assert len(first.topic("did:key:zA")) == 32
    assert first.topic("did:key:zA") != first.topic("did:key:zB")
    other = VapidKey.load_or_create(tmp_path / "other.pem", SUBJECT)
    assert other.public_key != first.public_key
    assert other.topic("did:key:zA") != first.topic("did:key:zA")  # unlinkable across routers


def test_subscription_validation() -> None:
    ep = PushEndpoint("unused")
    ep.url = "https://push.test"
    good = ep.device().subscription
    sub = PushSubscription.from_json(good)
    assert sub.origin == "https://push.test"
    assert PushSubscription.from_json(sub.to_json()) == sub
    bad: list[object] = [
        None,
        [],
        {"endpoint": "https://x"},
        {**good, "endpoint": "http://push.test/x"},  # http only when allowed
        {**good, "endpoint": "ftp://push.test/x"},
        {**good, "keys": {"p256dh": good["keys"]["p256dh"], "auth": "AAAA"}},
        {**good, "keys": {"p256dh": "BBBB", "auth": good["keys"]["auth"]}},
        {**good, "keys": {"p256dh": "B" + "A" * 86, "auth": good["keys"]["auth"]}},  # off-curve
        {**good, "keys": {"p256dh": 5, "auth": good["keys"]["auth"]}},
    ]
    for obj in bad:
        with pytest.raises(SubscriptionError):
            PushSubscription.from_json(obj)
    insecure = {**good, "endpoint": "http://127.0.0.1:9/push/x"}
    assert loopback(insecure).origin == "http://127.0.0.1:9"
    # one server is one queue and one circuit, however its endpoints spell it
    for endpoint in ("https://PUSH.test/a", "https://x@push.test:443/b", "https://push.test/c"):
        assert PushSubscription.from_json({**good, "endpoint": endpoint}).server == (
            "https://push.test:443"
        )
    v6 = loopback({**good, "endpoint": "http://[::1]/p"})
    assert v6.server == "http://[::1]:80"


def test_classify() -> None:
    assert classify(201).outcome is PushOutcome.SENT
    assert classify(404).outcome is PushOutcome.GONE
    assert classify(410).outcome is PushOutcome.GONE
    assert classify(429, "7").retry_after == 7.0
    assert classify(503).outcome is PushOutcome.RETRY
    assert classify(500, "soon").retry_after is None
    assert classify(400).outcome is PushOutcome.FAILED
    assert classify(413).outcome is PushOutcome.FAILED


async def test_push_is_encrypted_signed_and_carries_headers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    vapid = VapidKey.load_or_create(tmp_path / "vapid.pem", SUBJECT)
    async with PushEndpoint(vapid.public_key).running() as ep:
        sender = WebPushSender(vapid, allow_private=True)
        try:
            for urgency in PushUrgency:
                dev = ep.device()
                sub = loopback(dev.subscription)
                payload = bytes(range(256)) * 11  # 2816 bytes, binary
                msg = PushMessage(sub, payload, 3600, urgency, vapid.topic("did:key:zAlice"))
                result = await sender.send(msg)
                assert result.outcome is PushOutcome.SENT, ep.refused
                got = await within(ep.received.get())
                assert got.sub_id == dev.sub_id
                assert got.plaintext == payload
                assert (got.ttl, got.urgency) == (3600, urgency.value)
                assert got.topic == vapid.topic("did:key:zAlice")
                assert got.claims["aud"] == ep.url and got.claims["sub"] == SUBJECT
            assert ep.refused == []
        finally:
            await sender.aclose()
    # endpoint URLs are capabilities: never logged (httpx's client would log them)
    for dev in ep.devices.values():
        assert all(dev.sub_id not in r.getMessage() for r in caplog.records)


async def test_endpoint_refuses_a_foreign_vapid_key(tmp_path: Path) -> None:
    ours = VapidKey.load_or_create(tmp_path / "ours.pem", SUBJECT)
    theirs = VapidKey.load_or_create(tmp_path / "theirs.pem", SUBJECT)
    async with PushEndpoint(ours.public_key).running() as ep:
        sender = WebPushSender(theirs, allow_private=True)
        try:
            sub = loopback(ep.device().subscription)
            result = await sender.send(PushMessage(sub, b"x", 60, PushUrgency.LOW))
            assert result.outcome is PushOutcome.FAILED and result.status == 403
            assert ep.refused == ["k is not the router's VAPID key"]
        finally:
            await sender.aclose()


async def test_queue_gone_retry_and_no_head_of_line_blocking(tmp_path: Path) -> None:
    vapid = VapidKey.load_or_create(tmp_path / "vapid.pem", SUBJECT)
    gone: list[PushSubscription] = []

    async def on_gone(sub: PushSubscription) -> None:
        gone.append(sub)

    async with PushEndpoint(vapid.public_key).running() as ep:
        sender = WebPushSender(vapid, allow_private=True)
        # One worker: if a retry blocked the worker, B could not overtake A.
        limits = PushLimits(concurrency=1, retry_base=100 * MS)
        queue = PushQueue(sender, limits, on_gone=on_gone)
        queue.start()
        try:
            a, b, c = ep.device(), ep.device(), ep.device()
            ep.answer(a, 503, 503)
            ep.answer(c, 410)
            subs = [loopback(d.subscription) for d in (a, b, c)]
            for sub, body in zip(subs, (b"to a", b"to b", b"to c"), strict=True):
                assert queue.submit(PushMessage(sub, body, 60, PushUrgency.LOW), "did:key:zBob")
            first = await within(ep.received.get())
            assert (first.sub_id, first.plaintext) == (b.sub_id, b"to b")
            second = await within(ep.received.get())
            assert (second.sub_id, second.plaintext) == (a.sub_id, b"to a")
            await within(queue.idle())
            assert ep.attempts[a.sub_id] == 3
            assert gone == [subs[2]]
            assert (queue.stats.sent, queue.stats.retried, queue.stats.gone) == (2, 2, 1)
            assert ep.received.empty()
        finally:
            await queue.stop()
            await sender.aclose()


async def test_queue_gives_up_and_is_bounded(tmp_path: Path) -> None:
    vapid = VapidKey.load_or_create(tmp_path / "vapid.pem", SUBJECT)
    async with PushEndpoint(vapid.public_key).running() as ep:
        sender = WebPushSender(vapid, allow_private=True)
        limits = PushLimits(concurrency=1, max_attempts=2, retry_base=10 * MS, max_held=2)
        queue = PushQueue(sender, limits)
        try:
            dev = ep.device()
            ep.answer(dev, 429, 503, 503, 503)
            sub = loopback(dev.subscription)
            msg = PushMessage(sub, b"x", 60, PushUrgency.LOW)
            # not started: the queue fills and refuses the third
            assert queue.submit(msg, BOB) and queue.submit(msg, BOB)
            assert not queue.submit(msg, BOB)
            assert queue.stats.dropped == 1 and queue.stats_dropped["queue_full"] == 1
            queue.start()
            await within(queue.idle())
            assert ep.attempts[dev.sub_id] == 4  # two messages x two attempts each
            assert queue.stats.dropped == 3 and queue.stats.sent == 0
            assert queue.stats_dropped["attempts"] == 2
        finally:
            await queue.stop()
            await sender.aclose()


async def test_ttl_clamped(tmp_path: Path) -> None:
    vapid = VapidKey.load_or_create(tmp_path / "vapid.pem", SUBJECT)
    sender = WebPushSender(vapid, allow_private=True)
    try:
        ep = PushEndpoint(vapid.public_key)
        ep.url = "https://push.test"
        sub = PushSubscription.from_json(ep.device().subscription)
        _, headers, body = sender.build_request(PushMessage(sub, b"x", 10**9, PushUrgency.HIGH))
        assert headers["TTL"] == str(28 * 24 * 3600)
        assert "Topic" not in headers and len(body) > 86
    finally:
        await sender.aclose()
    await asyncio.sleep(0)


async def test_dead_origin_trips_its_circuit_and_others_are_served(tmp_path: Path) -> None:
    vapid = VapidKey.load_or_create(tmp_path / "vapid.pem", SUBJECT)
    limits = PushLimits(
        concurrency=4, per_origin=2, timeout=200 * MS, breaker_failures=3, retry_base=10 * MS
    )
    async with (
        PushEndpoint(vapid.public_key).running() as ep,
        StallEndpoint().running() as dead,
    ):
        sender = WebPushSender(vapid, timeout=limits.timeout, allow_private=True)
        queue = PushQueue(sender, limits)
        queue.start()
        try:
            fake = PushEndpoint(vapid.public_key)
            fake.url = dead.url
            for _ in range(20):
                sub = loopback(fake.device().subscription)
                assert queue.submit(PushMessage(sub, b"x", 60, PushUrgency.LOW), MALLORY)
            dev = ep.device()
            sub = loopback(dev.subscription)
            assert queue.submit(PushMessage(sub, b"for bob", 60, PushUrgency.LOW), BOB)
            got = await within(ep.received.get())
            assert (got.sub_id, got.plaintext) == (dev.sub_id, b"for bob")
            await within(queue.idle())
            # three timeouts opened the circuit; everything else to it was dropped
            assert dead.connected <= 4
            assert queue.stats.sent == 1 and queue.stats.dropped == 20
            assert queue.stats_dropped["circuit_open"] >= 17
            sub = loopback(fake.device().subscription)
            assert not queue.submit(PushMessage(sub, b"x", 60, PushUrgency.LOW), MALLORY)
            families = {m.name: m for m in queue.metrics()}
            assert families["hearth_router_push_circuit_trips"].samples[0].value == 1
            assert families["hearth_router_push_circuits_open"].samples[0].value == 1
            dropped = {
                s.labels["reason"]: s.value for s in families["hearth_router_push_dropped"].samples
            }
            assert dropped["circuit_open"] >= 18
        finally:
            await queue.stop()
            await sender.aclose()


async def test_a_huge_answer_is_not_read(tmp_path: Path) -> None:
    """A push service that answers 201 with an endless body: classified, not read to the end."""
    streamed = 0
    done = asyncio.Event()

    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal streamed
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 201 Created\r\nContent-Length: 100000000000\r\n\r\n")
        try:
            while not done.is_set():
                writer.write(b"\0" * 65536)
                streamed += 65536
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    vapid = VapidKey.load_or_create(tmp_path / "vapid.pem", SUBJECT)
    server = await asyncio.start_server(endless, "127.0.0.1", 0)
    sender = WebPushSender(vapid, timeout=20 * WAIT, allow_private=True)
    try:
        ep = PushEndpoint(vapid.public_key)
        ep.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        sub = loopback(ep.device().subscription)
        result = await within(sender.send(PushMessage(sub, b"x", 60, PushUrgency.LOW)))
        assert (result.outcome, result.status) == (PushOutcome.SENT, 201)
        assert streamed < 64 * 1024 * 1024
    finally:
        done.set()
        server.close()
        await sender.aclose()


async def test_names_that_never_resolve_do_not_hold_up_others(tmp_path: Path) -> None:
    """32 endpoint names whose DNS never answers, from 8 DIDs: another name still resolves.

    getaddrinfo on the loop's few default threads would be stuck on them
    (and stay stuck after the attempt's timeout); the push resolver asks
    the configured nameservers itself, without threads.
    """
    vapid = VapidKey.load_or_create(tmp_path / "vapid.pem", SUBJECT)
    dns = DnsServer({"honest.push.test": "127.0.0.1"}, stall_suffixes=(".dead.test",))
    async with dns.running(), PushEndpoint(vapid.public_key).running() as ep:
        limits = PushLimits(timeout=20 * WAIT)
        sender = WebPushSender(
            vapid, timeout=limits.timeout, nameservers=[("127.0.0.1", dns.port)], allow_private=True
        )
        queue = PushQueue(sender, limits)
        queue.start()
        try:
            dead = PushEndpoint(vapid.public_key)
            for k in range(8):
                for i in range(4):
                    dead.url = f"http://d{k}-{i}.dead.test:9"
                    sub = PushSubscription.from_json(
                        dead.device().subscription, allow_insecure=True
                    )
                    assert queue.submit(PushMessage(sub, b"x", 60, PushUrgency.LOW), f"did:{k}")
            await within(dns.wait_queried(32, ".dead.test"))
            ep.url = ep.url.replace("127.0.0.1", "honest.push.test")
            dev = ep.device()
            sub = loopback(dev.subscription)
            assert queue.submit(PushMessage(sub, b"for bob", 60, PushUrgency.LOW), BOB)
            got = await within(ep.received.get())
            assert (got.sub_id, got.plaintext) == (dev.sub_id, b"for bob")
            assert queue.scheduler.in_flight == 32  # all still waiting for their names
        finally:
            await queue.stop()
            await sender.aclose()


async def test_pushes_with_one_topic_to_one_device_collapse_under_pressure(tmp_path: Path) -> None:
    vapid = VapidKey.load_or_create(tmp_path / "vapid.pem", SUBJECT)
    async with PushEndpoint(vapid.public_key).running() as ep:
        sender = WebPushSender(vapid, allow_private=True)
        queue = PushQueue(sender, PushLimits(max_held_per_owner=4))
        try:
            dev, other = ep.device(), ep.device()
            sub, other_sub = (loopback(d.subscription) for d in (dev, other))
            topic = vapid.topic("did:key:zAlice")
            # not started yet: all of these are queued
            assert queue.submit(PushMessage(other_sub, b"3", 60, PushUrgency.LOW, topic), BOB)
            assert queue.submit(PushMessage(sub, b"4", 60, PushUrgency.LOW), BOB)  # no topic
            assert queue.submit(PushMessage(sub, b"1", 60, PushUrgency.NORMAL, topic), BOB)
            assert queue.pending == 3 and queue.stats.collapsed == 0
            # bob holds half his share or more now: the same topic to the same device collapses
            assert queue.submit(PushMessage(sub, b"2", 60, PushUrgency.LOW, topic), BOB)
            assert queue.pending == 3 and queue.stats.collapsed == 1
            queue.start()
            await within(queue.idle())
            got = sorted([ep.received.get_nowait() for _ in range(3)], key=lambda p: p.plaintext)
            assert [(p.sub_id, p.plaintext, p.urgency) for p in got] == [
                (dev.sub_id, b"2", "normal"),  # the newest, at the higher urgency
                (other.sub_id, b"3", "low"),
                (dev.sub_id, b"4", "low"),
            ]
            assert ep.received.empty()
        finally:
            await queue.stop()
            await sender.aclose()

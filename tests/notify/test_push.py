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
from router.urgency import PushUrgency
from tests.notify.helpers import MS, within
from tests.notify.push_endpoint import PushEndpoint

SUBJECT = "mailto:ops@hearth.test"


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
    assert PushSubscription.from_json(insecure, allow_insecure=True).origin == "http://127.0.0.1:9"


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
        sender = WebPushSender(vapid)
        try:
            for urgency in PushUrgency:
                dev = ep.device()
                sub = PushSubscription.from_json(dev.subscription, allow_insecure=True)
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
        sender = WebPushSender(theirs)
        try:
            sub = PushSubscription.from_json(ep.device().subscription, allow_insecure=True)
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
        sender = WebPushSender(vapid)
        # One worker: if a retry blocked the worker, B could not overtake A.
        queue = PushQueue(sender, workers=1, base_delay=100 * MS, on_gone=on_gone)
        queue.start()
        try:
            a, b, c = ep.device(), ep.device(), ep.device()
            ep.answer(a, 503, 503)
            ep.answer(c, 410)
            subs = [
                PushSubscription.from_json(d.subscription, allow_insecure=True) for d in (a, b, c)
            ]
            for sub, body in zip(subs, (b"to a", b"to b", b"to c"), strict=True):
                assert queue.submit(PushMessage(sub, body, 60, PushUrgency.LOW))
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
        sender = WebPushSender(vapid)
        queue = PushQueue(sender, workers=1, max_attempts=2, base_delay=10 * MS, maxsize=2)
        try:
            dev = ep.device()
            ep.answer(dev, 429, 503, 503, 503)
            sub = PushSubscription.from_json(dev.subscription, allow_insecure=True)
            msg = PushMessage(sub, b"x", 60, PushUrgency.LOW)
            # not started: the queue fills and refuses the third
            assert queue.submit(msg) and queue.submit(msg)
            assert not queue.submit(msg)
            assert queue.stats.dropped == 1
            queue.start()
            await within(queue.idle())
            assert ep.attempts[dev.sub_id] == 4  # two messages x two attempts each
            assert queue.stats.dropped == 3 and queue.stats.sent == 0
        finally:
            await queue.stop()
            await sender.aclose()


def test_backoff_is_capped_and_honours_retry_after() -> None:
    queue = PushQueue.__new__(PushQueue)
    queue._base_delay, queue._max_delay = 1.0, 60.0
    for attempt in range(10):
        d = queue.backoff(attempt, None)
        assert 0.5 * min(60.0, 2**attempt) <= d <= min(60.0, 2**attempt)
    assert queue.backoff(0, 5.0) == 5.0
    assert queue.backoff(0, 500.0) == 60.0


async def test_ttl_clamped(tmp_path: Path) -> None:
    vapid = VapidKey.load_or_create(tmp_path / "vapid.pem", SUBJECT)
    sender = WebPushSender(vapid)
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

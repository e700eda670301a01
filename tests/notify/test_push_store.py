"""The push registry contract, run against the SQLite implementation (file and memory)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hearth.types import Did, DocumentId
from router.push import PushSubscription
from router.push_store import PushRegistry, RegistryFull, RegistryLimits, SqlitePushRegistry
from router.urgency import Level
from tests.notify.push_endpoint import PushEndpoint

ALICE, BOB = Did("did:key:zAlice"), Did("did:key:zBob")
DOC = DocumentId("doc-1")


def sub() -> PushSubscription:
    ep = PushEndpoint("unused")
    ep.url = "https://push.test"
    return PushSubscription.from_json(ep.device().subscription)


@pytest.fixture(params=["file", "memory"])
async def reg(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[PushRegistry]:
    path = tmp_path / "push.sqlite3" if request.param == "file" else ":memory:"
    r = await SqlitePushRegistry.open(path, RegistryLimits(devices_per_did=3, docs_per_device=2))
    yield r
    await r.close()


async def test_register_many_to_many(reg: PushRegistry) -> None:
    s1, s2 = sub(), sub()
    await reg.register(ALICE, "phone", s1, Level.ENGAGED)
    await reg.register(ALICE, "laptop", s2, Level.QUIET)
    await reg.register(BOB, "phone", s1, Level.BUSY)  # one device, two DIDs
    got = await reg.registrations(ALICE)
    assert [(r.device, r.subscription, r.level) for r in got] == [
        ("laptop", s2, Level.QUIET),
        ("phone", s1, Level.ENGAGED),
    ]
    assert [r.level for r in await reg.registrations(BOB)] == [Level.BUSY]
    # re-registering replaces the subscription and level
    s3 = sub()
    await reg.register(ALICE, "phone", s3, Level.SILENT)
    assert [(r.subscription, r.level) for r in await reg.registrations(ALICE)][1] == (
        s3,
        Level.SILENT,
    )


async def test_levels_and_unregister(reg: PushRegistry) -> None:
    await reg.register(ALICE, "a", sub(), Level.ENGAGED)
    await reg.register(ALICE, "b", sub(), Level.ENGAGED)
    assert await reg.set_level(ALICE, "a", Level.BUSY) == 1
    assert [r.level for r in await reg.registrations(ALICE)] == [Level.BUSY, Level.ENGAGED]
    assert await reg.set_level(ALICE, None, Level.QUIET) == 2
    assert await reg.set_level(ALICE, "zz", Level.QUIET) == 0
    assert await reg.unregister(ALICE, "a")
    assert not await reg.unregister(ALICE, "a")
    assert [r.device for r in await reg.registrations(ALICE)] == ["b"]


async def test_gone_endpoint_removes_every_registration(reg: PushRegistry) -> None:
    s = sub()
    await reg.register(ALICE, "d", s, Level.ENGAGED)
    await reg.register(BOB, "d", s, Level.ENGAGED)
    await reg.subscribe_doc(BOB, "d", DOC, Level.BUSY)
    await reg.register(BOB, "other", sub(), Level.ENGAGED)
    assert await reg.remove_endpoint(s.endpoint) == 2
    assert await reg.registrations(ALICE) == []
    assert [r.device for r in await reg.registrations(BOB)] == ["other"]
    assert await reg.doc_subscribers(DOC) == []


async def test_doc_subscriptions(reg: PushRegistry) -> None:
    with pytest.raises(KeyError):
        await reg.subscribe_doc(ALICE, "d", DOC, Level.ENGAGED)
    await reg.register(ALICE, "d", sub(), Level.SILENT)
    await reg.register(BOB, "d", sub(), Level.SILENT)
    await reg.subscribe_doc(ALICE, "d", DOC, Level.ENGAGED)
    await reg.subscribe_doc(BOB, "d", DOC, Level.BUSY)
    await reg.subscribe_doc(BOB, "d", DOC, Level.QUIET)  # replaces the level
    got = await reg.doc_subscribers(DOC)
    assert [(r.did, r.level) for r in got] == [(ALICE, Level.ENGAGED), (BOB, Level.QUIET)]
    assert await reg.doc_subscribers(DocumentId("other")) == []
    assert await reg.unsubscribe_doc(ALICE, "d", DOC)
    assert not await reg.unsubscribe_doc(ALICE, "d", DOC)
    await reg.unregister(BOB, "d")
    assert await reg.doc_subscribers(DOC) == []


async def test_limits(reg: PushRegistry) -> None:
    for d in ("a", "b", "c"):
        await reg.register(ALICE, d, sub(), Level.ENGAGED)
    with pytest.raises(RegistryFull):
        await reg.register(ALICE, "d", sub(), Level.ENGAGED)
    await reg.register(ALICE, "a", sub(), Level.QUIET)  # replacing is not a new device
    await reg.subscribe_doc(ALICE, "a", DocumentId("1"), Level.ENGAGED)
    await reg.subscribe_doc(ALICE, "a", DocumentId("2"), Level.ENGAGED)
    await reg.subscribe_doc(ALICE, "a", DocumentId("2"), Level.BUSY)
    with pytest.raises(RegistryFull):
        await reg.subscribe_doc(ALICE, "a", DocumentId("3"), Level.ENGAGED)


async def test_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "push.sqlite3"
    s = sub()
    r = await SqlitePushRegistry.open(path)
    await r.register(ALICE, "d", s, Level.QUIET)
    await r.subscribe_doc(ALICE, "d", DOC, Level.BUSY)
    await r.close()
    r = await SqlitePushRegistry.open(path)
    try:
        assert [(x.subscription, x.level) for x in await r.registrations(ALICE)] == [
            (s, Level.QUIET)
        ]
        assert [x.level for x in await r.doc_subscribers(DOC)] == [Level.BUSY]
    finally:
        await r.close()

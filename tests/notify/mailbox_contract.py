"""The contract every `router.mailbox.Mailbox` implementation passes.

Subclass `MailboxContract` and implement `make(quotas, clock)`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from hearth.types import Did
from router.mailbox import Mail, Mailbox, MsgIdConflict, PutResult, QuotaExceeded, Quotas
from router.urgency import MailUrgency

ALICE, BOB, CAROL = Did("did:key:zAlice"), Did("did:key:zBob"), Did("did:key:zCarol")


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now

    @property
    def ms(self) -> int:
        return int(self.now * 1000)


def mail(
    clock: Clock, msg_id: str, sender: Did = ALICE, recipient: Did = BOB, ttl: int = 60,
    body: bytes | None = None,
) -> Mail:  # fmt: skip
    return Mail(
        sender, recipient, msg_id, clock.ms, clock.ms + ttl * 1000, MailUrgency.NORMAL,
        body if body is not None else msg_id.encode() * 3,
    )  # fmt: skip


class MailboxContract:
    async def make(self, quotas: Quotas, clock: Callable[[], float]) -> Mailbox:
        raise NotImplementedError

    @pytest.fixture
    def clock(self) -> Clock:
        return Clock()

    @pytest.fixture
    async def box(self, clock: Clock) -> AsyncIterator[Mailbox]:
        mb = await self.make(Quotas(per_recipient=5, per_sender=7, share=1.0), clock)
        yield mb
        await mb.close()

    async def test_put_and_pending_in_order(self, box: Mailbox, clock: Clock) -> None:
        for i in range(4):
            assert await box.put(mail(clock, f"m{i}"), {"d1", "d2"}) is PutResult.STORED
        for dev in ("d1", "d2"):
            got = await box.pending(BOB, dev)
            assert [m.msg_id for m in got] == ["m0", "m1", "m2", "m3"]
            assert got[0].body == b"m0m0m0" and got[0].sender == ALICE
            assert got[0].urgency is MailUrgency.NORMAL and got[0].ttl_left(clock.ms) == 60
        assert await box.pending(BOB, "d3") == []
        assert await box.pending(BOB, None) == []
        assert await box.pending(CAROL, "d1") == []
        assert [m.msg_id for m in await box.pending(BOB, "d1", limit=2)] == ["m0", "m1"]
        assert await box.count_pending() == 4

    async def test_dedupe_on_sender_and_msg_id(self, box: Mailbox, clock: Clock) -> None:
        assert await box.put(mail(clock, "x"), {"d1"}) is PutResult.STORED
        assert await box.put(mail(clock, "x", body=b"other"), {"d1"}) is PutResult.DUPLICATE
        assert [m.body for m in await box.pending(BOB, "d1")] == [b"xxx"]
        # another sender may use the same msgId
        assert await box.put(mail(clock, "x", sender=CAROL), {"d1"}) is PutResult.STORED
        assert len(await box.pending(BOB, "d1")) == 2
        # the same sender may not reuse it for another recipient
        with pytest.raises(MsgIdConflict):
            await box.put(mail(clock, "x", recipient=CAROL), {"d1"})
        assert await box.pending(CAROL, "d1") == []

    async def test_per_device_ack(self, box: Mailbox, clock: Clock) -> None:
        m = mail(clock, "a")
        await box.put(m, {"d1", "d2"})
        assert await box.waiting_devices(m) == {"d1", "d2"}
        assert await box.ack(BOB, "d1", "a") == []
        assert await box.pending(BOB, "d1") == []
        assert [x.msg_id for x in await box.pending(BOB, "d2")] == ["a"]
        assert await box.waiting_devices(m) == {"d2"}
        assert await box.ack(BOB, None, "a") == []  # an anonymous connection acks nothing here
        assert await box.ack(CAROL, "d2", "a") == []  # nor does another recipient
        done = await box.ack(BOB, "d2", "a")
        assert [(x.sender, x.msg_id, x.body) for x in done] == [(ALICE, "a", b"")]
        assert await box.pending(BOB, "d2") == []
        assert await box.ack(BOB, "d2", "a") == []  # acks are idempotent
        assert await box.put(m, {"d1"}) is PutResult.ALREADY_DELIVERED
        assert await box.pending(BOB, "d1") == []
        assert await box.count_pending() == 0

    async def test_no_known_device_waits_for_any(self, box: Mailbox, clock: Clock) -> None:
        await box.put(mail(clock, "w"), set())
        assert [x.msg_id for x in await box.pending(BOB, "anything")] == ["w"]
        assert [x.msg_id for x in await box.pending(BOB, None)] == ["w"]
        done = await box.ack(BOB, "dz", "w")
        assert [x.msg_id for x in done] == ["w"]
        assert await box.pending(BOB, None) == []

    async def test_expiry(self, box: Mailbox, clock: Clock) -> None:
        await box.put(mail(clock, "short", ttl=10), {"d1"})
        await box.put(mail(clock, "long", ttl=100), {"d1"})
        await box.put(mail(clock, "acked", ttl=10), {"d1"})
        await box.ack(BOB, "d1", "acked")
        clock.now += 10
        assert [x.msg_id for x in await box.pending(BOB, "d1")] == ["long"]
        expired = await box.expire(clock.ms)
        assert [(x.sender, x.msg_id, x.recipient) for x in expired] == [(ALICE, "short", BOB)]
        assert await box.expire(clock.ms) == []
        # tombstones are gone with the TTL: the ids are free again
        assert await box.put(mail(clock, "acked"), {"d1"}) is PutResult.STORED
        assert await box.put(mail(clock, "short"), {"d1"}) is PutResult.STORED
        assert await box.put(mail(clock, "long"), {"d1"}) is PutResult.DUPLICATE

    async def test_quotas(self, box: Mailbox, clock: Clock) -> None:
        for i in range(5):
            await box.put(mail(clock, f"r{i}"), {"d1"})
        with pytest.raises(QuotaExceeded) as e:
            await box.put(mail(clock, "r5"), {"d1"})
        assert e.value.kind == "recipient"
        assert len(await box.pending(BOB, "d1")) == 5
        await box.put(mail(clock, "c0", recipient=CAROL), {"d1"})
        await box.put(mail(clock, "c1", recipient=CAROL), {"d1"})
        with pytest.raises(QuotaExceeded) as e:
            await box.put(mail(clock, "c2", recipient=CAROL), {"d1"})
        assert e.value.kind == "sender"
        # another sender is not affected by Alice's quota
        assert await box.put(mail(clock, "c2", sender=BOB, recipient=CAROL), {"d1"}) is (
            PutResult.STORED
        )
        # delivery frees the quota
        await box.ack(BOB, "d1", "r0")
        assert await box.put(mail(clock, "r5"), {"d1"}) is PutResult.STORED

    async def test_one_sender_fills_only_its_share(self, clock: Clock) -> None:
        """A flood from Alice leaves room in Bob's mailbox for his friend Carol."""
        quotas = Quotas(per_recipient=8, per_sender=100, share=0.25)
        box = await self.make(quotas, clock)
        try:
            assert await box.put(mail(clock, "a0"), {"d1"}) is PutResult.STORED
            assert await box.put(mail(clock, "a1"), {"d1"}) is PutResult.STORED
            with pytest.raises(QuotaExceeded) as e:
                await box.put(mail(clock, "a2"), {"d1"})
            assert (e.value.kind, e.value.limit, e.value.unit) == ("pair", 2, "mails")
            assert "per sender and recipient (2 mails)" in str(e.value)
            # Alice may still write to others, and Carol to Bob.
            assert await box.put(mail(clock, "a2", recipient=CAROL), {"d1"}) is PutResult.STORED
            assert await box.put(mail(clock, "c0", sender=CAROL), {"d1"}) is PutResult.STORED
            # Delivery gives Alice her share back.
            await box.ack(BOB, "d1", "a0")
            assert await box.put(mail(clock, "a3"), {"d1"}) is PutResult.STORED
        finally:
            await box.close()

    async def test_byte_quotas(self, clock: Clock) -> None:
        quotas = Quotas(
            per_recipient=100, per_sender=100, recipient_bytes=4000, sender_bytes=3000,
            share=0.5,
        )  # fmt: skip
        box = await self.make(quotas, clock)
        kb = b"x" * 1000
        try:
            for i in range(2):
                assert await box.put(mail(clock, f"a{i}", body=kb), {"d"}) is PutResult.STORED
            with pytest.raises(QuotaExceeded) as e:  # Alice's half of Bob's 4000 bytes
                await box.put(mail(clock, "a2", body=b"x"), {"d"})
            assert (e.value.kind, e.value.limit, e.value.unit) == ("pair", 2000, "bytes")
            assert await box.put(mail(clock, "a2", body=kb, recipient=CAROL), {"d"}) is (
                PutResult.STORED
            )
            with pytest.raises(QuotaExceeded) as e:  # Alice's own 3000 bytes
                await box.put(mail(clock, "a3", body=b"x", recipient=CAROL), {"d"})
            assert (e.value.kind, e.value.unit) == ("sender", "bytes")
            for i, sender in enumerate((CAROL, Did("did:key:zDave"))):
                body = kb if i == 0 else kb + b"x"
                result = box.put(mail(clock, f"o{i}", sender=sender, body=body), {"d"})
                if i == 0:
                    assert await result is PutResult.STORED
                else:  # Bob already holds 3000 of his 4000 bytes
                    with pytest.raises(QuotaExceeded) as e:
                        await result
                    assert (e.value.kind, e.value.unit) == ("recipient", "bytes")
            # A delivered mail costs nothing.
            await box.ack(BOB, "d", "a0")
            assert await box.put(mail(clock, "a4", body=kb), {"d"}) is PutResult.STORED
        finally:
            await box.close()

    async def test_devices(self, box: Mailbox) -> None:
        assert await box.devices(BOB) == frozenset()
        await box.add_device(BOB, "d1")
        await box.add_device(BOB, "d1")
        await box.add_device(BOB, "d2")
        await box.add_device(CAROL, "d1")  # one device, several DIDs
        assert await box.devices(BOB) == {"d1", "d2"}
        assert await box.devices(CAROL) == {"d1"}
        # put() without devices uses the recipient's devices known at that moment
        clock = Clock()
        m = mail(clock, "known")
        assert await box.put(m) is PutResult.STORED
        await box.add_device(BOB, "d3")
        assert await box.waiting_devices(m) == {"d1", "d2"}
        assert await box.pending(BOB, "d3") == []

    async def test_receipts_kept_for_offline_senders(self, box: Mailbox, clock: Clock) -> None:
        await box.put_receipt(ALICE, "a", "delivered", clock.ms + 10_000)
        await box.put_receipt(ALICE, "b", "expired", clock.ms + 20_000)
        await box.put_receipt(BOB, "c", "delivered", clock.ms + 10_000)
        assert await box.take_receipts(ALICE) == [("a", "delivered"), ("b", "expired")]
        assert await box.take_receipts(ALICE) == []
        clock.now += 10
        await box.expire(clock.ms)
        assert await box.take_receipts(BOB) == []
        for i in range(10):  # per_sender is 7 in this fixture
            await box.put_receipt(CAROL, f"r{i}", "delivered", clock.ms + 10_000)
        assert [m for m, _ in await box.take_receipts(CAROL)] == [f"r{i}" for i in range(3, 10)]

    async def test_concurrent_operations(self, clock: Clock) -> None:
        box = await self.make(Quotas(per_recipient=150, per_sender=10_000), clock)
        try:
            results = await asyncio.gather(
                *(box.put(mail(clock, f"c{i}", sender=Did(f"did:key:z{i}")), {"d"})
                  for i in range(200)),
                return_exceptions=True,
            )  # fmt: skip
            stored = [r for r in results if r is PutResult.STORED]
            refused = [r for r in results if isinstance(r, QuotaExceeded)]
            assert (len(stored), len(refused)) == (150, 50)
            assert len(await box.pending(BOB, "d")) == 150
            acks = await asyncio.gather(*(box.ack(BOB, "d", f"c{i}") for i in range(200)))
            assert sum(len(a) for a in acks) == 150
            assert await box.count_pending() == 0
        finally:
            await box.close()

"""The contract every `KeyStore` implementation passes.

Use it from a test module::

    class TestMyKeyStore(KeyStoreContract):
        @pytest.fixture
        def open_store(self, tmp_path) -> OpenStore:
            return lambda: MyKeyStore.open(tmp_path / "keys")

`open_store` must open the store over the same backing data on every call,
so the suite can check that what was written survives a close and reopen.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from hearth.types import Did
from keyserver.storage import KeyStore, MasterKeyMismatch, NewKeys, TooManyGenerations

OpenStore = Callable[[], Awaitable[KeyStore]]

ALICE = Did("did:plc:aaaaaaaaaaaaaaaaaaaaaaaa")
BOB = Did("did:web:bob.example.com")


def new_keys(*, sealed: bool = True) -> NewKeys:
    return NewKeys(os.urandom(32), os.urandom(32), os.urandom(104) if sealed else None)


class KeyStoreContract:
    @pytest.fixture
    async def store(self, open_store: OpenStore) -> AsyncIterator[KeyStore]:
        s = await open_store()
        yield s
        await s.close()

    async def test_unknown_did_has_no_keys(self, store: KeyStore) -> None:
        assert await store.get(ALICE) is None

    async def test_create_then_get(self, store: KeyStore) -> None:
        keys = new_keys()
        created = await store.create(ALICE, keys, 1000)
        assert created.did == ALICE
        assert created.previous == ()
        gen = created.current
        assert (gen.number, gen.created_at, gen.valid_until) == (0, 1000, None)
        assert (gen.signing_key, gen.encryption_key, gen.sealed_private) == (
            keys.signing_key,
            keys.encryption_key,
            keys.sealed_private,
        )
        assert await store.get(ALICE) == created
        assert await store.get(BOB) is None

    async def test_create_keeps_the_first_keys(self, store: KeyStore) -> None:
        first = await store.create(ALICE, new_keys(), 1000)
        second = await store.create(ALICE, new_keys(), 2000)
        assert second == first

    async def test_concurrent_creates_store_exactly_one(self, store: KeyStore) -> None:
        candidates = [new_keys() for _ in range(50)]
        results = await asyncio.gather(*(store.create(ALICE, k, 1000) for k in candidates))
        assert len(set(results)) == 1
        winner = results[0]
        assert winner.previous == ()
        assert winner.current.signing_key in {k.signing_key for k in candidates}
        assert await store.get(ALICE) == winner

    async def test_create_without_private_key(self, store: KeyStore) -> None:
        record = await store.create(ALICE, new_keys(sealed=False), 1000)
        assert record.current.sealed_private is None

    async def test_replace_moves_current_to_previous(self, store: KeyStore) -> None:
        k0, k1, k2 = new_keys(), new_keys(), new_keys()
        await store.create(ALICE, k0, 1000)
        await store.replace(ALICE, k1, 2000, erase_private=False, max_generations=10)
        record = await store.replace(ALICE, k2, 3000, erase_private=False, max_generations=10)
        assert record.current.number == 2
        assert record.current.signing_key == k2.signing_key
        assert record.current.valid_until is None
        assert [(g.number, g.created_at, g.valid_until) for g in record.previous] == [
            (1, 2000, 3000),
            (0, 1000, 2000),
        ]
        assert [g.sealed_private for g in record.previous] == [
            k1.sealed_private,
            k0.sealed_private,
        ]
        assert await store.get(ALICE) == record

    async def test_replace_can_erase_every_private_key(self, store: KeyStore) -> None:
        await store.create(ALICE, new_keys(), 1000)
        await store.replace(ALICE, new_keys(), 2000, erase_private=False, max_generations=10)
        owner = new_keys(sealed=False)
        record = await store.replace(ALICE, owner, 3000, erase_private=True, max_generations=10)
        assert record.current.sealed_private is None
        assert record.current.signing_key == owner.signing_key
        assert [g.sealed_private for g in record.previous] == [None, None]
        # Public halves of old generations stay, so old signatures still verify.
        assert all(len(g.signing_key) == 32 for g in record.previous)

    async def test_replace_without_keys_creates_generation_zero(self, store: KeyStore) -> None:
        record = await store.replace(ALICE, new_keys(), 1000, erase_private=True, max_generations=1)
        assert record.current.number == 0
        assert record.previous == ()

    async def test_replace_refuses_past_the_limit(self, store: KeyStore) -> None:
        await store.create(ALICE, new_keys(), 1000)
        before = await store.replace(
            ALICE, new_keys(), 2000, erase_private=False, max_generations=2
        )
        with pytest.raises(TooManyGenerations):
            await store.replace(ALICE, new_keys(), 3000, erase_private=True, max_generations=2)
        assert await store.get(ALICE) == before

    async def test_dids_are_independent(self, store: KeyStore) -> None:
        a = await store.create(ALICE, new_keys(), 1000)
        b = await store.create(BOB, new_keys(), 1000)
        await store.replace(BOB, new_keys(), 2000, erase_private=True, max_generations=10)
        assert await store.get(ALICE) == a
        got_b = await store.get(BOB)
        assert got_b is not None and got_b.previous[0].signing_key == b.current.signing_key

    async def test_master_key_binding(self, store: KeyStore) -> None:
        await store.bind_master_key("f" * 64)
        await store.bind_master_key("f" * 64)
        with pytest.raises(MasterKeyMismatch):
            await store.bind_master_key("e" * 64)

    async def test_everything_survives_reopen(self, open_store: OpenStore) -> None:
        store = await open_store()
        await store.bind_master_key("a" * 64)
        await store.create(ALICE, new_keys(), 1000)
        expected = await store.replace(
            ALICE, new_keys(sealed=False), 2000, erase_private=False, max_generations=10
        )
        await store.close()
        again = await open_store()
        try:
            assert await again.get(ALICE) == expected
            await again.bind_master_key("a" * 64)
            with pytest.raises(MasterKeyMismatch):
                await again.bind_master_key("b" * 64)
        finally:
            await again.close()

    async def test_ping(self, store: KeyStore) -> None:
        await store.ping()

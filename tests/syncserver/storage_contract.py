"""The contract every `syncserver.storage.Storage` implementation passes.

Subclass `StorageContract` and provide a `storage` fixture (and `reopen`, for
stores that persist: a fresh instance over the same data, or None).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import pytest

from hearth.types import ChangeHash, Did
from syncserver.storage import Access, Storage, StorageError, StoredChange
from tests.syncserver.ids import new_document_id

ALICE = Did("did:key:z6MkalicealicealicealicealicealicealiceAAAA")
BOB = Did("did:key:z6MkbobbobbobbobbobbobbobbobbobbobbobbobBBBB")
CAROL = Did("did:plc:abcdefghijklmnopqrstuvwx")


def change(n: int) -> StoredChange:
    chunk = b"\x85\x6f\x4a\x83chunk-%d" % n
    return StoredChange(ChangeHash(hashlib.sha256(chunk).digest()), chunk)


class StorageContract:
    @pytest.fixture
    def reopen(self) -> Callable[[], Storage] | None:
        return None

    def test_storage_id_is_stable(
        self, storage: Storage, reopen: Callable[[], Storage] | None
    ) -> None:
        sid = storage.storage_id()
        assert sid and sid == storage.storage_id()
        if reopen is not None:
            storage.close()
            assert reopen().storage_id() == sid

    def test_unknown_document(self, storage: Storage) -> None:
        doc = new_document_id()
        assert storage.get_access(doc) is None
        assert list(storage.changes(doc)) == []
        assert storage.load_sync_state(doc, "s") is None
        with pytest.raises(StorageError):
            storage.set_access(doc, Access(ALICE))
        with pytest.raises(StorageError):
            storage.commit(doc, [change(1)])
        storage.save_sync_state(doc, "s", b"x")  # ignored
        assert storage.get_access(doc) is None

    def test_commit_creates_with_access_and_keeps_order(self, storage: Storage) -> None:
        doc = new_document_id()
        assert storage.commit(doc, [change(3), change(1)], create=Access(ALICE)) == 2
        assert storage.get_access(doc) == Access(ALICE)
        assert storage.commit(doc, [change(2), change(1)]) == 1
        assert list(storage.changes(doc)) == [change(3), change(1), change(2)]

    def test_create_only_applies_to_missing_documents(self, storage: Storage) -> None:
        doc = new_document_id()
        storage.commit(doc, [change(1)], create=Access(ALICE))
        storage.commit(doc, [change(2)], create=Access(BOB))
        access = storage.get_access(doc)
        assert access is not None and access.owner == ALICE

    def test_changes_are_kept_verbatim_per_document(self, storage: Storage) -> None:
        a, b = new_document_id(), new_document_id()
        big = StoredChange(ChangeHash(b"\x01" * 32), bytes(range(256)) * 4000)
        storage.commit(a, [big], create=Access(ALICE))
        storage.commit(b, [change(1)], create=Access(None))
        assert list(storage.changes(a)) == [big]
        assert list(storage.changes(b)) == [change(1)]

    def test_same_hash_in_two_documents(self, storage: Storage) -> None:
        a, b = new_document_id(), new_document_id()
        assert storage.commit(a, [change(1)], create=Access(ALICE)) == 1
        assert storage.commit(b, [change(1)], create=Access(ALICE)) == 1

    def test_access_round_trip(self, storage: Storage) -> None:
        doc = new_document_id()
        storage.commit(doc, [], create=Access(ALICE))
        access = Access(ALICE, True, frozenset({BOB}), frozenset({CAROL}))
        storage.set_access(doc, access)
        assert storage.get_access(doc) == access

    def test_sync_states(self, storage: Storage) -> None:
        doc = new_document_id()
        storage.commit(doc, [change(1)], create=Access(ALICE), sync_states={"s1": b"\x43\x00"})
        assert storage.load_sync_state(doc, "s1") == b"\x43\x00"
        storage.save_sync_state(doc, "s1", b"new")
        storage.save_sync_state(doc, "s2", b"other")
        assert storage.load_sync_state(doc, "s1") == b"new"
        assert storage.load_sync_state(doc, "s2") == b"other"
        storage.commit(doc, [], sync_states={"s2": b"third"})
        assert storage.load_sync_state(doc, "s2") == b"third"
        assert storage.load_sync_state(new_document_id(), "s1") is None

    def test_tokens(self, storage: Storage) -> None:
        storage.add_token(b"t1", ALICE, 1000.0)
        storage.add_token(b"t2", ALICE, 1000.0)
        storage.add_token(b"t3", BOB, 1000.0)
        assert storage.lookup_token(b"t1", 999.0) == ALICE
        assert storage.lookup_token(b"t1", 1000.0) is None  # expired
        assert storage.lookup_token(b"nope", 0.0) is None
        assert storage.revoke_token(b"t1") == ALICE
        assert storage.lookup_token(b"t1", 0.0) is None
        assert storage.revoke_token(b"nope") is None
        assert storage.revoke_tokens(ALICE) == 1
        assert storage.lookup_token(b"t2", 0.0) is None
        assert storage.lookup_token(b"t3", 0.0) == BOB

    def test_tokens_are_capped_per_did(self, storage: Storage) -> None:
        hashes = [b"a%d" % i for i in range(40)]
        evicted = [
            storage.add_token(h, ALICE, 1000.0 + i, now=0.0, keep=32) for i, h in enumerate(hashes)
        ]
        assert evicted == [0] * 32 + [1] * 8
        assert [storage.lookup_token(h, 0.0) for h in hashes] == [None] * 8 + [ALICE] * 32
        # The same expiry for all: the order they came in decides.
        for i in range(3):
            storage.add_token(b"b%d" % i, BOB, 2000.0, keep=2)
        assert [storage.lookup_token(b"b%d" % i, 0.0) for i in range(3)] == [None, BOB, BOB]
        # Another DID's tokens are untouched; expired and revoked ones of the DID go.
        assert storage.revoke_token(hashes[-1]) == ALICE
        storage.add_token(b"late", ALICE, 5000.0, now=1010.0, keep=32)
        assert storage.revoke_token(hashes[-1]) is None  # deleted, not only revoked
        assert storage.revoke_token(hashes[10]) is None  # expired at 1010
        assert storage.lookup_token(hashes[11], 1010.0) == ALICE
        assert storage.lookup_token(b"late", 1010.0) == ALICE
        assert storage.lookup_token(b"b2", 0.0) == BOB

    def test_expired_tokens_of_identities_that_never_return_are_deleted(
        self, storage: Storage
    ) -> None:
        gone = [b"g%d" % i for i in range(300)]
        for i, h in enumerate(gone):  # 300 DIDs, one token each, expiring at 10
            storage.add_token(h, Did(f"did:web:gone{i}.test"), 10.0, now=0.0, keep=32)
        for i in range(300):  # later, as many new identities
            storage.add_token(b"n%d" % i, Did(f"did:web:new{i}.test"), 1e9, now=20.0, keep=32)
        assert [storage.revoke_token(h) for h in gone] == [None] * len(gone)
        assert storage.lookup_token(b"n0", 20.0) == "did:web:new0.test"

    def test_stats(self, storage: Storage) -> None:
        before = storage.stats()
        doc = new_document_id()
        storage.commit(doc, [change(1), change(2)], create=Access(ALICE))
        storage.commit(doc, [change(2)])
        after = storage.stats()
        assert after.documents == before.documents + 1
        assert after.changes == before.changes + 2
        assert after.change_bytes == before.change_bytes + len(change(1).chunk) * 2

    def test_persists(self, storage: Storage, reopen: Callable[[], Storage] | None) -> None:
        if reopen is None:
            assert storage.stats().documents == 0
            return
        doc = new_document_id()
        access = Access(ALICE, False, frozenset({BOB}))
        storage.commit(doc, [change(1), change(2)], create=access, sync_states={"s": b"st"})
        storage.add_token(b"tok", BOB, 5.0)
        stats = storage.stats()
        storage.close()
        again = reopen()
        try:
            assert again.get_access(doc) == access
            assert list(again.changes(doc)) == [change(1), change(2)]
            assert again.load_sync_state(doc, "s") == b"st"
            assert again.lookup_token(b"tok", 1.0) == BOB
            assert again.stats() == stats
        finally:
            again.close()

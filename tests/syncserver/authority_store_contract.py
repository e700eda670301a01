"""The contract every `syncserver.storage.authority.AuthorityStore` passes.

Subclass `AuthorityStoreContract` and provide a `store` fixture (and `reopen`,
for stores that persist: a fresh instance over the same data, or None).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import pytest

from syncserver.storage.authority import AuthorityStore

SPACE = "a" * 64
OTHER = "b" * 64


def op(n: int) -> tuple[str, bytes]:
    wire = b'{"op":{"n":%d},"sig":"00"}' % n
    return hashlib.sha256(wire).hexdigest(), wire


class AuthorityStoreContract:
    @pytest.fixture
    def reopen(self) -> Callable[[], AuthorityStore] | None:
        return None

    def test_unknown_space_is_empty(self, store: AuthorityStore) -> None:
        assert store.count(SPACE) == 0
        assert store.get_ops(SPACE) == []
        assert store.put_ops(SPACE, []) == 0
        assert store.count(SPACE) == 0

    def test_ops_verbatim_in_order_and_duplicates_skipped(self, store: AuthorityStore) -> None:
        assert store.put_ops(SPACE, [op(3), op(1)]) == 2
        assert store.put_ops(SPACE, [op(1), op(2), op(2)]) == 1
        got = store.get_ops(SPACE)
        assert [(o.id, o.wire) for o in got] == [op(3), op(1), op(2)]
        assert [o.seq for o in got] == sorted(o.seq for o in got)
        assert len({o.seq for o in got}) == 3
        assert store.count(SPACE) == 3

    def test_spaces_are_apart(self, store: AuthorityStore) -> None:
        store.put_ops(SPACE, [op(1)])
        # The same op id in another space is another row.
        assert store.put_ops(OTHER, [op(1), op(2)]) == 2
        assert store.count(SPACE) == 1 and store.count(OTHER) == 2
        assert [o.id for o in store.get_ops(SPACE)] == [op(1)[0]]

    def test_pages_by_sequence(self, store: AuthorityStore) -> None:
        store.put_ops(SPACE, [op(n) for n in range(10)])
        store.put_ops(OTHER, [op(100)])
        store.put_ops(SPACE, [op(n) for n in range(10, 15)])
        seen: list[str] = []
        since = 0
        while True:
            page = store.get_ops(SPACE, since, 4)
            if not page:
                break
            assert len(page) <= 4
            seen += [o.id for o in page]
            since = page[-1].seq
        assert seen == [op(n)[0] for n in range(15)]

    def test_survives_reopen(
        self, store: AuthorityStore, reopen: Callable[[], AuthorityStore] | None
    ) -> None:
        store.put_ops(SPACE, [op(1), op(2)])
        before = store.get_ops(SPACE)
        if reopen is None:
            return
        store.close()
        again = reopen()
        try:
            assert again.get_ops(SPACE) == before
            assert again.put_ops(SPACE, [op(2), op(3)]) == 1
            assert again.get_ops(SPACE)[-1].seq > before[-1].seq
        finally:
            again.close()

    def test_document_bindings_first_one_wins_and_survive_reopen(
        self, store: AuthorityStore, reopen: Callable[[], AuthorityStore] | None
    ) -> None:
        assert store.bindings() == []
        assert store.bind_document("doc-1", SPACE, "did:key:zA") == SPACE
        assert store.bind_document("doc-1", OTHER, "did:key:zB") == SPACE  # no rebinding
        assert store.bind_document("doc-2", OTHER, "did:key:zB") == OTHER
        assert store.bindings() == [("doc-1", SPACE), ("doc-2", OTHER)]
        if reopen is None:
            return
        store.close()
        again = reopen()
        try:
            assert again.bindings() == [("doc-1", SPACE), ("doc-2", OTHER)]
        finally:
            again.close()

    def test_directory_listing_set_unset_and_survives_reopen(
        self, store: AuthorityStore, reopen: Callable[[], AuthorityStore] | None
    ) -> None:
        assert store.listed() == []
        store.set_listed(SPACE, True, "did:key:zA")
        store.set_listed(OTHER, True, "did:key:zB")
        store.set_listed(SPACE, True, "did:key:zA")  # again: changes nothing
        assert store.listed() == [SPACE, OTHER]
        store.set_listed(SPACE, False, "did:key:zA")
        store.set_listed(SPACE, False, "did:key:zA")
        assert store.listed() == [OTHER]
        store.set_listed(SPACE, True, "did:key:zA")
        assert store.listed() == [OTHER, SPACE]
        if reopen is None:
            return
        store.close()
        again = reopen()
        try:
            assert again.listed() == [OTHER, SPACE]
        finally:
            again.close()

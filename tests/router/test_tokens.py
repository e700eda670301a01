"""Router tokens: single use, bound to a DID, and a full store refuses nobody."""

from __future__ import annotations

from hearth.types import Did
from router.tokens import TokenStore

ALICE = Did("did:key:z6MkalicE")


def test_a_token_is_single_use_and_bound_to_its_did() -> None:
    store = TokenStore(ttl=30)
    token = store.issue(ALICE, now=0, address="192.0.2.1")
    assert not store.consume(token, "did:key:z6Mkother", now=1)  # burnt by the wrong DID
    assert not store.consume(token, ALICE, now=1)
    token = store.issue(ALICE, now=0, address="192.0.2.1")
    assert store.consume(token, ALICE, now=1) and not store.consume(token, ALICE, now=1)
    token = store.issue(ALICE, now=0, address="192.0.2.1")
    assert not store.consume(token, ALICE, now=31)  # expired
    assert len(store) == 0 and store.held_by("192.0.2.1") == 0


def test_a_full_store_forgets_the_heaviest_address_first() -> None:
    store = TokenStore(ttl=30, capacity=10)
    mine = store.issue(ALICE, now=0, address="192.0.2.1")
    flood = [store.issue(Did(f"did:key:z6Mkflood{i}"), 0, "198.51.100.7") for i in range(100)]
    assert len(store) == 10 and store.held_by("198.51.100.7") == 9
    # The flood displaced only its own tokens, oldest first.
    assert not store.consume(flood[0], "did:key:z6Mkflood0", now=1)
    assert store.consume(flood[-1], "did:key:z6Mkflood99", now=1)
    assert store.consume(mine, ALICE, now=1)
    # Expiry still works through the survivors.
    store.issue(ALICE, now=40, address="192.0.2.1")
    assert len(store) == 1 and store.held_by("198.51.100.7") == 0

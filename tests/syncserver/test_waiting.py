"""The pending-request table: bounds per peer and in total, and fair sharing when full."""

from __future__ import annotations

from hearth.types import DocumentId
from syncserver.waiting import WaitingRoom


def doc(i: int) -> DocumentId:
    return DocumentId(f"doc-{i}")


def test_per_peer_share_and_idempotent_adds() -> None:
    room: WaitingRoom[str] = WaitingRoom(per_peer=2, total=10)
    assert room.add("a", doc(1)) == (True, None)
    assert room.add("a", doc(1)) == (True, None)
    assert room.add("a", doc(2)) == (True, None)
    assert room.add("a", doc(3)) == (False, None)
    assert len(room) == 2 and room.of("a") == 2 and room.waiting_for(doc(1)) == ["a"]


def test_a_full_table_takes_the_oldest_entry_of_the_biggest_holder() -> None:
    room: WaitingRoom[str] = WaitingRoom(per_peer=5, total=6)
    for i in range(5):
        room.add("hog", doc(i))
    room.add("b", doc(10))
    # Full: "c" takes the hog's oldest entry.
    assert room.add("c", doc(20)) == (True, ("hog", doc(0)))
    assert room.waiting_for(doc(0)) == []
    # Now hog 4, b 1, c 1: b takes from hog again; and so on until all are equal.
    assert room.add("b", doc(11)) == (True, ("hog", doc(1)))
    assert room.add("c", doc(21)) == (True, ("hog", doc(2)))
    assert [room.of(p) for p in ("hog", "b", "c")] == [2, 2, 2]
    # Nobody holds more than the newcomer would: no room.
    assert room.add("b", doc(12)) == (False, None)
    assert len(room) == 6


def test_forgetting_a_peer_frees_its_room() -> None:
    room: WaitingRoom[str] = WaitingRoom(per_peer=3, total=3)
    for i in range(3):
        room.add("a", doc(i))
    room.drop_peer("a")
    assert len(room) == 0 and room.documents() == 0
    for i in range(3):
        assert room.add("b", doc(i)) == (True, None)
    # The largest-holder bookkeeping followed: b (3) is the one to give room.
    assert room.add("c", doc(9)) == (True, ("b", doc(0)))

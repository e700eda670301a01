"""The outgoing budget's decisions, with fake connections: who is shed, in what order."""

from __future__ import annotations

from dataclasses import dataclass, field

from syncserver.outgoing import CLOSE_SERVER_BUSY, OutgoingBudget


@dataclass(eq=False)
class Fake:
    """A connection holding `queued` bytes of its own and `socket` in its transport."""

    name: str
    queued: int = 0
    socket: int = 0
    events: list[str] = field(default_factory=list)

    def buffered_bytes(self) -> int:
        return self.queued + self.socket

    def shed(self, code: int, reason: str) -> None:
        assert code == CLOSE_SERVER_BUSY and "slowest" in reason
        self.events.append("shed")
        self.queued = 0

    def abort(self) -> None:
        self.events.append("abort")
        self.queued = self.socket = 0


def test_under_the_total_nobody_is_shed() -> None:
    budget = OutgoingBudget(100)
    a, b = Fake("a", queued=50), Fake("b", queued=50)
    for conn in (a, b):
        budget.add(conn, 0.0)
        budget.update(conn, 1.0)
    assert budget.total == 100 and not a.events and not b.events


def test_the_longest_stalled_is_shed_first_and_aborted_only_if_needed() -> None:
    budget = OutgoingBudget(100)
    stalled, reading, newcomer = Fake("stalled"), Fake("reading"), Fake("newcomer")
    for conn in (stalled, reading, newcomer):
        budget.add(conn, 0.0)
    stalled.socket = 40
    budget.update(stalled, 1.0)
    reading.socket = 40
    budget.update(reading, 1.0)
    reading.socket = 30  # it drained some: progress at t=5
    budget.update(reading, 5.0)
    # The newcomer's queue takes the total over: the stalled one goes, and since
    # dropping its (empty) queue frees nothing, its transport is aborted too.
    newcomer.queued = 50
    budget.update(newcomer, 6.0)
    assert stalled.events == ["shed", "abort"]
    assert reading.events == [] and newcomer.events == []
    assert budget.total == 80 and budget.shed_count == 1 and budget.aborted_count == 1


def test_dropping_a_queue_is_enough_when_it_frees_the_room() -> None:
    budget = OutgoingBudget(100)
    slow, fast = Fake("slow"), Fake("fast")
    budget.add(slow, 0.0)
    budget.add(fast, 0.0)
    slow.queued, slow.socket = 60, 10
    budget.update(slow, 1.0)
    fast.queued = 50
    budget.update(fast, 2.0)
    # The slow one is closed gracefully: its 10 socket bytes may still carry the close.
    assert slow.events == ["shed"] and fast.events == []
    assert budget.total == 60
    # Next time room is needed, a connection already shed is aborted before anyone else.
    fast.queued = 95
    budget.update(fast, 3.0)
    assert slow.events == ["shed", "abort"] and fast.events == []


def test_a_connection_that_left_stops_counting() -> None:
    budget = OutgoingBudget(100)
    a = Fake("a", queued=70)
    budget.add(a, 0.0)
    budget.update(a, 0.0)
    budget.remove(a)
    b = Fake("b", queued=90)
    budget.add(b, 0.0)
    budget.update(b, 0.0)
    assert budget.total == 90 and len(budget) == 1 and not a.events and not b.events

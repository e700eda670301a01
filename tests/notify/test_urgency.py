"""The anti-urgency rule, for every level x urgency pair."""

from __future__ import annotations

import itertools

import pytest

from router.urgency import Level, MailUrgency, PushUrgency, push_urgency, requested_push_urgency

V, L, N, H = PushUrgency.VERY_LOW, PushUrgency.LOW, PushUrgency.NORMAL, PushUrgency.HIGH
Q, NO, P, U = MailUrgency.QUIET, MailUrgency.NORMAL, MailUrgency.PING, MailUrgency.URGENT

# The table from the issue, written out by hand: (level, urgency) -> header or None.
EXPECTED: dict[tuple[Level, MailUrgency], PushUrgency | None] = {
    (Level.SILENT, Q): None,
    (Level.SILENT, NO): None,
    (Level.SILENT, P): None,
    (Level.SILENT, U): None,
    (Level.QUIET, Q): V,
    (Level.QUIET, NO): L,
    (Level.QUIET, P): L,
    (Level.QUIET, U): L,
    (Level.ENGAGED, Q): V,
    (Level.ENGAGED, NO): L,
    (Level.ENGAGED, P): N,
    (Level.ENGAGED, U): N,
    (Level.BUSY, Q): None,
    (Level.BUSY, NO): None,
    (Level.BUSY, P): N,
    (Level.BUSY, U): N,
}


def test_table_covers_every_pair() -> None:
    assert set(EXPECTED) == set(itertools.product(Level, MailUrgency))


@pytest.mark.parametrize(("level", "urgency"), sorted(EXPECTED, key=str))
def test_every_pair(level: Level, urgency: MailUrgency) -> None:
    assert push_urgency(level, urgency) == EXPECTED[(level, urgency)]


def test_sender_mapping_and_never_above_request() -> None:
    assert [requested_push_urgency(u) for u in MailUrgency] == [V, L, N, H]
    order = list(PushUrgency)
    for level, urgency in itertools.product(Level, MailUrgency):
        got = push_urgency(level, urgency)
        if got is not None:
            assert order.index(got) <= order.index(requested_push_urgency(urgency))
            assert got is not H  # nobody can be woken at `high`: every level caps below


def test_wire_values() -> None:
    assert [u.value for u in MailUrgency] == ["quiet", "normal", "ping", "urgent"]
    assert [x.value for x in Level] == ["silent", "quiet", "engaged", "busy"]
    assert [x.value for x in PushUrgency] == ["very-low", "low", "normal", "high"]

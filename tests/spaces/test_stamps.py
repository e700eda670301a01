"""Proof-of-work stamps (hearth/spaces/stamps.py): binding, cost, time window, parse
fuzz, replay, tickets, and the shared vectors the PWA checks too. Costs stay at
0-6 bits so the whole file runs in about a second."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hearth.spaces.ops import OpId, Rank
from hearth.spaces.stamps import (
    GRACE_MS,
    SKEW_MS,
    WINDOW_MS,
    Purpose,
    ReplayCache,
    Stamp,
    StampError,
    argon2,
    challenge,
    check_first_post,
    log_stamp_reason,
    make_stamp,
    parse_stamp,
    stamp_required,
    tag,
    verify_stamp,
    worth,
)
from hearth.spaces.state import Member, SpaceState
from hearth.types import Did
from tests.spaces import make_stamp_vectors as vectors

ALICE = Did(vectors.ALICE)
BOB = Did(vectors.BOB)
SPACE = vectors.SPACE
OTHER = vectors.OTHER_SPACE
NOW = vectors.NOW
J = Purpose.JOIN


def reason_of(stamp: Stamp | str | None, did: str = ALICE, space: str = SPACE,
              purpose: Purpose = J, bits: int = 2, now: int = NOW) -> str | None:  # fmt: skip
    try:
        verify_stamp(stamp, did, space, purpose, bits, now)
    except StampError as e:
        return e.reason
    return None


@pytest.fixture(scope="module")
def stamp() -> Stamp:
    return make_stamp(ALICE, SPACE, J, 2, NOW, seed=b"\x00" * 8)


def test_vectors_are_current() -> None:
    assert vectors.PATH.read_text() == vectors.text()


def test_vectors_hold() -> None:
    data = json.loads(vectors.PATH.read_text())
    for t in data["tags"]:
        assert tag(t["value"]) == t["tag"]
    for a in data["argon2"]:
        chal = challenge(a["did"], a["space"], Purpose(a["purpose"]), a["window"])
        assert chal.hex() == a["challenge"]
        assert argon2(chal, bytes.fromhex(a["nonce"])).hex() == a["output"]
    for m in data["made"]:
        s = make_stamp(m["did"], m["space"], Purpose(m["purpose"]), m["bits"], m["now"],
                       seed=bytes.fromhex(m["seed"]))  # fmt: skip
        assert s.encode() == m["stamp"]
    for v in data["verify"]:
        got = reason_of(
            v["stamp"], v["did"], v["space"], Purpose(v["purpose"]), v["bits"], v["now"]
        )
        assert got == v["reason"], v["name"]


@pytest.mark.parametrize("bits", [0, 1, 2, 4])
def test_made_stamps_verify(bits: int) -> None:
    for purpose in Purpose:
        s = make_stamp(BOB, SPACE, purpose, bits, NOW)
        assert verify_stamp(s.encode(), BOB, SPACE, purpose, bits, NOW) == (s if bits else None)
        assert parse_stamp(s.encode()) == s


def test_binding_is_checked(stamp: Stamp) -> None:
    assert reason_of(stamp) is None
    assert reason_of(stamp, did=BOB) == "stamp-wrong-did"
    assert reason_of(stamp, space=OTHER) == "stamp-wrong-space"
    assert reason_of(stamp, purpose=Purpose.FIRST_POST) == "stamp-wrong-purpose"
    # tags forged to match: the work itself was done on another binding
    forged = Stamp(J, stamp.window, tag(BOB), stamp.space_tag, stamp.nonce)
    assert reason_of(forged, did=BOB, bits=16) == "stamp-too-cheap"
    moved = Stamp(J, stamp.window + 1, stamp.did_tag, stamp.space_tag, stamp.nonce)
    assert reason_of(moved, bits=16, now=NOW + WINDOW_MS) == "stamp-too-cheap"


def test_window_bounds(stamp: Stamp) -> None:
    start = stamp.window * WINDOW_MS
    assert reason_of(stamp, now=start - SKEW_MS) is None
    assert reason_of(stamp, now=start - SKEW_MS - 1) == "stamp-future"
    assert reason_of(stamp, now=start + WINDOW_MS + GRACE_MS - 1) is None
    assert reason_of(stamp, now=start + WINDOW_MS + GRACE_MS) == "stamp-expired"


def test_too_cheap(stamp: Stamp) -> None:
    have = worth(challenge(ALICE, SPACE, J, stamp.window), stamp.nonce)
    assert have >= 2
    assert reason_of(stamp, bits=have) is None
    with pytest.raises(StampError) as e:
        verify_stamp(stamp, ALICE, SPACE, J, have + 1, NOW)
    assert e.value.reason == "stamp-too-cheap"
    assert f"worth {have} bits, {have + 1} required" in e.value.message


def test_missing_and_free() -> None:
    assert reason_of(None) == "stamp-missing"
    assert reason_of(None, bits=0) is None
    assert reason_of("not a stamp", bits=0) is None  # no cost: nothing is looked at


@given(st.text(max_size=200) | st.from_regex(r"hs1\.[a-z-]{0,12}\.[0-9]{0,18}\.[0-9a-fA-F.]{0,70}"))
@settings(max_examples=500, deadline=None)
def test_parse_fuzz(text: str) -> None:
    try:
        s = parse_stamp(text)
    except StampError as e:
        assert e.reason == "stamp-malformed"
    else:
        assert s.encode() == text  # one meaning, one encoding
    assert reason_of(text, bits=40) in {
        "stamp-malformed", "stamp-wrong-purpose", "stamp-wrong-did", "stamp-wrong-space",
        "stamp-future", "stamp-expired", "stamp-too-cheap",
    }  # fmt: skip


@given(st.one_of(st.none(), st.integers(), st.binary(), st.lists(st.text(max_size=3))))
def test_parse_non_strings(value: object) -> None:
    with pytest.raises(StampError) as e:
        parse_stamp(value)
    assert e.value.reason == "stamp-malformed"


def test_log_refuses_replay(stamp: Stamp) -> None:
    state = SpaceState(space=OpId(SPACE), stamp_join=2)
    used: set[str] = set()
    assert log_stamp_reason(state, ALICE, J, stamp.encode(), NOW, used) is None
    assert log_stamp_reason(state, ALICE, J, stamp.encode(), NOW + 1, used) == "stamp-replayed"
    # a fresh stamp does; another DID cannot use Alice's
    other = make_stamp(ALICE, SPACE, J, 2, NOW, seed=b"\x01" * 8)
    assert log_stamp_reason(state, ALICE, J, other.encode(), NOW, used) is None
    assert log_stamp_reason(state, BOB, J, stamp.encode(), NOW, used) == "stamp-wrong-did"
    assert log_stamp_reason(state, ALICE, J, None, NOW, used) == "stamp-missing"
    assert log_stamp_reason(state, ALICE, J, "hs1.join", NOW, used) == "stamp-malformed"


def test_replay_cache(stamp: Stamp) -> None:
    cache = ReplayCache(capacity=2)
    cache.use(stamp, ALICE, SPACE, NOW)
    with pytest.raises(StampError) as e:
        cache.use(stamp, ALICE, SPACE, NOW + 1)
    assert e.value.reason == "stamp-replayed"
    cache.use(stamp, ALICE, OTHER, NOW)  # other key: a separate entry
    expiry = (stamp.window + 1) * WINDOW_MS + GRACE_MS
    cache.use(stamp, ALICE, SPACE, expiry)  # expired entries no longer count
    for i in range(5):
        cache.use(Stamp(J, i, "0" * 16, "0" * 16, bytes(16)), ALICE, SPACE, NOW)
    assert len(cache) == 2
    with pytest.raises(ValueError):
        ReplayCache(capacity=0)


def test_tickets_skip_first_post_stamps() -> None:
    carol, dave = Did("did:key:carol"), Did("did:key:dave")
    state = SpaceState(space=OpId(SPACE), stamp_join=4, stamp_first_post=3)
    state.members[ALICE] = Member(Rank.OWNER, True)
    state.members[BOB] = Member(Rank.MEMBER, True)  # approved with a ticket
    state.members[carol] = Member(Rank.MEMBER, False)
    assert stamp_required(state, BOB, Purpose.FIRST_POST) == 0
    assert stamp_required(state, ALICE, Purpose.FIRST_POST) == 0
    assert stamp_required(state, carol, Purpose.FIRST_POST) == 3
    assert stamp_required(state, dave, Purpose.FIRST_POST) == 3
    assert stamp_required(state, dave, J) == 4
    used: set[str] = set()
    assert log_stamp_reason(state, BOB, Purpose.FIRST_POST, None, NOW, used) is None
    assert log_stamp_reason(state, carol, Purpose.FIRST_POST, None, NOW, used) == "stamp-missing"
    state.stamp_first_post = 0
    assert stamp_required(state, carol, Purpose.FIRST_POST) == 0


def test_make_stamp_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        make_stamp(ALICE, SPACE, J, 65, NOW)
    with pytest.raises(ValueError):
        make_stamp(ALICE, SPACE, J, 1, NOW, seed=b"short")
    tries: list[int] = []

    def give_up(n: int) -> None:
        tries.append(n)
        if n >= 3:
            raise TimeoutError

    with pytest.raises(TimeoutError):
        make_stamp(ALICE, SPACE, J, 64, NOW, on_attempt=give_up)
    assert tries == [1, 2, 3]


def test_first_post_check() -> None:
    state = SpaceState(space=OpId(SPACE), stamp_first_post=2)
    state.members[ALICE] = Member(Rank.MEMBER, False)
    state.members[BOB] = Member(Rank.MEMBER, True)
    cache = ReplayCache()
    check_first_post(state, BOB, None, NOW, cache)  # ticket: no stamp needed
    with pytest.raises(StampError) as e:
        check_first_post(state, ALICE, None, NOW, cache)
    assert e.value.reason == "stamp-missing"
    s = make_stamp(ALICE, SPACE, Purpose.FIRST_POST, 2, NOW).encode()
    with pytest.raises(StampError) as e:
        check_first_post(state, ALICE, make_stamp(ALICE, SPACE, J, 2, NOW).encode(), NOW, cache)
    assert e.value.reason == "stamp-wrong-purpose"
    check_first_post(state, ALICE, s, NOW, cache)
    with pytest.raises(StampError) as e:
        check_first_post(state, ALICE, s, NOW + 1, cache)
    assert e.value.reason == "stamp-replayed"

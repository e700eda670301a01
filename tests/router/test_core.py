"""The routing rules on in-memory peers (no sockets): Roomy v0 semantics and limits."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hearth.types import Did
from router.core import Connection, Router
from router.frames import decode_frame, encode_frame
from router.limits import Limits, TokenBucket
from router.messages import CLIENT_MESSAGES, MessageError


@dataclass
class MemPeer:
    frames: list[tuple[list[Any], bytes]] = field(default_factory=list)
    closed: tuple[int, str] | None = None

    def write(self, frame: bytes) -> None:
        header, body = decode_frame(frame)
        self.frames.append((header, bytes(body)))

    def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)

    def take(self) -> list[list[Any]]:
        out = [h for h, _ in self.frames]
        self.frames.clear()
        return out


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(limits: Limits | None = None) -> tuple[Router, Clock]:
    clock = Clock()
    return Router(limits or Limits(), clock=clock), clock


def join(router: Router, did: str) -> tuple[Connection, MemPeer]:
    peer = MemPeer()
    conn = router.connect(Did(did), peer)
    welcome = peer.take()
    assert welcome[0][:3] == ["welcome", did, conn.conn_id]
    return conn, peer


def listen(router: Router, conn: Connection, *docs: str) -> None:
    router.receive(conn, encode_frame(["listen", *docs]))


def test_joins_both_ways_in_roomy_order() -> None:
    router, _ = make()
    a, pa = join(router, "did:key:za")
    b, pb = join(router, "did:key:zb")
    c, pc = join(router, "did:key:zc")
    listen(router, a, "d1", "d2")
    listen(router, b, "d1")
    assert pa.take() == [["join", "did:key:zb", b.conn_id, "d1"]]
    assert pb.take() == [["join", "did:key:za", a.conn_id, "d1"]]
    listen(router, c, "d2", "d1")  # order of the listen decides the order of joins
    assert pa.take() == [
        ["join", "did:key:zc", c.conn_id, "d2"],
        ["join", "did:key:zc", c.conn_id, "d1"],
    ]
    assert pb.take() == [["join", "did:key:zc", c.conn_id, "d1"]]
    assert pc.take() == [
        ["join", "did:key:za", a.conn_id, "d2"],
        ["join", "did:key:za", a.conn_id, "d1"],
        ["join", "did:key:zb", b.conn_id, "d1"],
    ]


def test_identical_listen_sends_nothing_and_removal_sends_leave() -> None:
    router, _ = make()
    a, pa = join(router, "did:key:za")
    b, pb = join(router, "did:key:zb")
    listen(router, a, "d1", "d2")
    listen(router, b, "d1", "d2")
    pa.take(), pb.take()
    listen(router, b, "d1", "d2")
    listen(router, b, "d2", "d1", "d1")  # same set, other order, duplicates
    assert pa.take() == [] and pb.take() == []
    listen(router, b, "d2")
    assert pa.take() == [["leave", "did:key:zb", b.conn_id, "d1"]]
    assert pb.take() == []  # never a leave (or join) about a doc it no longer listens to
    listen(router, b)
    assert pa.take() == [["leave", "did:key:zb", b.conn_id, "d2"]]
    assert b.interests == {}
    assert set(router.docs) == {"d1", "d2"}


def test_close_sends_leave_for_every_interest_and_leaves_no_trace() -> None:
    router, _ = make()
    a, pa = join(router, "did:key:za")
    b, pb = join(router, "did:key:zb")
    listen(router, a, "d1", "d2", "d3")
    listen(router, b, "d1", "d2")
    pa.take()
    router.disconnect(b)
    assert pa.take() == [
        ["leave", "did:key:zb", b.conn_id, "d1"],
        ["leave", "did:key:zb", b.conn_id, "d2"],
    ]
    router.disconnect(b)  # idempotent
    router.disconnect(a)
    assert router.connections == {} and router.by_did == {} and router.docs == {}


def test_send_routing() -> None:
    router, _ = make()
    a, pa = join(router, "did:key:za")
    b, pb = join(router, "did:key:zb")
    b2, pb2 = join(router, "did:key:zb")
    # No shared doc needed: routing is by connId + DID (Roomy rule 7).
    router.receive(a, encode_frame(["send", "did:key:zb", b.conn_id, "doc"], b"\x00body"))
    assert pb.frames == [(["send", "did:key:za", a.conn_id, "doc"], b"\x00body")]
    assert pb2.frames == [] and pa.frames == []
    router.receive(a, encode_frame(["send", "did:key:zc", b.conn_id, "doc"], b"x"))
    router.receive(a, encode_frame(["send", "did:key:zb", "01NOPE", "doc"], b"x"))
    router.receive(a, encode_frame(["send", "did:key:za", a.conn_id, "doc"], b"x"))
    assert [h[:2] + h[3:] for h in pa.take()] == [
        ["error", "not_found", "send"],
        ["error", "not_found", "send"],
        ["error", "to_self", "send"],
    ]
    assert len(pb.frames) == 1 and pb2.frames == []
    assert router.stats.relayed_frames == 1 and router.stats.relayed_bytes == 5


@pytest.mark.parametrize(
    ("frame", "code", "verb"),
    [
        (b"\x01", "short_frame", ""),
        (b"\x10\x00\x00\x00[]", "bad_length", ""),
        (b"\x02\x00\x00\x00no", "bad_header", ""),
        (encode_frame([1, 2]), "bad_type", ""),
        (encode_frame(["teleport"]), "unknown_verb", "teleport"),
        (encode_frame(["send", "a", "b"]), "bad_arity", "send"),
        (encode_frame(["send", "a", "b", "c", "d"]), "bad_arity", "send"),
        (encode_frame(["send", "a", 1, "c"]), "bad_type", "send"),
        (encode_frame(["send", "a", "", "c"]), "bad_type", "send"),
        (encode_frame(["listen", "d", None]), "bad_type", "listen"),
        (encode_frame(["listen", "x" * 5000]), "bad_type", "listen"),
    ],
)
def test_bad_frames_get_error_and_connection_stays_usable(
    frame: bytes, code: str, verb: str
) -> None:
    router, _ = make()
    a, pa = join(router, "did:key:za")
    b, pb = join(router, "did:key:zb")
    router.receive(a, frame)
    (header,) = pa.take()
    assert header[0] == "error" and header[1] == code and header[3] == verb
    assert isinstance(header[2], str) and header[2]
    router.receive(a, encode_frame(["send", b.did, b.conn_id, "d"], b"ok"))
    assert pb.take() == [["send", a.did, a.conn_id, "d"]]


def test_interest_limit() -> None:
    router, _ = make(Limits(max_interests=3))
    a, pa = join(router, "did:key:za")
    listen(router, a, "1", "2", "3")
    listen(router, a, "1", "2", "3", "4")
    assert [h[:2] for h in pa.take()] == [["error", "too_many_interests"]]
    assert list(a.interests) == ["1", "2", "3"]  # the refused listen changed nothing


def test_rate_limits_and_abuse_close() -> None:
    limits = Limits(rate_frames=10, burst_frames=5, max_errors=3, error_rate=0.001)
    router, clock = make(limits)
    a, pa = join(router, "did:key:za")
    for _ in range(5):
        listen(router, a, "d")
    assert pa.take() == []
    listen(router, a, "d")
    assert [h[:2] for h in pa.take()] == [["error", "rate_limited"]]
    clock.now += 0.5  # 5 frames of credit again
    for _ in range(5):
        listen(router, a, "d")
    assert pa.take() == [] and pa.closed is None
    clock.now += 1
    for _ in range(2):  # with the rate_limited error above: 3 errors, the burst
        router.receive(a, b"x")
    assert pa.closed is None
    router.receive(a, b"x")
    assert pa.closed is not None and pa.closed[0] == 1008


def test_byte_rate_limit() -> None:
    router, clock = make(Limits(rate_bytes=100, burst_bytes=200))
    a, pa = join(router, "did:key:za")
    b, pb = join(router, "did:key:zb")
    big = encode_frame(["send", b.did, b.conn_id, "d"], b"x" * 60)
    router.receive(a, big)
    router.receive(a, big)
    assert len(pb.take()) == 1
    assert [h[:2] for h in pa.take()] == [["error", "rate_limited"]]
    clock.now += 1
    router.receive(a, big)
    assert len(pb.take()) == 1


def test_not_found_errors_do_not_count_as_abuse() -> None:
    router, _ = make(Limits(max_errors=2, error_rate=0.001))
    a, pa = join(router, "did:key:za")
    for _ in range(10):
        router.receive(a, encode_frame(["send", "did:key:zb", "01GONE", "d"], b""))
    assert pa.closed is None


def test_oversize_reports_error() -> None:
    router, _ = make(Limits(max_frame_bytes=10))
    a, pa = join(router, "did:key:za")
    router.oversize(a)
    assert [h[:2] for h in pa.take()] == [["error", "too_large"]]


def test_connections_per_did() -> None:
    router, _ = make(Limits(max_connections_per_did=2))
    join(router, "did:key:za")
    c2, _ = join(router, "did:key:za")
    assert not router.can_connect("did:key:za")
    assert router.can_connect("did:key:zb")
    router.disconnect(c2)
    assert router.can_connect("did:key:za")


def test_token_bucket() -> None:
    bucket = TokenBucket(rate=2, burst=4, now=0)
    assert all(bucket.take(1, 0) for _ in range(4))
    assert not bucket.take(1, 0)
    assert bucket.take(1, 0.5) and not bucket.take(1, 0.5)
    assert bucket.take(4, 100) and not bucket.take(1, 100)  # never above burst


def test_a_new_verb_plugs_in_with_its_own_rate() -> None:
    """How `signal` and friends will be added: a message type, a parser, a handler."""

    @dataclass(frozen=True, slots=True)
    class Ping:
        VERB: ClassVar[str] = "ping"
        note: str

        @classmethod
        def from_header(cls, header: list[Any]) -> Ping:
            if len(header) != 2 or not isinstance(header[1], str):
                raise MessageError("bad_arity", "ping takes one string", "ping")
            return cls(header[1])

    router, _ = make()
    a, pa = join(router, "did:key:za")
    seen: list[tuple[str, bytes]] = []
    CLIENT_MESSAGES["ping"] = Ping.from_header
    try:
        router.register(
            Ping, lambda conn, msg, body: seen.append((msg.note, bytes(body))), rate=(1, 2)
        )
        for _ in range(3):
            router.receive(a, encode_frame(["ping", "n"], b"B"))
    finally:
        del CLIENT_MESSAGES["ping"]
    assert seen == [("n", b"B"), ("n", b"B")]
    assert [h[:2] for h in pa.take()] == [["error", "rate_limited"]]


def test_listen_has_its_own_rate() -> None:
    # Each listen of a doc with N members costs ~2N frames, so listen has a bucket
    # far below the connection's frame bucket; a flood is refused, not fanned out.
    router, clock = make(Limits(rate_listen=2, burst_listen=4))
    members = [join(router, f"did:key:zm{i}") for i in range(10)]
    for conn, _ in members:
        listen(router, conn, "d")
    for _, peer in members:
        peer.take()
    a, pa = join(router, "did:key:za")
    for i in range(100):  # join, leave, join, leave...
        if i % 2:
            listen(router, a, "d")
        else:
            listen(router, a)
    fanned = sum(len(peer.take()) for _, peer in members)
    assert fanned == 3 * 10  # the 4 listens allowed: 3 state changes (none/d/none/d)
    frames = pa.take()
    joins = [h for h in frames if h[0] == "join"]
    refused = [h for h in frames if h[0] == "error"]
    assert len(joins) == 2 * 10
    assert {tuple(h[:2]) + (h[3],) for h in refused} == {("error", "rate_limited", "listen")}
    # abusive: 96 refusals against the default error burst of 50 closed it
    assert pa.closed is not None and pa.closed[0] == 1008


def test_listen_rate_refills_and_leaves_send_alone() -> None:
    router, clock = make(Limits(rate_listen=1, burst_listen=2))
    a, pa = join(router, "did:key:za")
    b, pb = join(router, "did:key:zb")
    listen(router, a, "1")
    listen(router, a, "2")
    listen(router, a, "3")
    assert [h[:4] for h in pa.take()] == [
        ["error", "rate_limited", "too many listen frames per second", "listen"]
    ]
    assert list(a.interests) == ["2"]  # the refused listen changed nothing
    router.receive(a, encode_frame(["send", b.did, b.conn_id, "2"], b"x"))
    assert pb.take() == [["send", a.did, a.conn_id, "2"]]
    clock.now += 1.0
    listen(router, a, "3")
    assert pa.take() == [] and list(a.interests) == ["3"]


class FailingPeer(MemPeer):
    """A peer whose writes fail for frames naming `poison` (as a failing encoder would)."""

    def __init__(self, poison: str) -> None:
        super().__init__()
        self.poison = poison

    def write(self, frame: bytes) -> None:
        if self.poison.encode() in frame:
            raise RuntimeError("write failed")
        super().write(frame)


def assert_no_trace(router: Router, conn: Connection) -> None:
    assert conn.conn_id not in router.connections
    assert conn.did not in router.by_did or conn.conn_id not in router.by_did[conn.did]
    assert all(conn.conn_id not in members for members in router.docs.values())


def test_cleanup_is_complete_after_a_handler_failed_midway() -> None:
    router, _ = make()
    pa = FailingPeer("d2")
    a = router.connect(Did("did:key:za"), pa)
    b, pb = join(router, "did:key:zb")
    listen(router, a, "d1", "d2", "d3")
    listen(router, b, "d1")
    pa.take(), pb.take()
    c, _pc = join(router, "did:key:zc")
    # a's peer fails when told that c joined d2: the handler raises midway.
    with pytest.raises(RuntimeError):
        listen(router, c, "d1", "d2", "d3")
    # Closing c fails again when telling a about d2; d1 and d3 are still told.
    router.disconnect(c)
    assert_no_trace(router, c)
    assert ["leave", "did:key:zc", c.conn_id, "d3"] in pa.take()
    assert pb.take()[-1] == ["leave", "did:key:zc", c.conn_id, "d1"]
    pa.poison = "nothing"
    d, pd = join(router, "did:key:zd")
    listen(router, d, "d1", "d2", "d3")  # later listeners hear of no ghost
    assert {h[1] for h in pd.take()} == {"did:key:za", "did:key:zb"}
    for conn in (a, b, d):
        router.disconnect(conn)
    assert router.docs == {} and router.connections == {} and router.by_did == {}


def test_removing_interests_fails_midway_without_ghosts() -> None:
    router, _ = make()
    pa = FailingPeer("nothing")
    a = router.connect(Did("did:key:za"), pa)
    b, _pb = join(router, "did:key:zb")
    listen(router, a, "d1", "d2")
    listen(router, b, "d1", "d2")
    pa.poison = "d1"
    with pytest.raises(RuntimeError):
        listen(router, b, "d3")  # telling a that b left d1 fails
    assert set(router.docs["d3"]) == {b.conn_id}
    assert b.conn_id not in router.docs["d1"] and b.conn_id not in router.docs["d2"]
    router.disconnect(b)
    assert_no_trace(router, b)


class FlakyPeer(MemPeer):
    """Fails the writes `fail` says to, as a buggy encoder or peer would."""

    def __init__(self, fail: list[bool]) -> None:
        super().__init__()
        self.fail = fail

    def write(self, frame: bytes) -> None:
        if self.fail and self.fail.pop():
            raise RuntimeError("write failed")
        super().write(frame)


def check_consistent(router: Router) -> None:
    for doc, members in router.docs.items():
        assert members, doc
        for conn_id, conn in members.items():
            assert conn.open and router.connections[conn_id] is conn
            assert doc in conn.interests
    for conn in router.connections.values():
        assert router.by_did[conn.did][conn.conn_id] is conn
        for doc in conn.interests:
            assert router.docs[doc][conn.conn_id] is conn
    assert sum(len(c) for c in router.by_did.values()) == len(router.connections)
    assert all(router.by_did.values())


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 3),
            st.one_of(st.none(), st.lists(st.sampled_from("abcd"), max_size=4)),
        ),
        max_size=30,
    ),
    st.lists(st.booleans(), max_size=60),
)
def test_failures_anywhere_never_leave_ghosts(
    ops: list[tuple[int, list[str] | None]], fail: list[bool]
) -> None:
    # Any listen or close may fail while peers are told (a write raising):
    # state stays consistent and closing removes every trace.
    router, _ = make()
    conns: dict[int, Connection] = {}
    for who, docs in ops:
        conn = conns.get(who)
        if conn is None or not conn.open:
            try:
                conn = conns[who] = router.connect(Did(f"did:key:z{who}"), FlakyPeer(fail))
            except RuntimeError:  # its welcome failed: nothing of it is left
                check_consistent(router)
                continue
        if docs is None:
            router.disconnect(conn)
        else:
            try:
                listen(router, conn, *docs)
            except RuntimeError:
                router.disconnect(conn, "internal_error")  # what the server does
        check_consistent(router)
    for conn in conns.values():
        router.disconnect(conn)
    assert router.docs == {} and router.connections == {} and router.by_did == {}

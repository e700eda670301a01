"""AuthorityLog, the wire boundary: refusals with precise reasons, limits, ops that
wait for their parents, key lookup for DIDs other than did:key."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from hearth.base58 import b58decode, b58encode
from hearth.jwt import Signer
from hearth.keys import KeyType, PublicKey
from hearth.spaces import AuthorityLog, LogLimits, OpError, OpId, Resolver, sign_op
from hearth.spaces.ops import Join, JoinPolicy, Op, SetDescription, SignedOp, encode_signed
from hearth.spaces.signing import keys_for
from hearth.types import Did
from tests.spaces.world import Space, person, seed_for

alice, bob, carol = person("alice"), person("bob"), person("carol")
JOIN = Join(None, None, None)


def history() -> Space:
    s = Space(alice, JoinPolicy.OPEN)
    s.write(bob, JOIN)
    s.write(carol, JOIN)
    s.write(alice, SetDescription("d"))
    return s


def refusal(log: AuthorityLog, data: bytes) -> str:
    with pytest.raises(OpError) as e:
        log.add(data)
    return e.value.reason


def test_a_log_fed_the_same_ops_reaches_the_same_state() -> None:
    s = history()
    log = AuthorityLog(s.id)
    for w in reversed(s.wires):
        log.add(w)
    assert log.state.to_json() == s.log.state.to_json()
    assert log.heads == s.log.heads and len(log) == 4
    assert sorted(log) == sorted(s.wires)


def test_bad_signature_wrong_space_and_duplicates() -> None:
    s = history()
    log = AuthorityLog(s.id)
    for w in s.wires:
        log.add(w)
    op = s.ops[-1]
    forged = encode_signed(op.op, bytes(64))
    assert log.add(forged) == op.id  # a known op id: the same op, nothing rechecked
    fresh = AuthorityLog(s.id)
    fresh.add(s.wires[0])
    forged_new = encode_signed(s.ops[1].op, bytes(64))
    assert refusal(fresh, forged_new) == "bad-signature"
    assert fresh.refused[s.ops[1].id].reason == "bad-signature"
    other = Space(alice, nonce="elsewhere")
    assert refusal(log, other.wires[0]) == "wrong-space"
    assert refusal(log, other.write(alice, SetDescription("x")).wire) == "wrong-space"
    assert refusal(log, b"nonsense") == "not-json"
    assert any(k.startswith("sha256:") for k in log.refused)


def test_ops_wait_for_missing_parents_and_are_resolved_when_they_come() -> None:
    s = history()
    log = AuthorityLog(s.id)
    log.add(s.wires[0])
    log.add(s.wires[3])
    assert log.missing() == {s.ops[2].id}
    assert log.pending == {s.ops[3].id}
    assert log.state.rejected[s.ops[3].id] == "unknown-parent"
    log.add(s.wires[2])
    assert log.missing() == {s.ops[1].id}
    log.add(s.wires[1])
    assert not log.missing() and not log.pending and not log.state.rejected
    assert log.state.description == "d"


def test_limits() -> None:
    s = history()
    log = AuthorityLog(s.id, limits=LogLimits(max_ops=2, max_refused=2))
    log.add(s.wires[0])
    log.add(s.wires[1])
    assert refusal(log, s.wires[2]) == "log-full"
    for junk in (b"1", b"2", b"3"):
        refusal(log, junk)
    assert len(log.refused) == 2

    log = AuthorityLog(s.id, limits=LogLimits(max_pending=1))
    log.add(s.wires[2])  # waits for its parent
    log.add(s.wires[3])  # its parent is here (itself waiting): welcome
    assert refusal(log, s.wires[1]) == "too-many-pending"
    log.add(s.wires[0])
    log.add(s.wires[1])  # now its parent is here
    assert not log.pending and log.state.description == "d"

    log = AuthorityLog(s.id, limits=LogLimits(max_op_bytes=100, max_parents=0))
    assert refusal(log, s.wires[0]) == "too-large"
    log = AuthorityLog(s.id, limits=LogLimits(max_parents=0))
    log.add(s.wires[0])
    assert refusal(log, s.wires[1]) == "too-many-parents"


def test_other_dids_sign_with_the_keys_the_lookup_names() -> None:
    plc = Did("did:plc:" + "a" * 24)
    key = Signer.from_ed25519_seed(seed_for("plc-key"))
    p256 = Signer.generate(KeyType.P256)
    s = Space(alice)
    op = sign_op(Op(s.id, plc, (s.id,), s.clock + 1, JOIN), key)

    def lookup(keys: Sequence[PublicKey]) -> AuthorityLog:
        log = AuthorityLog(s.id, lookup=lambda did: keys if did == plc else ())
        log.add(s.wires[0])
        return log

    assert refusal(lookup([]), op.wire) == "unknown-key"
    assert refusal(lookup([p256.public_key]), op.wire) == "unknown-key"
    other = Signer.from_ed25519_seed(seed_for("other"))
    assert refusal(lookup([other.public_key]), op.wire) == "bad-signature"
    log = lookup([other.public_key, key.public_key])  # e.g. current and previous keys
    log.add(op.wire)
    assert log.state.is_member(plc)


def test_extending_the_log_continues_the_walk() -> None:
    """The usual case - each op follows all heads - never re-runs the walk (the cost the
    docs promise); a concurrent op does, once."""
    s = history()
    r = Resolver(s.id)
    r.add(s.ops[0].id, s.ops[0].op)
    r.state  # noqa: B018
    walk = r._walk
    for op in s.ops[1:]:
        r.add(op.id, op.op)
        assert r._walk is walk
    assert r.state.description == "d"
    branch: SignedOp = sign_op(
        Op(s.id, bob.did, (s.ops[1].id,), s.clock + 5, SetDescription("x")), bob.signer
    )
    r.add(branch.id, branch.op)
    assert r._walk is None
    assert r.state.rejected == {branch.id: "rank"}
    assert r.heads == sorted([OpId(s.ops[-1].id), branch.id])


def test_a_did_key_counts_only_in_its_canonical_spelling() -> None:
    canonical_did = Did(alice.did)
    raw = b58decode(canonical_did[len("did:key:z") :])
    assert raw[:2] == b"\xed\x01"
    longer = Did("did:key:z" + b58encode(b"\xed\x81\x00" + raw[2:]))  # a 3-byte varint
    assert len(keys_for(canonical_did)) == 1
    assert keys_for(longer) == ()
    s = Space(alice)
    op = sign_op(Op(s.id, longer, (s.id,), s.clock + 1, JOIN), alice.signer)
    log = AuthorityLog(s.id)
    log.add(s.wires[0])
    assert refusal(log, op.wire) == "unknown-key"


def test_since_gives_what_a_peer_lacks_parents_first() -> None:
    s = history()
    log = AuthorityLog(s.id)
    for w in reversed(s.wires):
        log.add(w)
    assert log.since([s.ops[-1].id]) == []
    assert log.since([s.ops[1].id]) == [s.wires[2], s.wires[3]]
    assert log.since(["ff" * 32]) == s.wires  # an unknown head: everything, in causal order
    peer = AuthorityLog(s.id)
    for w in log.since([]):
        peer.add(w)
        assert not peer.pending  # parents always came first
    assert peer.state.to_json() == log.state.to_json()

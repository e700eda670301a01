"""The wire boundary: canonical JSON, every op kind's round trip, precise refusals,
and fuzzing `parse_op` with random bytes, random JSON and mutated ops."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hearth.spaces import OpError, canonical, parse_op, sign_op, verify_op
from hearth.spaces.encoding import Json, actor_for, parse_canonical
from hearth.spaces.ops import (
    Approve,
    Ban,
    BindActor,
    Body,
    Create,
    Deny,
    Invite,
    Join,
    JoinPolicy,
    Kick,
    Knock,
    Leave,
    Op,
    OpId,
    Purge,
    Rank,
    Redact,
    RevokeInvite,
    SetDescription,
    SetJoinPolicy,
    SetName,
    SetRole,
    SetStampCost,
    Unban,
    op_to_json,
)
from tests.spaces.world import T0, person

alice, bob = person("alice"), person("bob")
SPACE = OpId("ab" * 32)
OTHER = OpId("cd" * 32)

BODIES: list[Body] = [
    Invite("z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK", T0 + 5, 3),
    Invite("z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK", None, None),
    RevokeInvite(OTHER),
    Join(None, None, None),
    Join(OTHER, "00" * 64, "stamp"),
    Knock("hé ✓ \n", None),
    Approve(OTHER, True),
    Deny(OTHER, ""),
    SetRole(bob.did, Rank.MODERATOR),
    SetRole(bob.did, Rank.OWNER),
    Kick(bob.did, "r"),
    Ban(bob.did, "r"),
    Unban(bob.did),
    Redact("automerge:abc", "m-1", bob.did, ""),
    Purge("automerge:abc", "automerge:def", "pii"),
    SetName("pub", "priv"),
    SetJoinPolicy(JoinPolicy.APPROVAL),
    SetStampCost(12, 0),
    SetDescription("d" * 2000),
    Leave(),
    BindActor(actor_for(SPACE, alice.did, "n"), "n"),
]


def wire_of(body: Body, **header: Any) -> bytes:
    create = isinstance(body, Create)
    fields: dict[str, Any] = {
        "space": None if create else SPACE,
        "author": alice.did,
        "parents": () if create else (OTHER,),
        "time": T0,
    }
    fields.update(header)
    return sign_op(Op(body=body, **fields), alice.signer).wire


def mutate(wire: bytes, **changes: Any) -> bytes:
    """The wire form with op fields changed (None deletes), still canonical."""
    doc = json.loads(wire)
    for k, v in changes.items():
        if v is None:
            doc["op"].pop(k, None)
        else:
            doc["op"][k] = v
    return canonical(doc)


@pytest.mark.parametrize("body", BODIES + [Create("p", "q", JoinPolicy.OPEN, "n")])
def test_every_kind_round_trips(body: Body) -> None:
    wire = wire_of(body)
    signed = parse_op(wire)
    assert signed.op.body == body
    assert signed.wire == wire
    assert canonical(op_to_json(signed.op)) in wire
    verify_op(signed)


def test_canonical_matches_json_stringify() -> None:
    # What JSON.stringify writes for these values (sorted keys), checked by hand.
    value: Json = {"b": '\u0000\u001f\b\f\n\r\t"\\\u007f\u2028é😀', "a": [True, -(2**53 - 1)]}
    want = '{"a":[true,-9007199254740991],"b":"\\u0000\\u001f\\b\\f\\n\\r\\t\\"\\\\\x7f\u2028é😀"}'
    assert canonical(value) == want.encode()
    assert parse_canonical(want.encode()) == value


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b'{"a":1, "b":2}', "not-canonical"),
        (b'{"b":1,"a":2}', "not-canonical"),
        (b'{"a":1,"a":1}', "not-canonical"),
        (b'{"a":1.0}', "not-canonical"),
        (b'{"a":1e2}', "not-canonical"),
        (b'{"a":-0}', "not-canonical"),
        (b'{"a":9007199254740992}', "not-canonical"),
        (b'{"a":null}', "not-canonical"),
        (b'{"a":NaN}', "not-json"),
        (b'{"a":-Infinity}', "not-json"),
        (b'{"a":1.5,', "not-json"),
        (b'{"a":1' + b"0" * 5000 + b"}", "not-canonical"),
        (b'{"a":1e400}', "not-canonical"),
        (b'{"a":"\\ud800"}', "not-canonical"),
        (b'{"\xc3\xa9":1}', "not-canonical"),
        (b'{"a":"\\u00e9"}', "not-canonical"),
        (b'{"a":"\\/"}', "not-canonical"),
        (b'{"a":1}\n', "not-canonical"),
        (b'{"a":', "not-json"),
        (b"[" * 100_000, "not-json"),
        (b"\xff", "not-utf8"),
    ],
)
def test_non_canonical_bytes_are_refused(data: bytes, reason: str) -> None:
    with pytest.raises(OpError) as e:
        parse_canonical(data)
    assert e.value.reason == reason


GOOD = wire_of(SetDescription("x"))


@pytest.mark.parametrize(
    ("wire", "reason"),
    [
        (b"x" * 20_000, "too-large"),
        (b'{"op":{},"sig":"00"}', "bad-field"),
        (b'{"op":[],"sig":"' + b"0" * 128 + b'"}', "bad-shape"),
        (b'{"op":{}}', "bad-shape"),
        (mutate(GOOD, v=2), "bad-version"),
        (mutate(GOOD, v="1"), "bad-field"),
        (mutate(GOOD, type="set-topic"), "unknown-type"),
        (mutate(GOOD, author="alice"), "bad-did"),
        (mutate(GOOD, author="did:key:z6Mk:"), "bad-did"),
        (mutate(GOOD, time=-1), "bad-field"),
        (mutate(GOOD, time=None), "bad-field"),
        (mutate(GOOD, parents=[]), "bad-field"),
        (mutate(GOOD, parents=[OTHER, OTHER]), "bad-field"),
        (mutate(GOOD, parents=[OTHER, SPACE]), "bad-field"),
        (mutate(GOOD, parents=sorted(f"{i:064x}" for i in range(17))), "too-many-parents"),
        (mutate(GOOD, parents=["AB" * 32]), "bad-field"),
        (mutate(GOOD, space=None), "bad-field"),
        (mutate(GOOD, description="x" * 2001), "bad-field"),
        (mutate(GOOD, description=None), "bad-field"),
        (mutate(GOOD, extra=1), "bad-field"),
        (mutate(wire_of(Join(None, None, None)), invite=OTHER), "bad-field"),
        (mutate(wire_of(Kick(bob.did, "")), target="bob"), "bad-did"),
        (mutate(wire_of(SetRole(bob.did, Rank.ADMIN)), role="king"), "bad-field"),
        (mutate(wire_of(SetStampCost(1, 1)), join=65), "bad-field"),
        (mutate(wire_of(SetStampCost(1, 1)), join=True), "bad-field"),
        (mutate(wire_of(Approve(OTHER, True)), ticket=1), "bad-field"),
        (mutate(wire_of(Redact("c", "m", bob.did, "")), message="a b"), "bad-field"),
        (mutate(wire_of(Redact("c", "m", bob.did, "")), channel=""), "bad-field"),
        (mutate(wire_of(Invite(BODIES[0].key, None, None)), key="z6Mk"), "bad-field"),  # type: ignore[union-attr]
        (mutate(wire_of(Invite(BODIES[0].key, None, None)), maxUses=0), "bad-field"),  # type: ignore[union-attr]
        (mutate(wire_of(SetJoinPolicy(JoinPolicy.OPEN)), joinPolicy="link"), "bad-field"),
        (mutate(wire_of(BindActor(actor_for(SPACE, alice.did, "n"), "n")), nonce="m"), "bad-actor"),
        (
            mutate(wire_of(BindActor(actor_for(SPACE, alice.did, "n"), "n")), author=bob.did),
            "bad-actor",
        ),  # fmt: skip
        (mutate(wire_of(Create("p", "q", JoinPolicy.OPEN, "n")), space=SPACE), "bad-field"),
        (mutate(wire_of(Create("p", "q", JoinPolicy.OPEN, "n")), parents=[OTHER]), "bad-field"),
    ],
)
def test_malformed_ops_are_refused_precisely(wire: bytes, reason: str) -> None:
    with pytest.raises(OpError) as e:
        parse_op(wire)
    assert e.value.reason == reason, e.value.message


def test_a_changed_op_no_longer_verifies() -> None:
    signed = parse_op(mutate(GOOD, description="y"))
    with pytest.raises(OpError) as e:
        verify_op(signed)
    assert e.value.reason == "bad-signature"
    stranger = parse_op(mutate(GOOD, author="did:plc:" + "a" * 24))
    with pytest.raises(OpError) as e:
        verify_op(stranger)
    assert e.value.reason == "unknown-key"


# --- fuzzing ---------------------------------------------------------------------

json_values = st.recursive(
    st.booleans() | st.integers(-(2**60), 2**60) | st.text(max_size=8) | st.none() | st.floats(),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=1_500)
@given(st.binary(max_size=400))
def test_parse_op_refuses_random_bytes_with_an_op_error(data: bytes) -> None:
    try:
        parse_op(data)
    except OpError as e:
        assert e.reason
    else:  # pragma: no cover - random bytes are never a valid op
        raise AssertionError("random bytes parsed")


@settings(max_examples=1_500)
@given(json_values, st.sampled_from(sorted({type(b).TYPE for b in BODIES})))
def test_parse_op_refuses_random_json_ops(value: Any, kind: str) -> None:
    op = {"v": 1, "type": kind, "author": alice.did, "parents": [OTHER], "time": 1,
          "space": SPACE, "x": value}  # fmt: skip
    for doc in ({"op": op, "sig": "00" * 64}, {"op": value, "sig": "00" * 64}):
        data = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        with pytest.raises(OpError):
            parse_op(data.encode("utf-8", "surrogatepass"))


@settings(max_examples=1_500)
@given(st.sampled_from(BODIES), st.integers(0, 10_000), st.binary(min_size=1, max_size=3))
def test_a_mutated_op_is_refused_or_still_means_the_same(
    body: Body, where: int, patch: bytes
) -> None:
    wire = wire_of(body)
    i = where % len(wire)
    bad = wire[:i] + patch + wire[i + len(patch) :]
    try:
        signed = parse_op(bad)
        verify_op(signed)
    except OpError:
        return
    assert bad == wire  # only a no-op patch may pass

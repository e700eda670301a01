"""Invite tokens: made, read back, and used to join (and only by the DID that signs)."""

from __future__ import annotations

import pytest

from hearth.spaces import OpError
from hearth.spaces.invites import InviteToken, new_invite, parse_invite_token
from hearth.spaces.ops import JoinPolicy, OpId, SignedOp
from tests.spaces.world import Space, person, seed_for

alice, bob, mallory = person("alice"), person("bob"), person("mallory")


def test_a_token_round_trips_and_admits_its_holder() -> None:
    s = Space(alice, JoinPolicy.INVITE_ONLY)
    body, seed = new_invite(max_uses=2, seed=seed_for("invite"))
    inv = s.write(alice, body)
    token = InviteToken(s.id, inv.id, seed)
    text = token.encode()
    assert text.startswith("hsi1.") and len(text) == 5 + 64 + 1 + 64 + 1 + 43
    assert all(text[-43:] not in w.decode() for w in s.wires)  # the seed is not in the log
    got = parse_invite_token(f"  {text}\n")
    assert got == token
    join: SignedOp = s.write(bob, got.join(bob.did), sorted({*s.heads(), got.invite}))
    assert s.log.state.is_member(bob.did), s.log.state.rejected.get(join.id)
    # A join body made for bob is useless to mallory.
    stolen = s.write(mallory, got.join(bob.did), sorted({*s.heads(), got.invite}))
    assert s.log.state.rejected[stolen.id] == "invite-bad-sig"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "hsi1." + "a" * 64 + "." + "b" * 64,
        "hsi2." + "a" * 64 + "." + "b" * 64 + "." + "A" * 43,
        "hsi1." + "A" * 64 + "." + "b" * 64 + "." + "A" * 43,
        "hsi1." + "a" * 64 + "." + "b" * 64 + "." + "A" * 42 + "B",  # stray low bits
        "hsi1." + "a" * 64 + "." + "b" * 64 + "." + "A" * 43 + "=",
    ],
)
def test_bad_tokens_are_refused(text: str) -> None:
    with pytest.raises(OpError) as e:
        parse_invite_token(text)
    assert e.value.reason == "bad-invite-token"


def test_example_in_the_docs() -> None:
    token = InviteToken(OpId("fd" * 32), OpId("ab" * 32), bytes(range(32)))
    assert token.encode() == (
        "hsi1." + "fd" * 32 + "." + "ab" * 32 + ".AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"
    )
    assert token.signer.public_key.multibase == new_invite(seed=bytes(range(32)))[0].key

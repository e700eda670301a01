"""Ops by atproto DIDs verify with their keyserver signing keys: a real keyserver and a
real syncserver on loopback, a did:plc in the test world's PLC directory."""

from __future__ import annotations

from pathlib import Path

import nacl.public

from hearth.jwt import Signer
from hearth.keys import KeyType, PublicKey
from hearth.spaces import OpId, sign_op
from hearth.spaces.ops import Join, Op, SetDescription
from hearth.types import Did
from tests.keyserver.conftest import running_keyserver
from tests.syncserver.helpers import running_server
from tests.syncserver.spaces_world import Person, Space, SpacesClient, now_ms, statuses
from tests.world import World


async def test_a_did_plc_member_verified_by_its_keyserver_key(world: World, tmp_path: Path) -> None:
    pat = world.new_plc_identity()
    own = Signer.generate()  # Pat's own Ed25519 signing key, registered at the keyserver
    other = Signer.generate()
    async with running_keyserver(world, tmp_path / "ks") as ks:
        body = {
            "signingKey": own.public_key.did_key,
            "encryptionKey": PublicKey(
                KeyType.X25519, bytes(nacl.public.PrivateKey.generate().public_key)
            ).did_key,
        }
        r = await ks.http.post(
            "/xrpc/chat.hearth.v1.key.register",
            json=body,
            headers=ks.auth(pat, "chat.hearth.v1.key.register"),
        )
        assert r.status_code == 200, r.text
        async with running_server(tmp_path / "sync", space_keyserver_url=ks.url) as srv:
            c = SpacesClient(srv.url, srv.did)
            alice = Person("alice")
            s = Space(alice)
            did = Did(pat.did)
            join = sign_op(
                Op(OpId(s.id), did, (OpId(s.id),), now_ms(), Join(None, None, None)), own
            )
            forged = sign_op(Op(OpId(s.id), did, (join.id,), now_ms(), SetDescription("x")), other)
            # Alice relays Pat's ops (Pat never talks to this syncserver).
            answer = await c.submit(alice, s.id, s.create, join, forged)
            assert statuses(answer) == [
                ("accepted", None),
                ("accepted", None),
                ("rejected", "bad-signature"),
            ]
            state = await c.state(alice, s.id)
            assert state["state"]["members"][pat.did] == {"rank": "member", "ticket": False}
            # A DID the keyserver has no key for (not in the PLC directory): unknown-key.
            nobody = Did("did:plc:" + "z" * 24)
            theirs = sign_op(
                Op(OpId(s.id), nobody, (OpId(s.id),), now_ms(), Join(None, None, None)), own
            )
            assert statuses(await c.submit(alice, s.id, theirs)) == [("rejected", "unknown-key")]

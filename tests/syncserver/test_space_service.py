"""SpaceService without HTTP: the injectable key lookup for atproto authors, and the
change callback enforcement subscribes to."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest

from hearth.http import XrpcError
from hearth.jwt import Signer
from hearth.keys import PublicKey
from hearth.spaces import OpId, SpaceState, sign_op
from hearth.spaces.ops import Ban, Create, Join, JoinPolicy, Op, Rank, SetRole
from hearth.spaces.state import Access
from hearth.types import Did
from syncserver.spaces import SpaceLimits, SpaceService
from syncserver.storage.authority import MemoryAuthorityStore
from tests.syncserver.spaces_world import Person, Space, now_ms

PLC = Did("did:plc:abcdefghijklmnopqrstuvwx")


async def run(fn: Callable[[], Any]) -> Any:
    return fn()


def service(keys: dict[Did, Sequence[PublicKey]]) -> SpaceService:
    async def lookup(did: Did) -> Sequence[PublicKey]:
        return keys.get(did, ())

    return SpaceService(MemoryAuthorityStore(), run, SpaceLimits(), lookup)


async def test_atproto_authors_verify_with_the_looked_up_key() -> None:
    key = Signer.generate()
    other = Signer.generate()
    alice = Person("alice")
    s = Space(alice)
    join = sign_op(Op(OpId(s.id), PLC, (OpId(s.id),), now_ms(), Join(None, None, None)), key)
    svc = service({})
    await svc.submit(alice.did, OpId(s.id), [s.create.wire])
    results, _ = await svc.submit(PLC, OpId(s.id), [join.wire])
    assert (results[0].reason, results[0].stored) == ("unknown-key", False)
    svc = service({PLC: [other.public_key]})
    await svc.submit(alice.did, OpId(s.id), [s.create.wire])
    results, _ = await svc.submit(PLC, OpId(s.id), [join.wire])
    assert (results[0].reason, results[0].stored) == ("bad-signature", False)
    svc = service({PLC: [other.public_key, key.public_key]})  # a rotated key still verifies
    await svc.submit(alice.did, OpId(s.id), [s.create.wire])
    results, space_log = await svc.submit(PLC, OpId(s.id), [join.wire])
    assert results[0].status == "accepted" and space_log.state.is_member(PLC)


async def test_a_space_founded_by_an_atproto_did() -> None:
    key = Signer.generate()
    body = Create("P", "p", JoinPolicy.OPEN, "n")
    create = sign_op(Op(None, PLC, (), now_ms(), body), key)
    svc = service({})
    with pytest.raises(XrpcError) as e:  # its create does not verify: no such space
        await svc.submit(PLC, create.id, [create.wire])
    assert e.value.error == "SpaceNotFound"
    svc = service({PLC: [key.public_key]})
    results, space_log = await svc.submit(PLC, create.id, [create.wire])
    assert results[0].status == "accepted" and space_log.state.owner == PLC


async def test_change_callback_names_who_lost_access() -> None:
    alice, bob, carol = Person("alice"), Person("bob"), Person("carol")
    s = Space(alice, JoinPolicy.OPEN)
    ops = [s.create, s.write(bob, Join(None, None, None)), s.write(carol, Join(None, None, None))]
    ops.append(s.write(alice, SetRole(bob.did, Rank.MODERATOR)))
    svc = service({})
    seen: list[tuple[OpId, set[Did], SpaceState]] = []

    def listener(space: OpId, before: Access, after: SpaceState) -> None:
        seen.append((space, before.lost_read(after.access()), after))

    svc.on_change.append(listener)
    await svc.submit(alice.did, OpId(s.id), [o.wire for o in ops])
    assert seen[-1][1] == set()
    await svc.submit(bob.did, OpId(s.id), [s.write(bob, Ban(carol.did, "bye")).wire])
    space, lost, after = seen[-1]  # (a kick alone would not do: open spaces are readable)
    assert space == s.id and lost == {carol.did} and not after.is_member(carol.did)
    # Nothing stored, nobody told.
    await svc.submit(bob.did, OpId(s.id), [ops[1].wire])
    assert len(seen) == 2
    assert await svc.state_of(OpId("0" * 64)) is None

"""The decisions of syncserver/enforcement.py without a server: rules snapshots,
the access policy and authorship over bindings, and who may bind a document."""

from __future__ import annotations

from hearth.spaces import OpId
from hearth.spaces.encoding import actor_for
from hearth.spaces.ops import Ban, BindActor, Join, JoinPolicy, SetJoinPolicy
from hearth.types import Did, DocumentId
from syncserver.enforcement import Bindings, SpaceAccessPolicy, SpaceAuthorship, bind_refusal
from syncserver.storage import Access
from tests.syncserver.spaces_world import Person, Space

DOC = DocumentId("doc-a")
UNBOUND = DocumentId("doc-b")


def test_bound_documents_follow_the_space_and_unbound_ones_their_rules() -> None:
    alice, bob, eve = Person("alice"), Person("bob"), Person("eve")
    s = Space(alice)
    s.write(bob, Join(None, None, None))
    actor = actor_for(s.id, bob.did, "n1")
    s.write(bob, BindActor(actor, "n1"))
    s.write(alice, SetJoinPolicy(JoinPolicy.APPROVAL))
    bindings = Bindings()
    bindings.bind(DOC, s.id, s.log.state)
    policy, authorship = SpaceAccessPolicy(bindings), SpaceAuthorship(bindings)
    stored = Access(owner=alice.did, readers=frozenset({eve.did}))

    assert policy.may_read(bob.did, DOC, stored) and policy.may_write(bob.did, DOC, stored)
    assert not policy.may_read(eve.did, DOC, stored)  # stored readers do not count
    assert not policy.may_read(None, DOC, stored)
    assert policy.may_read(eve.did, UNBOUND, stored) and not policy.may_write(
        eve.did, UNBOUND, stored
    )

    assert authorship.check(bob.did, bytes.fromhex(actor), DOC) is None
    assert "bound to another DID" in (authorship.check(alice.did, bytes.fromhex(actor), DOC) or "")
    assert "not bound" in (authorship.check(bob.did, b"\x01" * 16, DOC) or "")
    assert authorship.check(eve.did, b"\x01" * 16, UNBOUND) is None

    # The snapshot is taken when told: a ban counts once `update` has the new state.
    s.write(alice, Ban(bob.did, "spam"))
    assert policy.may_read(bob.did, DOC, stored)
    assert bindings.update(s.id, s.log.state)
    assert not policy.may_read(bob.did, DOC, stored)
    assert authorship.check(bob.did, bytes.fromhex(actor), DOC) == (
        "you may not write in the document's space"
    )
    assert not bindings.update(OpId("0" * 64), s.log.state)


def test_a_bound_document_whose_space_is_unknown_is_closed_to_all() -> None:
    bindings = Bindings()
    bindings.bind(DOC, OpId("0" * 64), None)
    owner = Did("did:key:zOwner")
    policy = SpaceAccessPolicy(bindings)
    assert not policy.may_read(owner, DOC, Access(owner=owner, public=True))
    assert SpaceAuthorship(bindings).check(owner, b"\x00" * 16, DOC) is not None


def test_who_may_bind() -> None:
    alice, bob, eve = Person("alice"), Person("bob"), Person("eve")
    s = Space(alice)
    s.write(bob, Join(None, None, None))
    state = s.log.state
    mine = Access(owner=alice.did)
    other = OpId("1" * 64)

    def error(caller: Person, stored: Access | None, bound: OpId | None = None) -> str | None:
        refusal = bind_refusal(caller.did, DOC, stored, s.id, state, bound)
        return None if refusal is None else refusal.error

    assert error(alice, mine) is None
    assert error(alice, mine, s.id) is None  # again: a no-op
    assert error(alice, None) == "DocumentNotFound"
    assert error(bob, mine) == "NotDocumentOwner"
    assert error(eve, Access(owner=eve.did)) == "NotMember"
    assert error(alice, mine, other) == "AlreadyBound"
    refusal = bind_refusal(alice.did, DOC, mine, s.id, None, None)
    assert refusal is not None and refusal.error == "SpaceNotFound"

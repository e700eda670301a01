"""Space authority on documents: which documents are a space's, and the access
policy and authorship rule that follow from the space's state.

docs/spaces.md "Enforcement at the syncserver" is the reference. In short:

- The owner of a stored document (its `Access.owner`, the DID whose change
  created it) may bind it to one space in which they may write
  (`chat.hearth.v1.space.bindDocument`); a binding is for ever. `bind_refusal`
  decides, without I/O.
- A bound document's access comes from the space's state, not from its stored
  readers and writers: `SpaceAccessPolicy` (read: `may_read`, members, or anyone
  not banned in an `open` space; write: members). Unbound documents keep
  `StoredAccess`.
- A change to a bound document is stored only if its actor is bound to the
  sending connection's DID, a member (`SpaceAuthorship`: `may_write_as`).
- `Bindings` holds the map and an immutable `SpaceRules` snapshot per bound
  space, replaced (never changed in place) when the space's log changes, so
  `SpaceAuthorship.check` may read it from a worker thread.

Costs: ~200 bytes per bound document in memory; per bound space a snapshot of
its members, bans and bound actors (~100 bytes per DID or actor), re-taken
(O(members + actors)) after every submit that stored ops of that space. The
checks themselves are dictionary lookups.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from hearth.http import XrpcError
from hearth.spaces import OpId, SpaceState
from hearth.spaces.ops import JoinPolicy
from hearth.spaces.state import Access as SpaceAccess
from hearth.types import Did, DocumentId
from syncserver.access import StoredAccess
from syncserver.spaces import SpaceService
from syncserver.storage import Access, Storage

if TYPE_CHECKING:
    from syncserver.hub import SyncHub

log = logging.getLogger("hearth.syncserver.enforcement")


@dataclass(frozen=True, slots=True)
class SpaceRules:
    """What enforcement needs of a `SpaceState`, frozen at one moment."""

    access: SpaceAccess
    actors: Mapping[str, Did]  # Automerge actor id (hex) -> DID; read-only copy

    @classmethod
    def of(cls, state: SpaceState) -> SpaceRules:
        return cls(state.access(), MappingProxyType(dict(state.actors)))

    def may_read(self, did: Did | None) -> bool:
        return self.access.may_read(did)

    def may_write(self, did: Did | None) -> bool:
        return did is not None and did in self.access.members

    def may_write_as(self, did: Did | None, actor: str) -> bool:
        return self.may_write(did) and self.actors.get(actor) == did


NOBODY = SpaceRules(
    SpaceAccess(frozenset(), frozenset(), JoinPolicy.INVITE_ONLY), MappingProxyType({})
)


class Bindings:
    """Bound documents and their spaces' rules, in memory (the store keeps the
    bindings durably; `app.py` loads them at start). Changed only on the event loop."""

    def __init__(self) -> None:
        self._space_of: dict[DocumentId, OpId] = {}
        self._documents: dict[OpId, set[DocumentId]] = {}
        self._rules: dict[OpId, SpaceRules] = {}

    def bind(self, document_id: DocumentId, space: OpId, state: SpaceState | None) -> None:
        """Record a binding (already stored) and the space's current state (None: not
        known here; then nobody reads or writes the document)."""
        if state is not None:
            self._rules[space] = SpaceRules.of(state)
        self._space_of[document_id] = space
        self._documents.setdefault(space, set()).add(document_id)

    def space_of(self, document_id: DocumentId) -> OpId | None:
        return self._space_of.get(document_id)

    def documents_of(self, space: OpId) -> list[DocumentId]:
        return sorted(self._documents.get(space, ()))

    def spaces(self) -> list[OpId]:
        return sorted(self._documents)

    def update(self, space: OpId, state: SpaceState) -> bool:
        """Take a new snapshot of a bound space's state; False if no document is bound
        to `space` (nothing to do)."""
        if space not in self._documents:
            return False
        self._rules[space] = SpaceRules.of(state)
        return True

    def rules_for(self, document_id: DocumentId) -> SpaceRules | None:
        """The rules of the document's space; None if the document is unbound
        (`NOBODY` if its space's state is not known: nobody reads or writes)."""
        space = self._space_of.get(document_id)
        if space is None:
            return None
        return self._rules.get(space, NOBODY)


class SpaceAccessPolicy:
    """An `AccessPolicy`: bound documents answer from their space's rules, unbound
    ones from `fallback` (today's `StoredAccess`)."""

    def __init__(self, bindings: Bindings, fallback: StoredAccess | None = None) -> None:
        self.bindings = bindings
        self.fallback = fallback if fallback is not None else StoredAccess()

    def may_read(self, did: Did | None, document_id: DocumentId, stored: Access) -> bool:
        rules = self.bindings.rules_for(document_id)
        if rules is None:
            return self.fallback.may_read(did, document_id, stored)
        return rules.may_read(did)

    def may_write(self, did: Did | None, document_id: DocumentId, stored: Access) -> bool:
        rules = self.bindings.rules_for(document_id)
        if rules is None:
            return self.fallback.may_write(did, document_id, stored)
        return rules.may_write(did)


class SpaceAuthorship:
    """An `Authorship`: a change to a bound document must carry an actor bound (by a
    `bind-actor` op) to the sending connection's DID, a member who may write.

    Runs on a worker thread for big messages: reads one `SpaceRules` snapshot, which
    the event loop replaces but never changes."""

    def __init__(self, bindings: Bindings) -> None:
        self.bindings = bindings

    def check(self, did: Did | None, actor: bytes, document_id: DocumentId) -> str | None:
        rules = self.bindings.rules_for(document_id)
        if rules is None:
            return None
        hex_actor = actor.hex()
        if rules.may_write_as(did, hex_actor):
            return None
        owner = rules.actors.get(hex_actor)
        if owner is None:
            return f"actor {hex_actor} is not bound to any DID in the document's space"
        if owner != did:
            return f"actor {hex_actor} is bound to another DID, not to this connection's"
        return "you may not write in the document's space"


def bind_refusal(
    caller: Did,
    document_id: DocumentId,
    stored: Access | None,
    space: OpId,
    state: SpaceState | None,
    bound_to: OpId | None,
) -> XrpcError | None:
    """Whether `caller` may bind the document (its stored rules `stored`, None: not
    stored; bound now to `bound_to`) to `space` (its state; None: unknown here).
    None: yes (binding it again to the same space is a no-op)."""
    if stored is None:
        return XrpcError(404, "DocumentNotFound", "no such document")
    if stored.owner != caller:
        return XrpcError(
            403, "NotDocumentOwner", "only the document's owner may bind it to a space"
        )
    if state is None or state.owner is None:
        return XrpcError(404, "SpaceNotFound", "no such space here")
    if not state.may_write(caller):
        why = "is banned from" if state.is_banned(caller) else "is not a member of"
        return XrpcError(
            403, "NotMember", f"not-member: {caller[:80]} {why} this space; only members bind"
        )
    if bound_to is not None and bound_to != space:
        return XrpcError(
            409, "AlreadyBound", f"the document is bound to another space ({bound_to})"
        )
    return None


class SpaceEnforcement:
    """The I/O around `Bindings`: loads them at start, binds documents
    (`bindDocument`), and re-checks the sessions on a space's documents whenever
    the space's log changes (`SpaceService.on_change`), so a kicked or banned
    member's sessions end at once. `run` is the storage thread's runner."""

    def __init__(
        self,
        bindings: Bindings,
        storage: Storage,
        hub: SyncHub,
        run: Callable[[Callable[[], Any]], Awaitable[Any]],
    ) -> None:
        self.bindings = bindings
        self.storage = storage
        self.hub = hub
        self._run = run
        self._service: SpaceService | None = None
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, service: SpaceService) -> int:
        """Load every stored binding and its space's state; subscribe to changes.
        Returns how many documents are bound. Call before serving."""
        self._service = service
        pairs: list[tuple[str, str]] = await self._run(service.store.bindings)
        for document, space in pairs:
            space_id = OpId(space)
            self.bindings.bind(DocumentId(document), space_id, await service.state_of(space_id))
        service.on_change.append(self._changed)
        return len(pairs)

    def _changed(self, space: OpId, before: SpaceAccess, after: SpaceState) -> None:
        # The new rules apply from here on (every later round asks them); open
        # sessions are re-checked under each document's lock, soon after.
        if not self.bindings.update(space, after):
            return
        loop = asyncio.get_running_loop()
        for document_id in self.bindings.documents_of(space):
            task = loop.create_task(self.hub.recheck(document_id))
            self._tasks.add(task)
            task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("re-checking sessions failed", exc_info=task.exception())

    async def bind(self, caller: Did, document_id: DocumentId, space: OpId) -> None:
        """Bind the document to the space for `caller`, or raise XrpcError
        (`bind_refusal`); binding again to the same space changes nothing."""
        service = self._service
        if service is None:
            raise XrpcError(503, "Unavailable", "starting")
        async with self._lock:
            stored = await self._run(lambda: self.storage.get_access(document_id))
            state = await service.state_of(space)
            bound_to = self.bindings.space_of(document_id)
            refusal = bind_refusal(caller, document_id, stored, space, state, bound_to)
            if refusal is not None:
                raise refusal
            if bound_to == space:
                return
            bound = await self._run(lambda: service.store.bind_document(document_id, space, caller))
            if bound != space:  # only if another process shares the file
                raise XrpcError(409, "AlreadyBound", f"the document is bound to {bound}")
            self.bindings.bind(document_id, space, await service.state_of(space))
        await self.hub.recheck(document_id)

    async def close(self) -> None:
        """Stop re-checks still running (the server is stopping)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

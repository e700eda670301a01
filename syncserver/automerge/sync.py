"""Automerge's sync state machine over a :class:`ChangeGraph`, as pure functions.

:class:`~.document.Document` wraps these; they are separate so the protocol logic
reads on its own. The behaviour follows Automerge's ``generateSyncMessage`` /
``receiveSyncMessage``: heads, need, one ``have`` (lastSync = shared heads, Bloom
filter of our changes since then), changes the peer lacks and has not been sent on
this connection, a reset reply when the peer's lastSync names a change we do not
have, and "nothing to say" once both sides agree and nothing is in flight.
"""

from __future__ import annotations

from .bloom import BloomFilter
from .chunk import Change
from .graph import ChangeGraph
from .message import Have, SyncMessage
from .state import SyncState


def make_have(graph: ChangeGraph, last_sync: list[bytes]) -> Have:
    """``last_sync`` plus a Bloom filter of every change we have since it."""
    return Have(list(last_sync), BloomFilter.from_hashes(c.hash for c in graph.since(last_sync)))


def changes_to_send(graph: ChangeGraph, have: list[Have], need: list[bytes]) -> list[Change]:
    """The changes a peer with this ``have`` and ``need`` lacks, explicit needs first.

    A change the peer's filters do not contain is sent together with everything that
    depends on it (the peer could not apply those otherwise).
    """
    if not have:
        return [c for c in (graph.get_change(h) for h in need) if c is not None]
    last_sync: set[bytes] = set()
    for entry in have:
        last_sync.update(entry.last_sync)
    candidates = graph.since(last_sync)
    # Empty filters contain nothing; the decoder bounds the probes of the others.
    blooms = [entry.bloom for entry in have if entry.bloom.entries and entry.bloom.bits]
    dependents: dict[bytes, list[bytes]] = {}
    to_send: set[bytes] = set()
    for c in candidates:
        for d in c.deps:
            dependents.setdefault(d, []).append(c.hash)
        if not any(c.hash in b for b in blooms):
            to_send.add(c.hash)
    stack = list(to_send)
    while stack:
        for dependent in dependents.get(stack.pop(), ()):
            if dependent not in to_send:
                to_send.add(dependent)
                stack.append(dependent)
    out: list[Change] = []
    for h in need:
        if h not in to_send:
            wanted = graph.get_change(h)
            if wanted is not None:
                out.append(wanted)
    out.extend(c for c in candidates if c.hash in to_send)
    return out


def generate(graph: ChangeGraph, state: SyncState) -> SyncMessage | None:
    """The next message for the peer, or ``None``; updates ``state`` as Automerge does."""
    our_heads = graph.heads
    their_heads = state.their_heads if state.their_heads is not None else []
    our_need = graph.missing_deps(their_heads)
    their_heads_set = set(their_heads)
    our_have = []
    if all(h in their_heads_set for h in our_need):
        our_have.append(make_have(graph, state.shared_heads))

    if state.their_have:
        if not all(graph.has(h) for h in state.their_have[0].last_sync):
            # They think we share history we do not have: ask for everything afresh.
            return SyncMessage(heads=our_heads, have=[Have()])

    sending: list[Change] = []
    if state.their_have is not None and state.their_need is not None:
        sent = state.sent_hashes
        sending = [
            c
            for c in changes_to_send(graph, state.their_have, state.their_need)
            if c.hash not in sent
        ]

    heads_unchanged = state.last_sent_heads == our_heads
    heads_equal = state.their_heads == our_heads
    if heads_unchanged and state.have_responded:
        if heads_equal and not sending:
            return None
        if state.in_flight:
            return None

    state.have_responded = True
    state.last_sent_heads = list(our_heads)
    state.sent_hashes.update(c.hash for c in sending)
    state.in_flight = True
    return SyncMessage(
        heads=our_heads, need=our_need, have=our_have, changes=[c.raw for c in sending]
    )


def advance_heads(
    old_heads: list[bytes], new_heads: list[bytes], shared: list[bytes]
) -> list[bytes]:
    """Shared heads after we applied changes from the peer (they have those too)."""
    old, new = set(old_heads), set(new_heads)
    advanced = {h for h in new if h not in old}
    advanced.update(h for h in shared if h in new)
    return sorted(advanced)


def update_after_receive(
    graph: ChangeGraph,
    state: SyncState,
    message: SyncMessage,
    before_heads: list[bytes],
) -> None:
    """The state bookkeeping of ``receiveSyncMessage``, after the changes were applied."""
    if message.changes:
        state.shared_heads = advance_heads(before_heads, graph.heads, state.shared_heads)
    if state.sent_hashes:
        state.sent_hashes -= graph.ancestors_among(message.heads, state.sent_hashes)
    if not message.changes and message.heads == before_heads:
        state.last_sent_heads = list(message.heads)
    known = [h for h in message.heads if graph.has(h)]
    if len(known) == len(message.heads):
        state.shared_heads = list(message.heads)
        if not message.heads:
            # The peer has lost all its data: start the full resync over.
            state.last_sent_heads = []
            state.sent_hashes = set()
    else:
        state.shared_heads = sorted(set(state.shared_heads).union(known))
    state.their_have = message.have
    state.their_heads = message.heads
    state.their_need = message.need

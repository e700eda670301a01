"""Pure-Python Automerge core: chunks, change graph, sync protocol. No I/O.

Byte-compatible with ``@automerge/automerge`` 3.x for everything it covers: it
parses and hashes change chunks (types 1 and 2), recognises document chunks
(type 0), keeps every change verbatim, and speaks sync message v1 (``0x42``).
It never interprets operations: there is no materialised document state.

Public API (stable; the syncserver builds on it)::

    from syncserver.automerge import Document, SyncState, AutomergeError

    doc = Document()                   # or Document.load(blob), Document.from_chunks(iterable)
    added = doc.apply(blob)            # hashes newly applied, causal order; orphans wait
    doc.heads                          # sorted list of 32-byte hashes
    doc.missing_deps()                 # sorted hashes referenced but absent
    doc.save()                         # causally ordered type-1 chunks; Automerge.load() accepts
    for change in doc.changes():       # causal order: change.hash, change.raw (chunk bytes),
        ...                            # change.deps, .actor, .seq, .start_op, .time, .message
    doc.get_change(h); doc.has(h); len(doc); doc.clock; doc.queued
    doc.changes_since(heads)           # changes not covered by heads, causal order

    state = SyncState()                # one per peer connection
    state.encode() / SyncState.decode(b)   # persists shared heads (Automerge's format)
    msg = doc.generate_sync_message(state)     # bytes, or None when nothing to say
    added = doc.receive_sync_message(state, msg)  # hashes newly applied, causal order

Every malformed input raises :class:`AutomergeError` (``.offset``, ``.reason``), and
``apply`` / ``receive_sync_message`` change nothing when they raise. Lower-level
pieces (``chunk``, ``bloom``, ``message``, ``graph``, ``leb128``) are importable
from their modules.
"""

from .bloom import BloomFilter
from .chunk import Change, DocumentChunk, parse_chunks
from .document import Document
from .errors import AutomergeError, QueueFullError, UnsupportedChunkError
from .graph import QueueLimits
from .message import Have, SyncMessage
from .state import SyncState

__all__ = [
    "AutomergeError",
    "BloomFilter",
    "Change",
    "Document",
    "DocumentChunk",
    "Have",
    "QueueFullError",
    "QueueLimits",
    "SyncMessage",
    "SyncState",
    "UnsupportedChunkError",
    "parse_chunks",
]

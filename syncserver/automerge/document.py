"""The :class:`Document`: a change graph plus the sync protocol, with no I/O.

A Document holds change chunks only; it never interprets operations, so it costs
what its changes weigh (see ``docs/automerge.md``).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator

from . import sync
from .chunk import Change, DocumentChunk, InflateBudget, iter_chunks
from .errors import AutomergeError, UnsupportedChunkError
from .graph import ChangeGraph, QueueLimits
from .message import SyncMessage
from .state import SyncState

#: Why a sync message carrying a whole-document chunk is refused.
UNSUPPORTED_DOCUMENT_CHUNK = (
    "whole-document chunk (type 0) in a sync message: this peer speaks sync v1 without"
    " capabilities and takes individual change chunks (types 1 and 2) only"
)


class Document:
    """The change graph of one Automerge document.

    Typical server use::

        doc = Document.from_chunks(stored_chunk_bytes)      # from storage, causal order
        added = doc.receive_sync_message(state, msg)         # hashes newly applied
        store(doc.get_change(h).raw for h in added)          # persist, then ...
        reply = doc.generate_sync_message(state)             # ... advertise the heads
    """

    def __init__(self, *, limits: QueueLimits = QueueLimits()) -> None:  # noqa: B008
        """``limits`` bound the changes that may wait for missing dependencies, in all
        and per ``source`` of :meth:`receive_sync_message`; an input that would exceed
        them raises :class:`~.errors.QueueFullError` and changes nothing."""
        self._graph = ChangeGraph(limits=limits)
        self._documents: list[DocumentChunk] = []

    # -- construction --------------------------------------------------------

    @classmethod
    def load(cls, blob: bytes) -> Document:
        """A document from any concatenation of chunks (e.g. :meth:`save` output)."""
        doc = cls()
        doc.apply(blob)
        return doc

    @classmethod
    def from_chunks(
        cls,
        chunks: Iterable[bytes],
        *,
        limits: QueueLimits = QueueLimits(),  # noqa: B008
    ) -> Document:
        """A document from stored chunks (each may itself be a concatenation).

        Order does not matter for correctness; causal order (as :meth:`changes`
        yields them) avoids queueing. Raises :class:`AutomergeError` on a bad chunk.
        The queue limits apply to what is added later, and to loading too.
        """
        doc = cls(limits=limits)
        for chunk in chunks:
            doc.apply(chunk)
        return doc

    # -- adding --------------------------------------------------------------

    def apply(self, blob: bytes, *, max_inflated: int | None = None) -> list[bytes]:
        """Add every chunk of ``blob``; return the hashes newly applied, in causal order.

        Compressed chunks may inflate to a bounded multiple of ``len(blob)`` in all
        (:class:`~.chunk.InflateBudget`), never beyond ``max_inflated`` if given.

        All chunks are parsed and checked before any is added, so a malformed blob
        (or a change JS would refuse: duplicate or out-of-sequence seq for its actor)
        raises :class:`AutomergeError` and changes nothing. Changes whose deps are
        absent wait (see :meth:`missing_deps`) and are reported by the call that
        finally applies them. Persist the returned changes before advertising
        :attr:`heads` to anyone.
        """
        changes: list[Change] = []
        documents: list[DocumentChunk] = []
        for chunk in iter_chunks(blob, InflateBudget.for_input(len(blob), max_inflated)):
            if isinstance(chunk, Change):
                changes.append(chunk)
            else:
                documents.append(chunk)
        added = self.apply_changes(changes)
        for d in documents:
            if d not in self._documents:
                self._documents.append(d)
        return added

    def apply_changes(
        self, changes: Iterable[Change], source: Hashable | None = None
    ) -> list[bytes]:
        """Add parsed changes; all or nothing (see :meth:`ChangeGraph.add_batch`)."""
        return self._graph.add_batch(changes, source)

    def queued_from(self, source: Hashable) -> tuple[int, int]:
        """(count, bytes) of queued changes charged to ``source``."""
        return self._graph.queued_from(source)

    def drop_source(self, source: Hashable) -> int:
        """See :meth:`ChangeGraph.drop_source`."""
        return self._graph.drop_source(source)

    # -- reading -------------------------------------------------------------

    @property
    def heads(self) -> list[bytes]:
        """Sorted 32-byte hashes of the changes nothing else depends on."""
        return self._graph.heads

    def missing_deps(self, heads: Iterable[bytes] = ()) -> list[bytes]:
        """Sorted hashes we were told about (by queued changes, or ``heads``) but lack."""
        return self._graph.missing_deps(heads)

    def __len__(self) -> int:
        return len(self._graph)

    def has(self, change_hash: bytes) -> bool:
        return self._graph.has(change_hash)

    def get_change(self, change_hash: bytes) -> Change | None:
        """The applied change with this hash (``.raw`` is its type-1 chunk), or None."""
        return self._graph.get_change(change_hash)

    def changes(self) -> Iterator[Change]:
        """Applied changes in causal order; ``c.hash`` and ``c.raw`` are what to store."""
        return self._graph.changes()

    def changes_since(self, heads: Iterable[bytes]) -> list[Change]:
        """Applied changes that are not ancestors of ``heads``, in causal order."""
        return self._graph.since(heads)

    @property
    def clock(self) -> dict[bytes, int]:
        """Highest applied seq per actor id."""
        return self._graph.clock

    @property
    def queued(self) -> int:
        """How many changes wait for missing dependencies (not in heads, not in save)."""
        return self._graph.queued

    @property
    def queued_bytes(self) -> int:
        """Raw bytes of the changes waiting for missing dependencies."""
        return self._graph.queued_bytes

    @property
    def document_chunks(self) -> list[DocumentChunk]:
        """Whole-document chunks received verbatim; their contents are not in the graph.

        Only :meth:`apply` of a ``save()`` blob keeps them; sync messages carrying
        one are refused (:meth:`receive_sync_message`).
        """
        return list(self._documents)

    def save(self) -> bytes:
        """Applied changes as concatenated type-1 chunks in causal order.

        ``Automerge.load()`` accepts the result. Queued changes and document chunks
        are not included.
        """
        return b"".join(c.raw for c in self._graph.changes())

    # -- sync ----------------------------------------------------------------

    def generate_sync_message(self, state: SyncState) -> bytes | None:
        """The next v1 message for the peer behind ``state``, or None if nothing to say.

        Call it after every :meth:`receive_sync_message` and after local changes, and
        send what it returns; it updates ``state`` (in-flight, sent hashes).
        """
        message = sync.generate(self._graph, state)
        return None if message is None else message.encode()

    def receive_sync_message(
        self,
        state: SyncState,
        data: bytes,
        *,
        max_inflated: int | None = None,
        source: Hashable | None = None,
        check: Callable[[Change], None] | None = None,
    ) -> list[bytes]:
        """Apply a message from the peer behind ``state``; return newly applied hashes.

        Changes it leaves waiting for dependencies are charged to ``source``.
        ``check``, if given, sees every change of the message after all are parsed
        and before anything changes: an exception it raises propagates and leaves
        document and state untouched (the syncserver refuses changes by authorship
        this way).

        All compressed chunks of the message share one inflation budget: a bounded
        multiple of ``len(data)``, never beyond ``max_inflated`` if given.

        The message and all its changes are parsed before anything changes, so a
        malformed message raises :class:`AutomergeError` and leaves document and
        state untouched. A whole-document (type 0) chunk raises
        :class:`~.errors.UnsupportedChunkError` the same way: this v1 core cannot
        expand it into changes, so it is refused rather than kept. Persist the
        returned changes before the next :meth:`generate_sync_message` advertises
        them in our heads.
        """
        message = SyncMessage.decode(data)
        changes: list[Change] = []
        budget = InflateBudget.for_input(len(data), max_inflated)
        for entry, offset in zip(message.changes, message.change_offsets, strict=True):
            try:
                for chunk in iter_chunks(entry, budget):
                    if not isinstance(chunk, Change):
                        # We never send capability flags, so a peer has no reason to
                        # send one, and its changes cannot go into the graph: keeping
                        # it would hold its bytes for nothing.
                        raise UnsupportedChunkError(UNSUPPORTED_DOCUMENT_CHUNK, 0)
                    changes.append(chunk)
            except UnsupportedChunkError as e:
                raise UnsupportedChunkError(e.reason, offset) from None
            except AutomergeError as e:
                # Report the offset in the message, not in the change entry.
                raise AutomergeError(e.reason, offset + max(e.offset, 0)) from None
        if check is not None:
            for change in changes:
                check(change)
        before = self._graph.heads
        added = self.apply_changes(changes, source)
        state.in_flight = False
        sync.update_after_receive(self._graph, state, message, before)
        return added

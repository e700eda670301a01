"""The document cache: loaded documents, their locks, and eviction.

No I/O. Each loaded document is one `DocEntry`: its `Document`, its stored access
rules, the connections syncing it and the lock under which all of them are
touched. Loading from storage is the caller's job (`Documents` fills an entry
under its lock); this module only decides which entries stay in memory.

Entries beyond `max_cached` are evicted least recently used among those not in
use. An entry is in use while connections sync it or tasks hold or wait for its
lock (`DocEntry.users`): a task that wakes up with an entry must never work on a
copy nobody else sees. Entries in use leave the eviction order when eviction
meets them and come back (`settle`) once idle, so eviction never scans documents
in use: O(1) amortised however many there are.

Cost: one dict entry and one order entry per loaded document, plus the document
itself (see docs/automerge.md).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field

from hearth.types import DocumentId
from syncserver.automerge import Document
from syncserver.peers import Connection
from syncserver.storage import Access


@dataclass(eq=False)
class DocEntry:
    document_id: DocumentId
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    loaded: bool = False
    access: Access | None = None  # None: not stored (yet)
    doc: Document = field(default_factory=Document)
    connections: dict[str, Connection] = field(default_factory=dict)
    # Tasks holding or waiting for `lock`: such an entry is never evicted, so a
    # task that wakes up with it never works on a copy nobody else sees.
    users: int = 0

    @contextlib.asynccontextmanager
    async def locked(self) -> AsyncIterator[None]:
        """Hold `lock`, counted in `users` from before the wait until release."""
        self.users += 1
        try:
            async with self.lock:
                yield
        finally:
            self.users -= 1

    @property
    def in_use(self) -> bool:
        return bool(self.connections or self.users)


class DocumentCache:
    """Loaded documents by id, bounded by `max_cached` among those not in use.

    Get an entry with `entry` (creating it, empty and not loaded), work on it only
    inside `locked(entry)`, and call `settle(entry)` after taking a connection off
    it outside that context (it may be evictable now).
    """

    def __init__(
        self,
        max_cached: int,
        new_document: Callable[[], Document],
        on_size: Callable[[int], None] = lambda _size: None,
    ) -> None:
        self.max_cached = max_cached
        self._new_document = new_document
        self._on_size = on_size
        # Loaded documents, and the least-recently-used order of those that may be
        # evicted. A document in use is dropped from that order when eviction meets
        # it and put back once it is idle.
        self._docs: dict[DocumentId, DocEntry] = {}
        self._idle: OrderedDict[DocumentId, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._docs)

    def __iter__(self) -> Iterator[DocumentId]:
        return iter(list(self._docs))

    def __getitem__(self, document_id: DocumentId) -> DocEntry:
        return self._docs[document_id]

    def __contains__(self, document_id: object) -> bool:
        return document_id in self._docs

    def idle_count(self) -> int:
        """Entries in the eviction order (an upper bound on those evictable now)."""
        return len(self._idle)

    def get(self, document_id: DocumentId) -> DocEntry | None:
        """The cached entry, if any; does not count as a use."""
        return self._docs.get(document_id)

    def entry(self, document_id: DocumentId) -> DocEntry:
        """The entry for `document_id` (new and not loaded if it was not cached),
        marked most recently used; may evict others."""
        entry = self._docs.get(document_id)
        if entry is None:
            entry = self._docs[document_id] = DocEntry(document_id, doc=self._new_document())
            self._on_size(len(self._docs))
        self._idle[document_id] = None
        self._idle.move_to_end(document_id)
        if len(self._docs) > self.max_cached:
            self.evict(keep=document_id)
        return entry

    def settle(self, entry: DocEntry) -> None:
        """An entry may have stopped being in use: make it evictable again."""
        document_id = entry.document_id
        if (
            not entry.in_use
            and self._docs.get(document_id) is entry
            and document_id not in self._idle
        ):
            self._idle[document_id] = None
            if len(self._docs) > self.max_cached:
                self.evict()

    @contextlib.asynccontextmanager
    async def locked(self, entry: DocEntry) -> AsyncIterator[None]:
        """`entry.locked()`, then settle it (it may be evictable now)."""
        try:
            async with entry.locked():
                yield
        finally:
            self.settle(entry)

    def reset(self, entry: DocEntry) -> None:
        """Forget the entry's in-memory copy (it will be loaded again); call under
        its lock."""
        entry.loaded = False
        entry.doc = self._new_document()
        entry.access = None

    def evict(self, keep: DocumentId | None = None) -> None:
        """Forget least recently used documents that are not in use.

        Each entry met in use leaves the order (`settle` puts it back when it is
        idle again), so every step is O(1) and none is repeated for it meanwhile.
        """
        idle = self._idle
        while len(self._docs) > self.max_cached and idle:
            document_id = next(iter(idle))
            if document_id == keep:
                if len(idle) == 1:
                    break
                idle.move_to_end(document_id)
                continue
            del idle[document_id]
            entry = self._docs.get(document_id)
            if entry is not None and not entry.in_use:
                del self._docs[document_id]
        self._on_size(len(self._docs))

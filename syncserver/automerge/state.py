"""Per-peer sync state, as Automerge keeps it.

Only ``shared_heads`` survives :meth:`SyncState.encode` (the same ``0x43`` + hashes
format as Automerge's ``encodeSyncState``, so JS can read ours and vice versa); the
rest describes one connection and starts afresh after :meth:`SyncState.decode`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import AutomergeError
from .leb128 import Reader, encode_hashes
from .message import Have

SYNC_STATE_TYPE = 0x43


@dataclass(slots=True)
class SyncState:
    """What we know about one peer. Create one per peer and connection; never share it.

    Fields mirror Automerge's: ``shared_heads`` (heads both sides are known to have),
    ``last_sent_heads``, ``their_heads`` / ``their_need`` / ``their_have`` (``None``
    until the peer's first message), ``sent_hashes`` (changes sent and not yet
    acknowledged by their heads), ``in_flight`` (a message awaits an answer) and
    ``have_responded`` (we sent at least one message on this connection).
    """

    shared_heads: list[bytes] = field(default_factory=list)
    last_sent_heads: list[bytes] = field(default_factory=list)
    their_heads: list[bytes] | None = None
    their_need: list[bytes] | None = None
    their_have: list[Have] | None = None
    sent_hashes: set[bytes] = field(default_factory=set)
    in_flight: bool = False
    have_responded: bool = False

    def encode(self) -> bytes:
        """Persistable form: ``0x43`` then the shared heads."""
        return bytes([SYNC_STATE_TYPE]) + encode_hashes(sorted(self.shared_heads))

    @classmethod
    def decode(cls, data: bytes) -> SyncState:
        """Inverse of :meth:`encode`; raises :class:`AutomergeError` on bad input."""
        r = Reader(data)
        kind = r.u8()
        if kind != SYNC_STATE_TYPE:
            raise AutomergeError(f"not a sync state (type byte {kind:#04x})", 0)
        shared = r.hashes("sync state shared heads")
        return cls(shared_heads=shared)

"""Sync message codec.

Layout (all counts and lengths unsigned LEB128, hashes 32 raw bytes)::

    u8 type            0x42 (v1); 0x43 (v2) is read too
    heads              count, hashes (sorted)
    need               count, hashes
    have               count x { lastSync: count, hashes ; bloom: length, bytes }
    changes            count x { length, bytes }  (each entry may hold several chunks)
    [anything]         capability flags from newer peers: ignored

We only ever write ``0x42`` and never append capability flags, so a peer never sends
us a whole-document chunk in place of individual changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .bloom import BloomFilter
from .errors import AutomergeError
from .leb128 import Reader, encode_bytes, encode_hashes, encode_uleb

MESSAGE_TYPE_V1 = 0x42
MESSAGE_TYPE_V2 = 0x43

#: Most ``have`` entries a message may carry. JS sends exactly one; each entry costs
#: objects out of proportion to its two bytes and a Bloom check per candidate change.
MAX_HAVE = 16
#: Most Bloom probes, summed over a message's ``have`` filters, that answering it may
#: cost per candidate change (JS: one filter, 7 probes).
MAX_HAVE_PROBES = 64


@dataclass(slots=True)
class Have:
    """What a peer has: everything up to ``last_sync`` plus what ``bloom`` contains."""

    last_sync: list[bytes] = field(default_factory=list)
    bloom: BloomFilter = field(default_factory=BloomFilter)


@dataclass(slots=True)
class SyncMessage:
    heads: list[bytes] = field(default_factory=list)
    need: list[bytes] = field(default_factory=list)
    have: list[Have] = field(default_factory=list)
    changes: list[bytes] = field(default_factory=list)
    #: Where each of ``changes`` starts in the decoded input (empty when built by hand).
    change_offsets: list[int] = field(default_factory=list, compare=False, repr=False)

    def encode(self) -> bytes:
        """The v1 (``0x42``) encoding, without capability flags."""
        out = [bytes([MESSAGE_TYPE_V1]), encode_hashes(self.heads), encode_hashes(self.need)]
        out.append(encode_uleb(len(self.have)))
        for have in self.have:
            out.append(encode_hashes(have.last_sync))
            out.append(encode_bytes(have.bloom.encode()))
        out.append(encode_uleb(len(self.changes)))
        for c in self.changes:
            # Not encode_bytes(c): that would copy every change once more before the join.
            out.append(encode_uleb(len(c)))
            out.append(c)
        return b"".join(out)

    @classmethod
    def decode(cls, data: bytes) -> SyncMessage:
        """Parse a v1 or v2 message; trailing bytes (capability flags) are ignored.

        The change entries are returned as raw bytes; parse them with the chunk module.
        """
        r = Reader(data)
        kind = r.u8()
        if kind not in (MESSAGE_TYPE_V1, MESSAGE_TYPE_V2):
            raise AutomergeError(f"not a sync message (type byte {kind:#04x})", 0)
        heads = r.hashes("message heads")
        need = r.hashes("message need")
        have_pos = r.pos
        n_have = r.count(2, "message have")
        if n_have > MAX_HAVE:
            raise r.error(f"{n_have} have entries; at most {MAX_HAVE} accepted", have_pos)
        have = []
        probes = 0
        for _ in range(n_have):
            last_sync = r.hashes("have lastSync")
            bloom_pos = r.pos
            bloom_bytes = r.length_prefixed("have bloom")
            start = bloom_pos + (len(encode_uleb(len(bloom_bytes))))
            bloom = BloomFilter.decode(bloom_bytes, base=start)
            if bloom.entries and bloom.bits:
                probes += max(bloom.probes, 1)
                if probes > MAX_HAVE_PROBES:
                    raise r.error(
                        f"have Bloom filters need over {MAX_HAVE_PROBES} probes per change",
                        bloom_pos,
                    )
            have.append(Have(last_sync, bloom))
        n_changes = r.count(1, "message changes")
        changes = []
        offsets = []
        for _ in range(n_changes):
            change = r.length_prefixed("message change")
            offsets.append(r.pos - len(change))
            changes.append(change)
        return cls(heads, need, have, changes, offsets)

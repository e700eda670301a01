"""Storage chunks: parsing, validation and hashing.

A chunk is ``85 6f 4a 83 | checksum (4) | type (1) | uleb length | body``. Types:

* ``1`` change: parsed into a :class:`Change`; the columns are kept verbatim.
* ``2`` compressed change: the body is raw DEFLATE of a type-1 body; the checksum and
  the hash are those of the uncompressed type-1 chunk, which is what we keep.
* ``0`` document: recognised, kept verbatim as a :class:`DocumentChunk` with its heads.

Anything else (type 3 "bundle", unknown types, bad checksums, trailing garbage)
raises :class:`AutomergeError` with the offset of the problem.

The hash of a change is ``SHA-256(type byte + uleb length + body)`` of its type-1
form; the checksum is the first four bytes of that digest.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

from .errors import AutomergeError
from .leb128 import Reader, encode_bytes, encode_hashes, encode_sleb, encode_uleb

MAGIC = b"\x85\x6f\x4a\x83"
TYPE_DOCUMENT = 0
TYPE_CHANGE = 1
TYPE_COMPRESSED = 2

#: Absolute cap on what the compressed chunks of one input may inflate to, together.
#: DEFLATE expands up to ~1032x, so a budget per input (not per chunk) is what keeps
#: a small hostile input from allocating far more than its length.
MAX_INFLATED = 64 * 1024 * 1024
#: Per input, compressed chunks may inflate to at most ``INFLATE_RATIO`` times the
#: input's length plus ``INFLATE_SLACK`` bytes (and never beyond ``MAX_INFLATED``).
#: Typical change bodies compress 2-5x, but one holding a long repetitive value can
#: compress 100x or more (a 72 KB JS test change deflates to ~500 bytes); the slack
#: admits such a change in a small input, the ratio many ordinary ones.
INFLATE_RATIO = 64
INFLATE_SLACK = 1024 * 1024


class InflateBudget:
    """How many inflated bytes the compressed chunks of one input may still produce."""

    __slots__ = ("limit", "used")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    @classmethod
    def for_input(cls, length: int, cap: int | None = None) -> InflateBudget:
        """The budget for an input of ``length`` bytes; ``cap`` lowers ``MAX_INFLATED``."""
        ceiling = MAX_INFLATED if cap is None else min(cap, MAX_INFLATED)
        return cls(max(0, min(ceiling, INFLATE_RATIO * length + INFLATE_SLACK)))

    @property
    def remaining(self) -> int:
        return self.limit - self.used


@dataclass(frozen=True, slots=True)
class Change:
    """One change, as stored: ``raw`` is the complete uncompressed type-1 chunk.

    ``hash`` is the 32-byte change hash; ``deps`` the hashes it depends on (as
    written, normally sorted); ``actor`` and ``other_actors`` are raw actor ids.
    """

    hash: bytes
    deps: tuple[bytes, ...]
    actor: bytes
    seq: int
    start_op: int
    time: int
    message: str | None
    other_actors: tuple[bytes, ...]
    raw: bytes


@dataclass(frozen=True, slots=True)
class DocumentChunk:
    """A whole-document (type 0) chunk, kept verbatim; only its heads are decoded."""

    heads: tuple[bytes, ...]
    raw: bytes


Chunk = Change | DocumentChunk


def change_hash(body: bytes) -> bytes:
    """The hash of a type-1 chunk with this body."""
    h = hashlib.sha256(b"\x01")
    h.update(encode_uleb(len(body)))
    h.update(body)
    return h.digest()


def _parse_change_body(body: bytes, digest: bytes, raw: bytes, base: int) -> Change:
    r = Reader(body, base=base)
    deps = tuple(r.hashes("change deps"))
    actor = r.length_prefixed("change actor")
    seq = r.uleb("change seq")
    start_op_pos = r.pos
    start_op = r.uleb("change startOp")
    if start_op == 0:
        raise r.error("change startOp must be non-zero", start_op_pos)
    time = r.sleb("change time")
    message_pos = r.pos
    message_bytes = r.length_prefixed("change message")
    try:
        message = message_bytes.decode("utf-8") if message_bytes else None
    except UnicodeDecodeError:
        raise r.error("change message is not valid UTF-8", message_pos) from None
    n_actors = r.count(1, "change other actors")
    other_actors = tuple(r.length_prefixed("change other actor") for _ in range(n_actors))
    n_cols = r.count(2, "change columns")
    total = 0
    last_spec = -1
    # The column metadata is most of the LEB128s in a change: one-byte values inline.
    pos, end = r.pos, r.end
    for _ in range(n_cols):
        spec_pos = pos
        if pos < end and body[pos] < 0x80:
            spec = body[pos]
            pos += 1
        else:
            r.pos = pos
            spec = r.uleb("column spec")
            pos = r.pos
        if spec <= last_spec:
            raise r.error("column specs not in ascending order", spec_pos)
        last_spec = spec
        if pos < end and body[pos] < 0x80:
            total += body[pos]
            pos += 1
        else:
            r.pos = pos
            total += r.uleb("column length")
            pos = r.pos
    r.pos = pos
    if total > r.remaining:
        raise r.error(f"columns need {total} bytes, only {r.remaining} left")
    return Change(digest, deps, actor, seq, start_op, time, message, other_actors, raw)


def _parse_document_heads(body: bytes, base: int) -> tuple[bytes, ...]:
    r = Reader(body, base=base)
    n_actors = r.count(1, "document actors")
    for _ in range(n_actors):
        r.length_prefixed("document actor")
    return tuple(r.hashes("document heads"))


def _inflate(data: bytes, offset: int, budget: InflateBudget) -> bytes:
    d = zlib.decompressobj(-15)
    # max_length 0 means "unlimited" to zlib: ask for one byte more than allowed.
    allowed = budget.remaining
    try:
        out = d.decompress(data, allowed + 1)
    except zlib.error as e:
        raise AutomergeError(f"compressed change: bad DEFLATE data ({e})", offset) from None
    if len(out) > allowed:
        raise AutomergeError(
            f"compressed changes inflate beyond this input's budget of {budget.limit} bytes",
            offset,
        )
    budget.used += len(out)
    if not d.eof:
        raise AutomergeError("compressed change: truncated DEFLATE stream", offset)
    if d.unused_data:
        raise AutomergeError("compressed change: bytes after the DEFLATE stream", offset)
    return out


def parse_chunk(
    data: bytes, pos: int = 0, budget: InflateBudget | None = None
) -> tuple[Chunk, int]:
    """Parse the chunk starting at ``data[pos]``; return it and the offset just past it.

    A compressed chunk draws on ``budget`` (by default one for ``data``'s length).
    """
    start = pos
    r = Reader(data, pos)
    if r.take(4, "chunk magic") != MAGIC:
        raise AutomergeError("bad chunk magic", start)
    checksum = r.take(4, "chunk checksum")
    type_pos = r.pos
    chunk_type = r.u8()
    length = r.uleb("chunk length")
    if length > r.remaining:
        raise r.error(f"chunk length {length} exceeds the {r.remaining} bytes left", type_pos + 1)
    body_start = r.pos
    body = r.take(length, "chunk body")
    end = r.pos
    if chunk_type == TYPE_COMPRESSED:
        if budget is None:
            budget = InflateBudget.for_input(len(data))
        body = _inflate(body, body_start, budget)
        header = b"\x01" + encode_uleb(len(body))
    elif chunk_type in (TYPE_CHANGE, TYPE_DOCUMENT):
        header = data[type_pos:body_start]
    else:
        raise AutomergeError(f"unsupported chunk type {chunk_type}", type_pos)
    h = hashlib.sha256(header)
    h.update(body)
    digest = h.digest()
    if digest[:4] != checksum:
        raise AutomergeError("chunk checksum mismatch", start + 4)
    if chunk_type == TYPE_DOCUMENT:
        return DocumentChunk(_parse_document_heads(body, body_start), data[start:end]), end
    if chunk_type == TYPE_CHANGE:
        raw = data[start:end]
        return _parse_change_body(body, digest, raw, body_start), end
    raw = MAGIC + checksum + header + body
    try:
        return _parse_change_body(body, digest, raw, 0), end
    except AutomergeError as e:
        # Offsets inside an inflated body have no place in the input: report the body's.
        raise AutomergeError(f"compressed change: {e.reason}", body_start) from None


def iter_chunks(data: bytes, budget: InflateBudget | None = None) -> Iterator[Chunk]:
    """Yield every chunk of a concatenation; raise on the first malformed one.

    All compressed chunks together draw on one ``budget`` (by default
    :meth:`InflateBudget.for_input` of ``len(data)``); share one budget across the
    pieces of a larger input (e.g. a sync message's change entries).
    """
    if budget is None:
        budget = InflateBudget.for_input(len(data))
    pos = 0
    n = len(data)
    while pos < n:
        chunk, pos = parse_chunk(data, pos, budget)
        yield chunk


def parse_chunks(data: bytes, budget: InflateBudget | None = None) -> list[Chunk]:
    """All chunks of ``data``, validated before anything is returned."""
    return list(iter_chunks(data, budget))


def wrap_chunk(chunk_type: int, body: bytes) -> bytes:
    """Frame ``body`` as a chunk of ``chunk_type`` with the right checksum."""
    header = bytes([chunk_type]) + encode_uleb(len(body))
    checksum = hashlib.sha256(header + body).digest()[:4]
    return MAGIC + checksum + header + body


def compress_change(change: Change) -> bytes:
    """The type-2 (compressed) form of ``change``; same hash and checksum as type 1."""
    r = Reader(change.raw, 9)
    r.uleb()
    body = change.raw[r.pos :]
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    deflated = c.compress(body) + c.flush()
    header = b"\x02" + encode_uleb(len(deflated))
    return MAGIC + change.raw[4:8] + header + deflated


def encode_change(
    *,
    deps: list[bytes],
    actor: bytes,
    seq: int,
    start_op: int,
    time: int = 0,
    message: str | None = None,
    other_actors: list[bytes] | None = None,
    columns: bytes = b"\x00",
) -> bytes:
    """Build a type-1 change chunk from header fields and pre-encoded column bytes.

    ``columns`` must be the column metadata plus data (``b"\\x00"`` = no columns). This
    is meant for tests and tools; it does not encode operations.
    """
    body = (
        encode_hashes(sorted(deps))
        + encode_bytes(actor)
        + encode_uleb(seq)
        + encode_uleb(start_op)
        + encode_sleb(time)
        + encode_bytes((message or "").encode("utf-8"))
        + encode_uleb(len(other_actors or []))
        + b"".join(encode_bytes(a) for a in other_actors or [])
        + columns
    )
    return wrap_chunk(TYPE_CHANGE, body)

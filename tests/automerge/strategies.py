"""Shared helpers: building change chunks and random DAGs without JS."""

from __future__ import annotations

import hashlib

from hypothesis import settings

from syncserver.automerge.chunk import encode_change

# Modest budgets: the whole directory must stay well under three minutes on 2 cores.
FUZZ = settings(max_examples=150, deadline=None)
FUZZ_SMALL = settings(max_examples=40, deadline=None)


def actor(n: int) -> bytes:
    return hashlib.sha256(b"actor%d" % n).digest()[:16]


def make_change(deps: list[bytes], who: int, seq: int, message: str | None = None) -> bytes:
    """A structurally valid change chunk with no operations."""
    return encode_change(
        deps=deps, actor=actor(who), seq=seq, start_op=seq, time=1700000000 + seq, message=message
    )

"""The one exception the Automerge core raises for malformed input."""

from __future__ import annotations


class AutomergeError(ValueError):
    """Malformed or inconsistent Automerge input.

    ``offset`` is the byte position in the input being decoded where the problem was
    found (``-1`` when the error is not about a position, e.g. a semantic conflict),
    and ``reason`` says what was wrong. Callers should treat the whole input that
    raised it as rejected.
    """

    def __init__(self, reason: str, offset: int = -1) -> None:
        self.reason = reason
        self.offset = offset
        where = f" at offset {offset}" if offset >= 0 else ""
        super().__init__(f"{reason}{where}")


class QueueFullError(AutomergeError):
    """Accepting the input would queue more changes (waiting for missing
    dependencies) than the document's limit; nothing was applied."""


class UnsupportedChunkError(AutomergeError):
    """The input holds a chunk this core can check but not use in that place (a
    whole-document chunk in a sync message); nothing was applied or kept."""

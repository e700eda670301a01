"""The one error type of the spaces core, with stable reason codes."""

from __future__ import annotations


class OpError(Exception):
    """An op was refused. `reason` is a stable machine-readable code (docs/spaces.md)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message

"""Resolution failures, each with the HTTP status and atproto error name it maps to."""

from __future__ import annotations


class ResolveError(Exception):
    status = 502
    error = "UpstreamFailure"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(ResolveError):
    """The handle or DID is not syntactically valid (400)."""

    status = 400
    error = "InvalidRequest"


class NotFound(ResolveError):
    """The handle or DID does not resolve (404). `error` names what was not found."""

    status = 404
    error = "NotFound"

    def __init__(self, message: str, error: str = "NotFound") -> None:
        super().__init__(message)
        self.error = error


class UpstreamError(ResolveError):
    """DNS, HTTPS or the PLC directory failed or timed out (502)."""

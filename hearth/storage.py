"""Storage failures as every service reports them: one exception, one health word.

A store that cannot read or write now (its file locked by another process for
longer than the busy timeout, the disk full, the file corrupt) raises
`StorageUnavailable` to its caller instead of a raw `sqlite3` error, and
keeps a `StorageHealth`. The HTTP layer answers `StorageUnavailable` with 503
and the atproto error `StorageUnavailable`; `/xrpc/_health` says
`"storage": "ok"` or `"storage": "error: <why>"` and answers 503 while any
store of the service is failing (see `storage_status`).

A store that failed goes on trying: the next operation (or the store's own
probe) that succeeds makes it healthy again. Only a file that failed its
integrity check at start stays refused (`StorageHealth.broken`) until an
operator repairs or restores it and restarts the service.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import Iterable, Iterator

log = logging.getLogger("hearth.storage")


class StorageUnavailable(Exception):
    """The store cannot serve this operation now; the message says why, for the caller."""


# SQLite's primary result codes (the low byte of an extended code).
_BUSY, _LOCKED, _NOMEM, _READONLY = 5, 6, 7, 8
_IOERR, _CORRUPT, _FULL, _CANTOPEN, _NOTADB = 10, 11, 13, 14, 26
_REASONS = {
    _BUSY: "database is locked by another process",
    _LOCKED: "database is locked",
    _NOMEM: "out of memory",
    _READONLY: "database is read-only",
    _IOERR: "disk I/O error",
    _CORRUPT: "database file is corrupt",
    _FULL: "disk is full",
    _CANTOPEN: "cannot open the database file",
    _NOTADB: "file is not a database",
}


def is_storage_failure(e: BaseException) -> bool:
    """True for an SQLite error about the file or the disk, not about the statement's data.

    Constraint violations and misuse (IntegrityError, ProgrammingError,
    InterfaceError, DataError) are answers about one operation; everything
    else (locked, full, I/O, corrupt) means the store as a whole cannot work.
    """
    if not isinstance(e, sqlite3.Error):
        return False
    return not isinstance(
        e, sqlite3.IntegrityError | sqlite3.ProgrammingError | sqlite3.InterfaceError
        | sqlite3.DataError
    )  # fmt: skip


def describe(e: BaseException) -> str:
    """A short reason fit for a health page and an error sent to a client (no paths)."""
    code = getattr(e, "sqlite_errorcode", None)
    if isinstance(code, int) and code & 0xFF in _REASONS:
        return _REASONS[code & 0xFF]
    if isinstance(e, sqlite3.Error):
        return "database error"
    return "internal storage error"


class StorageHealth:
    """The state of one store: healthy, failing (and why), or broken at start.

    Written by the store's thread and read by the event loop; each field is
    one reference assignment, which is atomic in CPython.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.error: str | None = None  # why the last operation failed; None once one succeeds
        self.broken: str | None = None  # failed the integrity check at start: never cleared

    def failed(self, reason: str) -> None:
        if self.error != reason:
            log.error("%s storage failing: %s", self.name, reason)
        self.error = reason

    def succeeded(self) -> None:
        if self.error is not None:
            log.warning("%s storage works again (was: %s)", self.name, self.error)
            self.error = None

    def refuse_if_broken(self) -> None:
        """Raise StorageUnavailable if the store was found corrupt at start."""
        if self.broken is not None:
            raise StorageUnavailable(self.broken)

    @property
    def problem(self) -> str | None:
        return self.broken or self.error

    @contextlib.contextmanager
    def guard(self, what: str = "storage") -> Iterator[None]:
        """Run one storage operation in the block: refused while broken; a storage
        failure is recorded and raised as StorageUnavailable (other sqlite3 errors,
        e.g. a constraint, pass unchanged); success makes the store healthy."""
        self.refuse_if_broken()
        try:
            yield
        except sqlite3.Error as e:
            if not is_storage_failure(e):
                raise
            reason = describe(e)
            self.failed(reason)
            raise StorageUnavailable(f"{what} unavailable: {reason}; retry later") from e
        self.succeeded()


def storage_status(healths: Iterable[StorageHealth]) -> str:
    """`"ok"`, or `"error: "` and each failing store's name and reason."""
    problems = [f"{h.name}: {h.problem}" for h in healths if h.problem is not None]
    return "error: " + "; ".join(problems) if problems else "ok"

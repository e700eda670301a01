"""Private files: every file a service writes is 0600 and every folder 0700.

Use `private_dir` for any directory a service creates, `private_file` for a
file before writing it, and `private_sqlite_connect` for SQLite databases: it
creates the database file 0600 *before* SQLite opens it (SQLite gives its
`-wal`, `-shm` and `-journal` side files the database file's mode) and
tightens side files left by an older version. None of this depends on the
process umask.

`quick_check` runs SQLite's `PRAGMA quick_check`; it reads the whole file
once (seconds for a file of gigabytes), so stores call it once, at start.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import stat
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger("hearth.files")

SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")
DEFAULT_PRAGMAS = ("journal_mode=WAL", "synchronous=FULL")


def private_dir(path: Path, *, tighten: bool = True) -> Path:
    """Create `path` and missing parents with mode 0700; tighten `path` itself to 0700.

    Parents that already exist are left as they are (a data directory may
    live in a folder the service does not own); so is `path` itself when it
    exists and `tighten` is false (a folder the operator chose for one file).
    """
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    for d in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another process made it meanwhile
            os.mkdir(d, 0o700)
        os.chmod(d, 0o700)  # mkdir's mode is masked by the umask
    if tighten:
        _tighten(path, 0o700)
    return path


def private_file(path: Path) -> Path:
    """Create `path` empty with mode 0600 if absent; tighten an existing file to 0600."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        mode = stat.S_IMODE(os.fstat(fd).st_mode)
        if mode != 0o600:
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    return path


def _tighten(path: Path, mode: int) -> None:
    try:
        current = stat.S_IMODE(path.stat().st_mode)
        if current != mode:
            os.chmod(path, mode)
            log.info("tightened %s from %o to %o", path, current, mode)
    except PermissionError:
        log.warning("cannot make %s private (mode %o): not its owner", path, mode)


def is_memory(path: Path | str) -> bool:
    return str(path) in ("", ":memory:") or str(path).startswith("file::memory:")


def private_sqlite_connect(
    path: Path | str,
    *,
    timeout: float = 5.0,
    pragmas: Sequence[str] = DEFAULT_PRAGMAS,
) -> sqlite3.Connection:
    """Open (creating if needed) an SQLite database whose files are all 0600.

    Autocommit mode (`isolation_level=None`, the caller writes BEGIN/COMMIT),
    usable from any thread (the caller serialises access). `timeout` is how
    long a statement waits for a lock held by another connection before it
    fails with "database is locked". Raises sqlite3.DatabaseError when the
    file is not a database.
    """
    if not is_memory(path):
        path = Path(path)
        private_dir(path.parent, tighten=False)  # services pass a folder made private
        private_file(path)
        for suffix in SQLITE_SIDE_FILES:
            side = path.with_name(path.name + suffix)
            if side.exists():
                _tighten(side, 0o600)
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=timeout)
    try:
        for pragma in pragmas:
            db.execute(f"PRAGMA {pragma}")
    except BaseException:
        db.close()
        raise
    return db


def quick_check(db: sqlite3.Connection, max_problems: int = 3) -> str | None:
    """None if SQLite's quick check finds the file sound, else a short description."""
    try:
        rows = db.execute(f"PRAGMA quick_check({int(max_problems)})").fetchall()
    except sqlite3.DatabaseError as e:
        return f"integrity check failed: {e}"
    if rows == [("ok",)]:
        return None
    return "integrity check failed: " + "; ".join(str(r[0]) for r in rows)

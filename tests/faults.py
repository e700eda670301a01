"""Storage faults for tests: a lock held by another process, a corrupt page.

Both act on the real SQLite file the way an operator's tool, a backup job or
a failing disk would; nothing in the store under test is patched.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold the database's write lock from another connection until the block ends."""
    other = sqlite3.connect(path, isolation_level=None, timeout=0)
    try:
        other.execute("BEGIN EXCLUSIVE")
        yield
        other.execute("ROLLBACK")
    finally:
        other.close()


def corrupt_middle_page(path: Path) -> None:
    """Checkpoint the WAL into the file, then overwrite a page in its middle with 0xFF.

    The file must hold at least a few pages (a few dozen rows of some
    hundred bytes); the header (page 1) stays intact, so SQLite opens the
    file and only an integrity check or a read of that page finds the damage.
    """
    db = sqlite3.connect(path)
    try:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        (page_size,) = db.execute("PRAGMA page_size").fetchone()
    finally:
        db.close()
    pages = path.stat().st_size // page_size
    assert pages >= 4, f"{path} has only {pages} pages"
    with open(path, "r+b") as f:
        f.seek((pages // 2) * page_size)
        f.write(b"\xff" * page_size)


def modes(root: Path) -> dict[str, int]:
    """Every file and folder under `root` (itself included) -> its permission bits."""
    out = {".": stat.S_IMODE(root.stat().st_mode)}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            p = Path(dirpath) / name
            out[str(p.relative_to(root))] = stat.S_IMODE(p.lstat().st_mode)
    return out


def not_private(root: Path) -> dict[str, str]:
    """Files not 0600 and folders not 0700 under `root`: name -> octal mode."""
    bad = {}
    for name, mode in modes(root).items():
        want = 0o700 if (root / name).is_dir() else 0o600
        if mode != want:
            bad[name] = oct(mode)
    return bad

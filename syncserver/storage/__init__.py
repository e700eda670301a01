"""Durable storage for the syncserver: one `Storage` protocol, several implementations.

Every implementation passes the contract suite in `tests/syncserver/storage_contract.py`.
"""

from syncserver.storage.base import (
    Access,
    Storage,
    StorageError,
    StorageStats,
    StoredChange,
)
from syncserver.storage.memory import MemoryStorage
from syncserver.storage.sqlite import SqliteStorage

__all__ = [
    "Access",
    "MemoryStorage",
    "SqliteStorage",
    "Storage",
    "StorageError",
    "StorageStats",
    "StoredChange",
]

"""Fresh identifiers for tests."""

from __future__ import annotations

import os

from hearth.base58 import b58check_encode
from hearth.types import DocumentId


def new_document_id() -> DocumentId:
    """A random automerge-repo documentId (bs58check of 16 bytes)."""
    return DocumentId(b58check_encode(os.urandom(16)))

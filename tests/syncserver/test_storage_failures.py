"""The syncserver's SQLite file: locks, corruption and file modes, on real files."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import httpx
import pytest

from hearth.jwt import Signer
from hearth.storage import StorageUnavailable
from hearth.types import ChangeHash, Did, DocumentId
from syncserver.storage import Access, SqliteStorage, StoredChange
from tests.faults import corrupt_middle_page, locked, not_private
from tests.syncserver.helpers import TIMEOUT, running_server
from tests.syncserver.ids import new_document_id
from tests.timing import MS

ALICE = Did("did:key:zAlice")


def fill(path: Path, documents: int = 40) -> None:
    storage = SqliteStorage(path)
    try:
        for i in range(documents):
            change = StoredChange(ChangeHash(os.urandom(32)), os.urandom(400))
            storage.commit(DocumentId(f"doc{i}"), [change], create=Access(owner=ALICE))
    finally:
        storage.close()


def test_a_lock_fails_the_call_and_the_store_recovers(tmp_path: Path) -> None:
    path = tmp_path / "syncserver.sqlite3"
    storage = SqliteStorage(path, busy_timeout=100 * MS)
    doc = DocumentId("doc")
    change = StoredChange(ChangeHash(os.urandom(32)), b"chunk")
    try:
        storage.add_token(b"t1", ALICE, 1e12)
        with locked(path):
            with pytest.raises(StorageUnavailable, match="locked"):
                storage.commit(doc, [change], create=Access(owner=ALICE))
            assert storage.health.error == "database is locked by another process"
            with pytest.raises(StorageUnavailable):
                storage.check()
            assert storage.lookup_token(b"t1", 0) == ALICE  # WAL: reads go on
            assert storage.health.problem is None  # and a call that works says so
            with pytest.raises(StorageUnavailable):
                storage.add_token(b"t2", ALICE, 1e12)
        storage.check()
        assert storage.health.problem is None
        assert storage.commit(doc, [change], create=Access(owner=ALICE)) == 1
        assert [c.chunk for c in storage.changes(doc)] == [b"chunk"]
    finally:
        storage.close()


async def test_corrupt_file_is_reported_and_refused_with_a_clear_503(tmp_path: Path) -> None:
    path = tmp_path / "syncserver" / "syncserver.sqlite3"
    path.parent.mkdir()
    fill(path)
    corrupt_middle_page(path)
    async with running_server(tmp_path) as server:
        async with httpx.AsyncClient() as http:
            health = await http.get(server.url + "/xrpc/_health")
        assert health.status_code == 503, health.text
        storage = health.json()["storage"]
        assert storage.startswith("error: documents: syncserver database unusable"), storage
        assert "integrity check failed" in storage
        r = await server.xrpc("GET", "token", Signer.generate())
        assert r.status_code == 503, r.text
        assert r.json()["error"] == "StorageUnavailable"
        assert "integrity check failed" in r.json()["message"]
        r = await server.xrpc("GET", "getAccess", Signer.generate(),
                              params={"documentId": new_document_id()})  # fmt: skip
        assert r.status_code == 503 and r.json()["error"] == "StorageUnavailable"


async def test_every_file_the_syncserver_writes_is_private(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        async with running_server(tmp_path / "data") as server:
            assert (await server.xrpc("GET", "token", Signer.generate())).status_code == 200
            names = {p.name for p in (tmp_path / "data" / "syncserver").iterdir()}
            assert {"syncserver.sqlite3", "syncserver.sqlite3-wal"} <= names, names
            assert not_private(tmp_path / "data") == {}
    finally:
        os.umask(old)


async def wait_for_storage(url: str, ok: bool) -> dict[str, object]:
    """Poll /xrpc/_health (bounded) until its storage is ok, or not."""
    deadline = asyncio.get_running_loop().time() + TIMEOUT
    async with httpx.AsyncClient() as http:
        while True:
            r = await http.get(url + "/xrpc/_health")
            body: dict[str, object] = r.json()
            if (r.status_code == 200) == ok:
                return body
            assert asyncio.get_running_loop().time() < deadline, body
            await asyncio.sleep(50 * MS)


async def test_health_notices_a_lock_without_traffic_and_its_end(tmp_path: Path) -> None:
    async with running_server(tmp_path, storage_probe_interval=100 * MS) as server:
        assert (await wait_for_storage(server.url, ok=True))["storage"] == "ok"
        with locked(tmp_path / "syncserver" / "syncserver.sqlite3"):
            # No peer and no call writes: only the idle probe can notice.
            storage = (await wait_for_storage(server.url, ok=False))["storage"]
            assert isinstance(storage, str) and storage.startswith("error: documents: ")
            assert "locked" in storage, storage
        assert (await wait_for_storage(server.url, ok=True))["storage"] == "ok"

"""Keys survive restarts and crashes, and never sit in the database in the clear."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sqlite3
import stat
import sys
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import httpx
import pytest

from hearth import crockford
from hearth.config import ConfigError, ServiceConfig, build_options
from hearth.keys import KeyType
from hearth.storage import StorageUnavailable
from keyserver.app import OPTIONS, create_app
from keyserver.keypair import parse_private_multibase
from keyserver.storage import MasterKeyMismatch
from keyserver.storage.contract import ALICE, BOB, new_keys
from keyserver.storage.sqlite import SqliteKeyStore
from tests.faults import corrupt_middle_page, locked, not_private
from tests.keyserver.conftest import Keyserver, running_keyserver
from tests.timing import MS
from tests.world import Identity, World

ROOT = Path(__file__).resolve().parents[2]
ROTATE = "/xrpc/chat.hearth.v1.key.rotate"


async def make_keys(ks: Keyserver, idents: Iterable[Identity]) -> dict[str, dict[str, Any]]:
    """Create keys for every identity (one of them rotated twice); return each
    DID's private-key answer."""
    out = {}
    for i, ident in enumerate(idents):
        if i % 2:
            assert (await ks.public(ident.did)).status_code == 200
        if i == 0:
            for _ in range(2):
                r = await ks.http.post(ROTATE, headers=ks.auth(ident, "chat.hearth.v1.key.rotate"))
                assert r.status_code == 200
        r = await ks.private(ident)
        assert r.status_code == 200, r.text
        out[ident.did] = r.json()
    return out


def secrets_of(answers: Iterable[dict[str, Any]]) -> list[bytes]:
    found = []
    for body in answers:
        for gen in [body, *body["previous"]]:
            for name in ("signingPrivateKey", "encryptionPrivateKey"):
                if name in gen:
                    found.append(parse_private_multibase(gen[name])[1])
    return found


def assert_not_in_files(paths: Iterable[Path], secrets: list[bytes]) -> None:
    """No secret in any of the files, raw or in any text form we ever write."""
    assert secrets
    for path in paths:
        data = path.read_bytes()
        assert data, path
        lowered = data.lower()
        for secret in secrets:
            assert secret not in data, path
            assert secret.hex().encode() not in lowered, path
            assert crockford.encode(secret).encode() not in lowered, path


def db_files(data_dir: Path) -> list[Path]:
    base = data_dir / "keyserver" / "keys.sqlite3"
    return [p for p in (base, base.with_name(base.name + "-wal")) if p.exists()]


async def test_restart_keeps_every_key_and_no_seed_is_stored(world: World, tmp_path: Path) -> None:
    idents = [world.new_plc_identity(KeyType.P256) for _ in range(3)]
    idents += [world.new_web_identity(KeyType.SECP256K1) for _ in range(3)]
    data = tmp_path / "data"
    async with running_keyserver(world, data) as ks:
        before = await make_keys(ks, idents)
        secrets = secrets_of(before.values())
        assert len(secrets) == 2 * (len(idents) + 1)  # the first DID has 2 generations
        files = db_files(data)
        assert [p.name for p in files] == ["keys.sqlite3", "keys.sqlite3-wal"]
        assert_not_in_files(files, secrets)
    assert_not_in_files(db_files(data), secrets)

    async with running_keyserver(world, data) as ks:
        for ident in idents:
            r = await ks.private(ident)
            assert r.json() == before[ident.did]
            public = (await ks.public(ident.did)).json()
            assert (public["signingKey"], public["encryptionKey"]) == (
                before[ident.did]["signingKey"],
                before[ident.did]["encryptionKey"],
            )
        assert "hearth_keyserver_keys_created_total{" not in (await ks.http.get("/metrics")).text


async def launch(world: World, data: Path) -> tuple[asyncio.subprocess.Process, str]:
    env = {**os.environ, **world.env, "PYTHONPATH": str(ROOT)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.keyserver.launch",
        str(data),
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 30_000 * MS)
    assert line.strip().isdigit(), line
    return proc, f"http://127.0.0.1:{int(line)}"


@pytest.fixture
async def processes() -> AsyncIterator[list[asyncio.subprocess.Process]]:
    procs: list[asyncio.subprocess.Process] = []
    yield procs
    for p in procs:
        if p.returncode is None:
            p.kill()
        await p.wait()


async def test_crash_keeps_every_acknowledged_key(
    world: World, tmp_path: Path, processes: list[asyncio.subprocess.Process]
) -> None:
    """SIGKILL right after the answers: whatever was answered is on disk."""
    idents = [world.new_plc_identity() for _ in range(3)] + [world.new_web_identity()]
    data = tmp_path / "data"
    proc, url = await launch(world, data)
    processes.append(proc)
    async with httpx.AsyncClient(base_url=url) as http:
        did = (await http.get("/.well-known/did.json")).json()["id"]
        before = await make_keys(Keyserver(url, did, http, data), idents)
    proc.send_signal(signal.SIGKILL)
    assert await proc.wait() == -signal.SIGKILL
    assert_not_in_files(db_files(data), secrets_of(before.values()))

    proc, url = await launch(world, data)
    processes.append(proc)
    async with httpx.AsyncClient(base_url=url) as http:
        did = (await http.get("/.well-known/did.json")).json()["id"]
        ks = Keyserver(url, did, http, data)
        for ident in idents:
            assert (await ks.private(ident)).json() == before[ident.did]
    proc.terminate()
    await proc.wait()


async def test_master_key_file_is_created_private(world: World, tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with running_keyserver(world, data) as ks:
        assert (await ks.public(world.new_plc_identity().did)).status_code == 200
    path = data / "keyserver" / "master.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    master = bytes.fromhex(path.read_text().strip())
    assert len(master) == 32
    assert_not_in_files(db_files(data), [master])
    # The same file is used on the next start.
    async with running_keyserver(world, data):
        pass
    assert bytes.fromhex(path.read_text().strip()) == master


async def test_master_key_from_environment(world: World, tmp_path: Path) -> None:
    data = tmp_path / "data"
    alice = world.new_plc_identity()
    env = {"HEARTH_KEYSERVER_MASTER_KEY": os.urandom(32).hex()}
    async with running_keyserver(world, data, env) as ks:
        first = (await ks.private(alice)).json()
    assert not (data / "keyserver" / "master.key").exists()
    async with running_keyserver(world, data, env) as ks:
        assert (await ks.private(alice)).json() == first


async def test_wrong_master_key_refuses_to_start(world: World, tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {"HEARTH_KEYSERVER_MASTER_KEY": os.urandom(32).hex()}
    alice = world.new_plc_identity()
    async with running_keyserver(world, data, env) as ks:
        first = (await ks.private(alice)).json()
    before = rows(data)

    wrong = {"HEARTH_KEYSERVER_MASTER_KEY": os.urandom(32).hex()}
    app = create_app(config_for(world, data, wrong))
    with pytest.raises(MasterKeyMismatch):
        async with app.router.lifespan_context(app):
            pass
    # The command line says why and exits non-zero, without serving anything.
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "hearth"),
        "keyserver",
        "--port",
        "0",
        "--data-dir",
        str(data),
        env={**os.environ, **world.env, **wrong},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(proc.communicate(), 30_000 * MS)
    assert proc.returncode != 0
    assert b"another master key" in stderr
    assert wrong["HEARTH_KEYSERVER_MASTER_KEY"].encode() not in stderr
    assert rows(data) == before

    async with running_keyserver(world, data, env) as ks:
        assert (await ks.private(alice)).json() == first


def rows(data: Path) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(data / "keyserver" / "keys.sqlite3")
    try:
        return conn.execute("SELECT * FROM keys ORDER BY did, number").fetchall()
    finally:
        conn.close()


def config_for(world: World, data: Path, env: dict[str, str]) -> ServiceConfig:
    return ServiceConfig(
        "keyserver", world.settings(data_dir=data), build_options(None, "keyserver", OPTIONS, env)
    )


@pytest.mark.parametrize("value", ["abc", "zz" * 32, "00" * 31])
def test_malformed_master_key_is_a_config_error(world: World, tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError, match="master key"):
        create_app(config_for(world, tmp_path, {"HEARTH_KEYSERVER_MASTER_KEY": value}))


def test_exposed_master_key_file_is_refused(world: World, tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    path.write_text(os.urandom(32).hex())
    path.chmod(0o644)
    env = {"HEARTH_KEYSERVER_MASTER_KEY_FILE": str(path)}
    with pytest.raises(ConfigError, match="chmod 600"):
        create_app(config_for(world, tmp_path, env))
    path.chmod(0o600)
    create_app(config_for(world, tmp_path, env))


async def test_logs_carry_no_keys_or_tokens(
    world: World, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    idents = [world.new_plc_identity(), world.new_web_identity()]
    tokens = []
    with caplog.at_level(logging.DEBUG):
        async with running_keyserver(world, tmp_path / "data") as ks:
            answers = await make_keys(ks, idents)
            for ident in idents:
                token = ident.jwt(ks.did, "chat.hearth.v1.key.private")
                tokens.append(token)
                headers = {"Authorization": f"Bearer {token}"}
                for _ in range(2):  # the second is a replay, refused and counted
                    await ks.http.get("/xrpc/chat.hearth.v1.key.private", headers=headers)
                await ks.http.get(
                    "/xrpc/chat.roomy.v0.key", headers=ks.auth(ident, "chat.roomy.v0.key")
                )
    text = caplog.text
    assert "chat.hearth.v1.key.private" in text  # the access log did record the calls
    master = (tmp_path / "data" / "keyserver" / "master.key").read_text().strip()
    for secret in secrets_of(answers.values()):
        assert secret.hex() not in text and crockford.encode(secret) not in text
    for body in answers.values():
        assert body["signingPrivateKey"] not in text
    for token in tokens:
        assert token not in text and token.split(".")[2] not in text
    assert master not in text


async def test_database_writer_cannot_move_keys_between_dids(
    world: World, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Copying Bob's whole key row onto Alice's does not hand Alice Bob's private keys."""
    alice, bob = world.new_plc_identity(), world.new_web_identity()
    data = tmp_path / "data"
    async with running_keyserver(world, data) as ks:
        bob_keys = (await ks.private(bob)).json()
        assert (await ks.private(alice)).status_code == 200
    conn = sqlite3.connect(data / "keyserver" / "keys.sqlite3")
    try:
        conn.execute(
            "UPDATE keys SET (signing_key, encryption_key, sealed_private) ="
            " (SELECT signing_key, encryption_key, sealed_private FROM keys WHERE did = ?)"
            " WHERE did = ?",
            (bob.did, alice.did),
        )
        conn.commit()
    finally:
        conn.close()
    with caplog.at_level(logging.ERROR):
        async with running_keyserver(world, data) as ks:
            r = await ks.private(alice)
            assert r.status_code == 500
            assert r.json()["error"] == "InternalServerError"
            assert bob_keys["signingPrivateKey"] not in r.text
            # Bob is unaffected.
            assert (await ks.private(bob)).json() == bob_keys
    assert "do not open" in caplog.text


async def test_corrupt_database_is_reported_and_refused_with_a_clear_503(
    world: World, tmp_path: Path
) -> None:
    """A bad page in the middle of the file: health says so, requests get a 503, not a 500."""
    idents = [world.new_plc_identity() for _ in range(40)]
    data = tmp_path / "data"
    async with running_keyserver(world, data, {"HEARTH_KEYSERVER_CREATE_BURST": "100"}) as ks:
        for ident in idents:
            assert (await ks.public(ident.did)).status_code == 200
    corrupt_middle_page(data / "keyserver" / "keys.sqlite3")

    async with running_keyserver(world, data) as ks:
        health = await ks.http.get("/xrpc/_health")
        assert health.status_code == 503
        storage = health.json()["storage"]
        assert storage.startswith("error: keys: keys database unusable (integrity check failed")
        for r in (await ks.public(idents[0].did), await ks.private(idents[1])):
            assert r.status_code == 503, r.text
            assert r.json()["error"] == "StorageUnavailable"
            assert "integrity check failed" in r.json()["message"]


async def test_a_locked_database_fails_the_write_and_the_store_recovers(tmp_path: Path) -> None:
    path = tmp_path / "keys.sqlite3"
    store = await SqliteKeyStore.open(path, busy_timeout=100 * MS)
    try:
        await store.create(ALICE, new_keys(), 1)
        with locked(path):
            with pytest.raises(StorageUnavailable, match="locked"):
                await store.create(BOB, new_keys(), 2)
            assert store.health.error == "database is locked by another process"
            with pytest.raises(StorageUnavailable):
                await store.ping()  # the probe finds the lock still held
            assert (await store.get(ALICE)) is not None  # WAL: reads go on
        await store.ping()  # the probe finds the lock gone
        assert store.health.problem is None
        assert (await store.create(BOB, new_keys(), 3)).current.created_at == 3
    finally:
        await store.close()


async def test_every_file_the_keyserver_writes_is_private(world: World, tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        async with running_keyserver(world, tmp_path / "data") as ks:
            assert (await ks.private(world.new_plc_identity())).status_code == 200
            names = {p.name for p in (tmp_path / "data" / "keyserver").iterdir()}
            assert {"keys.sqlite3", "keys.sqlite3-wal", "master.key"} <= names, names
            assert not_private(tmp_path / "data") == {}
    finally:
        os.umask(old)

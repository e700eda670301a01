"""Sealing and the master key file, without HTTP."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from keyserver.sealing import (
    MasterKeyError,
    Sealer,
    SealError,
    load_or_create_master_key,
    parse_master_key,
)

ALICE = "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa"
BOB = "did:plc:bbbbbbbbbbbbbbbbbbbbbbbb"


def test_seal_round_trip_and_binding_to_the_did() -> None:
    sealer = Sealer(os.urandom(32))
    secret = os.urandom(64)
    sealed = sealer.seal(ALICE, secret)
    assert secret not in sealed and len(sealed) == 64 + 40
    assert sealer.open(ALICE, sealed) == secret
    assert sealer.seal(ALICE, secret) != sealed  # a fresh nonce every time
    with pytest.raises(SealError):
        sealer.open(BOB, sealed)  # moved to another DID's row: does not open
    tampered = bytearray(sealed)
    tampered[30] ^= 1
    with pytest.raises(SealError):
        sealer.open(ALICE, bytes(tampered))
    with pytest.raises(SealError):
        Sealer(os.urandom(32)).open(ALICE, sealed)


def test_fingerprint_identifies_the_key_without_revealing_it() -> None:
    key = os.urandom(32)
    assert Sealer(key).fingerprint == Sealer(key).fingerprint
    assert Sealer(key).fingerprint != Sealer(os.urandom(32)).fingerprint
    assert key.hex() not in Sealer(key).fingerprint
    assert key.hex() not in repr(Sealer(key))


def test_master_key_file_created_0600_whatever_the_umask(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "master.key"
    old = os.umask(0)
    try:
        key = load_or_create_master_key(path)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(key) == 32 and path.read_text() == key.hex() + "\n"
    assert load_or_create_master_key(path) == key
    assert [p.name for p in path.parent.iterdir()] == ["master.key"]  # no temp file left


def test_master_key_file_refusals(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    path.write_text("not hex")
    path.chmod(0o600)
    with pytest.raises(MasterKeyError):
        load_or_create_master_key(path)
    path.write_text(os.urandom(32).hex())
    path.chmod(0o640)
    with pytest.raises(MasterKeyError, match="chmod 600"):
        load_or_create_master_key(path)
    link = tmp_path / "link.key"
    path.chmod(0o600)
    link.symlink_to(path)
    with pytest.raises(OSError):
        load_or_create_master_key(link)  # never follow a planted symlink


def test_parse_master_key() -> None:
    key = os.urandom(32)
    assert parse_master_key(key.hex().upper() + "\n") == key
    for bad in ("", "00" * 31, "00" * 33, "g" * 64):
        with pytest.raises(MasterKeyError):
            parse_master_key(bad)

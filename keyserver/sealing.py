"""Private keys at rest: sealed with XSalsa20-Poly1305 (PyNaCl `SecretBox`).

Each DID's private keys are sealed under a subkey derived from the master key
and the DID (keyed BLAKE2b), so a sealed blob copied onto another DID's row
does not open: whoever can write the database still cannot hand one user
another user's keys. The master key itself never touches the database; only
a keyed fingerprint of it does, so a server started with the wrong master key
refuses to run instead of minting keys nobody can open later.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

import nacl.encoding
import nacl.exceptions
import nacl.hash
import nacl.secret
import nacl.utils

from hearth.files import private_dir

MASTER_KEY_LEN = nacl.secret.SecretBox.KEY_SIZE  # 32
_SEAL_PERSON = b"hearth-ks-seal1"
_CHECK_PERSON = b"hearth-ks-check"


class MasterKeyError(Exception):
    """The master key is missing, malformed, exposed, or not the one the database was sealed
    with. The server must not start."""


class SealError(Exception):
    """A sealed blob did not open: wrong master key, wrong DID, or tampered data."""


class Sealer:
    """Seals and opens per-DID private key material under one master key."""

    def __init__(self, master_key: bytes) -> None:
        if len(master_key) != MASTER_KEY_LEN:
            raise MasterKeyError(f"master key must be {MASTER_KEY_LEN} bytes")
        self._master = master_key

    def __repr__(self) -> str:
        return "Sealer(<master key>)"

    @property
    def fingerprint(self) -> str:
        """A keyed hash of the master key, safe to store beside the sealed data."""
        return nacl.hash.blake2b(
            b"fingerprint", key=self._master, person=_CHECK_PERSON, encoder=nacl.encoding.HexEncoder
        ).decode("ascii")

    def _box(self, did: str) -> nacl.secret.SecretBox:
        subkey = nacl.hash.blake2b(
            did.encode("utf-8"),
            key=self._master,
            digest_size=MASTER_KEY_LEN,
            person=_SEAL_PERSON,
            encoder=nacl.encoding.RawEncoder,
        )
        return nacl.secret.SecretBox(subkey)

    def seal(self, did: str, plaintext: bytes) -> bytes:
        """nonce || ciphertext || tag, bound to `did`."""
        return bytes(self._box(did).encrypt(plaintext))

    def open(self, did: str, sealed: bytes) -> bytes:
        try:
            return bytes(self._box(did).decrypt(sealed))
        except nacl.exceptions.CryptoError as e:
            raise SealError("sealed private key does not open for this DID") from e


def parse_master_key(text: str) -> bytes:
    """64 hex characters -> 32 bytes."""
    text = text.strip()
    try:
        key = bytes.fromhex(text)
    except ValueError as e:
        raise MasterKeyError("master key must be 64 hexadecimal characters") from e
    if len(key) != MASTER_KEY_LEN:
        raise MasterKeyError("master key must be 64 hexadecimal characters")
    return key


def load_or_create_master_key(path: Path) -> bytes:
    """Read the master key file, or create it (mode 0600, fsynced) if absent.

    Refuses a file that group or others may read or write: a readable master key
    is as good as a database of clear-text private keys.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        return _create(path)
    with os.fdopen(fd, "r", encoding="ascii") as f:
        mode = os.fstat(f.fileno()).st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise MasterKeyError(
                f"{path} is accessible to group or others (mode {stat.S_IMODE(mode):o}); "
                "run chmod 600 on it"
            )
        try:
            return parse_master_key(f.read(256))
        except UnicodeDecodeError as e:
            raise MasterKeyError(f"{path} is not a hex master key") from e


def _create(path: Path) -> bytes:
    private_dir(path.parent, tighten=False)
    key = nacl.utils.random(MASTER_KEY_LEN)
    tmp = path.with_name(path.name + ".tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)  # whatever the umask says
        os.write(fd, key.hex().encode("ascii") + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    # link() fails if another process created the file meanwhile: then use theirs.
    try:
        os.link(tmp, path)
    except FileExistsError:
        tmp.unlink()
        return load_or_create_master_key(path)
    tmp.unlink()
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return key

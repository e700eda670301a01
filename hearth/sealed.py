"""Sealed mail: end-to-end encryption of notification payloads between DIDs.

A sender seals a payload for one recipient's X25519 encryption key (from the
keyserver, or the recipient's own did:key) and signs it, inside the ciphertext,
with its Ed25519 signing key. The router and the push service only ever see
the sealed bytes; the recipient learns who wrote it and that nobody changed it.

Construction (no I/O here):

- signed bytes = ``"hearth.sealed.v1\\0"`` || lp(sender DID) || lp(recipient DID)
  || lp(msgId) || payload, where lp() is a u16 big-endian length then UTF-8.
  Binding both DIDs and the msgId means a recipient cannot re-target a sealed
  mail to somebody else, nor replay it under another msgId, without the
  signature failing.
- inner plaintext = 0x01 || lp(sender DID) || lp(msgId) || signature(64) || payload
- sealed = NaCl SealedBox(recipient X25519 public key).encrypt(inner): an
  ephemeral X25519 key per mail, XSalsa20-Poly1305, 48 bytes of overhead.

Opening is two steps because the sender's signing key usually comes from an
(async) keyserver lookup: :func:`decrypt_sealed` gives the still-unverified
:class:`SealedContents` (only to learn who claims to have sent it), then
:meth:`SealedContents.verify` checks the signature and returns an
:class:`OpenedMail`. :func:`open_sealed` does both when the key is at hand.
Every failure raises a subclass of :class:`SealedError`, nothing else.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

import nacl.exceptions
import nacl.public
import nacl.signing

from hearth.keys import KeyFormatError, KeyType, PublicKey
from hearth.types import Did

VERSION = 1
DOMAIN = b"hearth.sealed.v1\x00"
SIGNATURE_LEN = 64
BOX_OVERHEAD = 48  # ephemeral X25519 public key (32) + Poly1305 tag (16)
MAX_DID_LEN = 2048
MAX_MSG_ID_LEN = 256


class SealedError(ValueError):
    """A sealed mail could not be opened. Subclasses say why."""


class SealedDecryptError(SealedError):
    """Not sealed for this key, or the ciphertext was altered."""


class SealedFormatError(SealedError):
    """Decrypted, but the inner structure is malformed (or an argument is)."""


class SealedSignatureError(SealedError):
    """The sender's signature does not verify with any of the given keys."""


class SealedMismatchError(SealedError):
    """Authentic, but for another recipient, sender or msgId than expected."""


class Ed25519Signer(Protocol):
    """Anything that makes detached Ed25519 signatures (e.g. `hearth.jwt.Signer`)."""

    def sign(self, message: bytes) -> bytes: ...


class _SeedSigner:
    def __init__(self, key: nacl.signing.SigningKey) -> None:
        self._key = key

    def sign(self, message: bytes) -> bytes:
        return bytes(self._key.sign(message).signature)


@dataclass(frozen=True, slots=True)
class OpenedMail:
    """A verified mail: `sender` really wrote `payload` for `recipient` under `msg_id`."""

    sender: Did
    recipient: Did
    msg_id: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class SealedContents:
    """Decrypted but NOT yet authenticated: call `verify` before trusting anything."""

    claimed_sender: Did
    recipient: Did
    msg_id: str
    signature: bytes
    payload: bytes

    def verify(
        self,
        sender_keys: PublicKey | Iterable[PublicKey] | None = None,
        *,
        expected_sender: str | None = None,
        expected_msg_id: str | None = None,
    ) -> OpenedMail:
        """Check the signature against the sender's Ed25519 key(s) and the expectations.

        `sender_keys`: the claimed sender's current signing key, or several
        (current and `previous` from the keyserver). When None, the claimed
        sender must be a did:key, whose key is the DID itself. Pass the
        router's `fromDid` as `expected_sender` and its msgId as
        `expected_msg_id` so a mail cannot be presented under other ids.
        """
        if expected_sender is not None and expected_sender != self.claimed_sender:
            raise SealedMismatchError("sealed mail names another sender")
        if expected_msg_id is not None and expected_msg_id != self.msg_id:
            raise SealedMismatchError("sealed mail carries another msgId")
        keys = _candidate_keys(self.claimed_sender, sender_keys)
        message = signed_bytes(self.claimed_sender, self.recipient, self.msg_id, self.payload)
        for key in keys:
            if key.type is KeyType.ED25519 and key.verify(message, self.signature):
                return OpenedMail(self.claimed_sender, self.recipient, self.msg_id, self.payload)
        raise SealedSignatureError("sender signature does not verify")


def _candidate_keys(
    sender: Did, sender_keys: PublicKey | Iterable[PublicKey] | None
) -> list[PublicKey]:
    if sender_keys is None:
        try:
            return [PublicKey.from_did_key(sender)]
        except KeyFormatError as e:
            raise SealedSignatureError(
                "sender is not a did:key; its signing key must be given"
            ) from e
    if isinstance(sender_keys, PublicKey):
        return [sender_keys]
    return list(sender_keys)


def _lp(text: str, limit: int, what: str) -> bytes:
    raw = text.encode("utf-8")
    if not raw or len(raw) > limit:
        raise SealedFormatError(f"{what} must be 1..{limit} bytes")
    return struct.pack(">H", len(raw)) + raw


def signed_bytes(sender: str, recipient: str, msg_id: str, payload: bytes) -> bytes:
    """What the sender signs; exposed so other implementations can be checked against it."""
    return b"".join(
        (
            DOMAIN,
            _lp(sender, MAX_DID_LEN, "sender DID"),
            _lp(recipient, MAX_DID_LEN, "recipient DID"),
            _lp(msg_id, MAX_MSG_ID_LEN, "msgId"),
            payload,
        )
    )


def did_key_encryption_key(did: str) -> PublicKey:
    """The X25519 key of an Ed25519 did:key: its Montgomery form, as the keyserver publishes.

    The owner opens with its Ed25519 signing key (see `open_sealed`).
    """
    try:
        key = PublicKey.from_did_key(did)
    except KeyFormatError as e:
        raise SealedFormatError(f"recipient is not a usable did:key: {e}") from e
    if key.type is not KeyType.ED25519:
        raise SealedFormatError("only Ed25519 did:keys have a derived encryption key")
    try:
        raw = nacl.signing.VerifyKey(key.raw).to_curve25519_public_key()
    except nacl.exceptions.RuntimeError as e:
        raise SealedFormatError("did:key is not a valid Ed25519 point") from e
    return PublicKey(KeyType.X25519, bytes(raw))


def _x25519_public(key: PublicKey | bytes | str) -> nacl.public.PublicKey:
    if isinstance(key, str):
        try:
            key = (
                PublicKey.from_did_key(key)
                if key.startswith("did:key:")
                else PublicKey.from_multibase(key)
            )
        except KeyFormatError as e:
            raise SealedFormatError(f"recipient key: {e}") from e
    if isinstance(key, PublicKey):
        if key.type is not KeyType.X25519:
            raise SealedFormatError("recipient key must be an X25519 encryption key")
        key = key.raw
    if len(key) != 32:
        raise SealedFormatError("recipient key must be 32 bytes")
    return nacl.public.PublicKey(key)


def _signer(sender_key: Ed25519Signer | nacl.signing.SigningKey | bytes) -> Ed25519Signer:
    if isinstance(sender_key, bytes):
        if len(sender_key) != 32:
            raise SealedFormatError("Ed25519 seed must be 32 bytes")
        return _SeedSigner(nacl.signing.SigningKey(sender_key))
    if isinstance(sender_key, nacl.signing.SigningKey):
        return _SeedSigner(sender_key)
    return sender_key


def seal(
    payload: bytes,
    *,
    sender: str,
    sender_key: Ed25519Signer | nacl.signing.SigningKey | bytes,
    recipient: str,
    recipient_key: PublicKey | bytes | str | None = None,
    msg_id: str,
) -> bytes:
    """Sign `payload` as `sender` and encrypt it for `recipient`'s X25519 key.

    `sender_key` is the sender's Ed25519 signing key (a 32-byte seed, a
    `nacl.signing.SigningKey`, or a `hearth.jwt.Signer`); `recipient_key` is
    the recipient's X25519 key as a `PublicKey`, a multibase / did:key
    string, or 32 raw bytes (None: the recipient is an Ed25519 did:key and
    its derived key is used). Use the same `msg_id` in the router's `mail`
    frame. The result is `len(payload) + sealed_overhead(sender, msg_id)` bytes.
    """
    if recipient_key is None:
        recipient_key = did_key_encryption_key(recipient)
    box = nacl.public.SealedBox(_x25519_public(recipient_key))
    signature = _signer(sender_key).sign(signed_bytes(sender, recipient, msg_id, payload))
    if len(signature) != SIGNATURE_LEN:
        raise SealedFormatError("signer did not produce a 64-byte Ed25519 signature")
    inner = b"".join(
        (
            bytes((VERSION,)),
            _lp(sender, MAX_DID_LEN, "sender DID"),
            _lp(msg_id, MAX_MSG_ID_LEN, "msgId"),
            signature,
            payload,
        )
    )
    return bytes(box.encrypt(inner))


def sealed_overhead(sender: str, msg_id: str) -> int:
    """Bytes `seal` adds to a payload: ciphertext overhead plus the signed header."""
    return BOX_OVERHEAD + 1 + 2 + len(sender.encode()) + 2 + len(msg_id.encode()) + SIGNATURE_LEN


RecipientPrivateKey = nacl.public.PrivateKey | nacl.signing.SigningKey | bytes


def _x25519_private(key: RecipientPrivateKey) -> nacl.public.PrivateKey:
    if isinstance(key, nacl.public.PrivateKey):
        return key
    if isinstance(key, nacl.signing.SigningKey):  # a did:key owner's signing key
        return key.to_curve25519_private_key()
    if len(key) != 32:
        raise SealedFormatError("X25519 private key must be 32 bytes")
    return nacl.public.PrivateKey(key)


def decrypt_sealed(
    sealed: bytes, *, recipient: str, recipient_key: RecipientPrivateKey
) -> SealedContents:
    """Decrypt with the recipient's X25519 private key; the result is not yet verified.

    `recipient_key`: an X25519 private key (or its 32 bytes), or, for a
    did:key recipient using its derived key, its Ed25519 `SigningKey`.
    """
    box = nacl.public.SealedBox(_x25519_private(recipient_key))
    try:
        inner = box.decrypt(bytes(sealed))
    except (nacl.exceptions.CryptoError, ValueError, TypeError) as e:
        raise SealedDecryptError("cannot decrypt: not sealed for this key, or altered") from e
    view = memoryview(inner)
    if len(view) < 1 or view[0] != VERSION:
        raise SealedFormatError("unknown sealed mail version")
    pos = 1
    sender, pos = _read_lp(view, pos, MAX_DID_LEN, "sender DID")
    msg_id, pos = _read_lp(view, pos, MAX_MSG_ID_LEN, "msgId")
    if len(view) < pos + SIGNATURE_LEN:
        raise SealedFormatError("truncated signature")
    signature = bytes(view[pos : pos + SIGNATURE_LEN])
    payload = bytes(view[pos + SIGNATURE_LEN :])
    return SealedContents(Did(sender), Did(recipient), msg_id, signature, payload)


def _read_lp(view: memoryview, pos: int, limit: int, what: str) -> tuple[str, int]:
    if len(view) < pos + 2:
        raise SealedFormatError(f"truncated {what}")
    (n,) = struct.unpack_from(">H", view, pos)
    pos += 2
    if n == 0 or n > limit or len(view) < pos + n:
        raise SealedFormatError(f"bad {what} length")
    try:
        text = bytes(view[pos : pos + n]).decode("utf-8")
    except UnicodeDecodeError as e:
        raise SealedFormatError(f"{what} is not UTF-8") from e
    return text, pos + n


def open_sealed(
    sealed: bytes,
    *,
    recipient: str,
    recipient_key: RecipientPrivateKey,
    sender_keys: PublicKey | Iterable[PublicKey] | None = None,
    expected_sender: str | None = None,
    expected_msg_id: str | None = None,
) -> OpenedMail:
    """Decrypt and verify in one go; see `decrypt_sealed` and `SealedContents.verify`."""
    contents = decrypt_sealed(sealed, recipient=recipient, recipient_key=recipient_key)
    return contents.verify(
        sender_keys, expected_sender=expected_sender, expected_msg_id=expected_msg_id
    )

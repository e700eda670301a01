"""Signing ops and checking their signatures, with a pluggable key lookup.

A did:key author signs with the DID's own Ed25519 key. Any other DID (did:plc,
did:web) signs with an Ed25519 key the caller's `KeyLookup` names for it: its
keyserver signing key (current and previous), or a key it registered. The
lookup is synchronous so this core stays pure: a service fetches keys first
(asynchronously, cached), then verifies. Cost: one Ed25519 verification per
candidate key (libsodium), about 50 us each on a small machine (bench/spaces.py).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import nacl.exceptions
import nacl.signing

from hearth.keys import KeyFormatError, KeyType, PublicKey
from hearth.spaces.encoding import Signer, invite_input, op_id_of, signing_input
from hearth.spaces.errors import OpError
from hearth.spaces.ops import Op, OpId, SignedOp, encode_signed, op_bytes
from hearth.types import Did

# The Ed25519 keys that may sign for a DID other than a did:key; empty when unknown.
KeyLookup = Callable[[Did], Sequence[PublicKey]]


def no_other_keys(did: Did) -> Sequence[PublicKey]:
    """The default lookup: only did:key authors can be verified."""
    return ()


def keys_for(did: Did, lookup: KeyLookup = no_other_keys) -> Sequence[PublicKey]:
    if did.startswith("did:key:"):
        return _did_key(did)
    return [k for k in lookup(did) if k.type is KeyType.ED25519]


@functools.lru_cache(maxsize=4096)
def _did_key(did: str) -> tuple[PublicKey, ...]:
    # Decoding base58 costs more than the cache lookup; a space's authors repeat.
    try:
        key = PublicKey.from_did_key(did)
    except KeyFormatError:
        return ()
    # Only the canonical spelling: another encoding of the same key (a longer
    # varint, say) is a different DID string, and every replica must agree.
    return (key,) if key.type is KeyType.ED25519 and key.did_key == did else ()


def verify_op(signed: SignedOp, lookup: KeyLookup = no_other_keys) -> None:
    """Raise OpError('unknown-key' / 'bad-signature') unless the author signed `signed`."""
    keys = keys_for(signed.author, lookup)
    if not keys:
        raise OpError("unknown-key", f"no Ed25519 key known for {signed.author[:80]}")
    message = signing_input(signed.op_bytes)
    if not any(_ed25519_ok(k.raw, message, signed.sig) for k in keys):
        raise OpError("bad-signature", f"signature does not match {signed.author[:80]}")


def _ed25519_ok(raw: bytes, message: bytes, sig: bytes) -> bool:
    # libsodium's crypto_sign_verify_detached: twice as fast as OpenSSL's here, and
    # strict (non-canonical S, small-order or non-canonical points are refused), the
    # semantics docs/spaces.md asks of every implementation.
    try:
        nacl.signing.VerifyKey(raw).verify(message, sig)
    except (nacl.exceptions.BadSignatureError, ValueError, TypeError):
        return False
    return True


def sign_op(op: Op, signer: Signer) -> SignedOp:
    """Sign `op` and return it as it travels (the caller owns the key's DID)."""
    body = op_bytes(op)
    sig = signer.sign(signing_input(body))
    return SignedOp(OpId(op_id_of(body)), op, sig, encode_signed(op, sig))


def sign_invite(invite_id: OpId, joiner: Did, invite_signer: Signer) -> str:
    """The `inviteSig` of a join: the invite key (the link's secret) admits `joiner`."""
    return invite_signer.sign(invite_input(invite_id, joiner)).hex()


def invite_sig_ok(key_multibase: str, invite_id: OpId, joiner: Did, sig_hex: str) -> bool:
    try:
        key = PublicKey.from_multibase(key_multibase)
    except KeyFormatError:
        return False
    return _ed25519_ok(key.raw, invite_input(invite_id, joiner), bytes.fromhex(sig_hex))

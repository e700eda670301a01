from __future__ import annotations

import nacl.bindings
import nacl.public
import nacl.signing
import pytest

from hearth.jwt import Signer
from hearth.keys import KeyFormatError, KeyType, PublicKey
from keyserver.keypair import (
    ED25519_PRIV,
    X25519_PRIV,
    KeyPair,
    PublicPair,
    did_key_pair,
    parse_private_multibase,
)


def test_generate_and_rebuild() -> None:
    pair = KeyPair.generate()
    assert pair.public.signing.type is KeyType.ED25519
    assert pair.public.encryption.type is KeyType.X25519
    again = KeyPair.from_private_bytes(pair.private_bytes())
    assert again == pair
    assert bytes(nacl.signing.SigningKey(pair.signing_seed).verify_key) == pair.public.signing.raw
    x = nacl.public.PrivateKey(pair.encryption_secret).public_key
    assert bytes(x) == pair.public.encryption.raw
    assert pair.signing_seed.hex() not in repr(pair)
    assert pair.encryption_secret.hex() not in repr(pair)


def test_private_multibase_round_trip() -> None:
    pair = KeyPair.generate()
    assert pair.signing_private_multibase.startswith("z3u2")  # multicodec ed25519-priv
    assert parse_private_multibase(pair.signing_private_multibase) == (
        ED25519_PRIV,
        pair.signing_seed,
    )
    assert parse_private_multibase(pair.encryption_private_multibase) == (
        X25519_PRIV,
        pair.encryption_secret,
    )
    for bad in ("", "abc", "z" + "1" * 10, pair.public.signing.multibase):
        with pytest.raises(KeyFormatError):
            parse_private_multibase(bad)


def test_public_pair_checks_types() -> None:
    pair = KeyPair.generate().public
    with pytest.raises(KeyFormatError):
        PublicPair(pair.encryption, pair.signing)


def test_did_key_pair() -> None:
    signer = Signer.generate(KeyType.ED25519)
    derived = did_key_pair(signer.did_key)
    assert derived is not None
    assert derived.signing == signer.public_key
    assert derived.encryption == PublicKey(
        KeyType.X25519, nacl.bindings.crypto_sign_ed25519_pk_to_curve25519(signer.public_key.raw)
    )
    assert did_key_pair(Signer.generate(KeyType.P256).did_key) is None
    assert did_key_pair("did:key:zzzz") is None
    assert did_key_pair(PublicKey(KeyType.ED25519, b"\xff" * 32).did_key) is None  # not a point
    # A did:key naming an X25519 key cannot sign: no keys.
    assert did_key_pair(derived.encryption.did_key) is None

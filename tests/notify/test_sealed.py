"""hearth.sealed: only the recipient opens, the sender is authenticated, tampering is rejected."""

from __future__ import annotations

import nacl.public
import nacl.signing
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hearth.jwt import Signer
from hearth.keys import KeyType, PublicKey
from hearth.sealed import (
    SealedDecryptError,
    SealedError,
    SealedFormatError,
    SealedMismatchError,
    SealedSignatureError,
    decrypt_sealed,
    did_key_encryption_key,
    open_sealed,
    seal,
    sealed_overhead,
    signed_bytes,
)


class User:
    def __init__(self) -> None:
        self.signing = nacl.signing.SigningKey.generate()
        self.enc = nacl.public.PrivateKey.generate()
        self.signing_pub = PublicKey(KeyType.ED25519, bytes(self.signing.verify_key))
        self.enc_pub = PublicKey(KeyType.X25519, bytes(self.enc.public_key))
        self.did = self.signing_pub.did_key


ALICE, BOB, CAROL = User(), User(), User()


def sealed_for_bob(payload: bytes = b"hello bob", msg_id: str = "m1") -> bytes:
    return seal(
        payload,
        sender=ALICE.did,
        sender_key=ALICE.signing,
        recipient=BOB.did,
        recipient_key=BOB.enc_pub,
        msg_id=msg_id,
    )


def test_round_trip_authenticates_sender() -> None:
    sealed = sealed_for_bob()
    assert b"hello bob" not in sealed
    assert len(sealed) == len(b"hello bob") + sealed_overhead(ALICE.did, "m1")
    mail = open_sealed(sealed, recipient=BOB.did, recipient_key=BOB.enc)
    assert (mail.sender, mail.recipient, mail.msg_id, mail.payload) == (
        ALICE.did,
        BOB.did,
        "m1",
        b"hello bob",
    )
    # with explicit keys (as from the keyserver) and the router's ids
    mail = open_sealed(
        sealed,
        recipient=BOB.did,
        recipient_key=bytes(BOB.enc),
        sender_keys=[CAROL.signing_pub, ALICE.signing_pub],
        expected_sender=ALICE.did,
        expected_msg_id="m1",
    )
    assert mail.payload == b"hello bob"


def test_key_forms_accepted() -> None:
    signer = Signer.from_ed25519_seed(bytes(ALICE.signing))
    for rkey in (BOB.enc_pub, BOB.enc_pub.multibase, BOB.enc_pub.did_key, BOB.enc_pub.raw):
        for skey in (signer, bytes(ALICE.signing), ALICE.signing):
            sealed = seal(
                b"x", sender=ALICE.did, sender_key=skey, recipient=BOB.did,
                recipient_key=rkey, msg_id="k",
            )  # fmt: skip
            assert open_sealed(sealed, recipient=BOB.did, recipient_key=BOB.enc).payload == b"x"


def test_only_the_recipient_can_open() -> None:
    sealed = sealed_for_bob()
    with pytest.raises(SealedDecryptError):
        open_sealed(sealed, recipient=CAROL.did, recipient_key=CAROL.enc)
    with pytest.raises(SealedDecryptError):
        open_sealed(sealed, recipient=ALICE.did, recipient_key=ALICE.enc)


def test_every_flipped_bit_is_rejected() -> None:
    sealed = sealed_for_bob(b"p" * 40)
    for i in range(len(sealed)):
        tampered = bytearray(sealed)
        tampered[i] ^= 0x01
        with pytest.raises(SealedDecryptError):
            open_sealed(bytes(tampered), recipient=BOB.did, recipient_key=BOB.enc)
    for cut in (0, 1, 47, 48, len(sealed) - 1):
        with pytest.raises(SealedDecryptError):
            open_sealed(sealed[:cut], recipient=BOB.did, recipient_key=BOB.enc)


def _reseal(inner: bytes, to: User) -> bytes:
    return bytes(nacl.public.SealedBox(to.enc.public_key).encrypt(inner))


def test_forged_signature_rejected() -> None:
    # An attacker who knows Bob's public key seals its own inner plaintext naming Alice.
    good = decrypt_sealed(sealed_for_bob(), recipient=BOB.did, recipient_key=BOB.enc)
    did = ALICE.did.encode()
    header = bytes((1,)) + len(did).to_bytes(2, "big") + did + (2).to_bytes(2, "big") + b"m1"
    forged_payload = _reseal(header + good.signature + b"pay me", BOB)
    with pytest.raises(SealedSignatureError):
        open_sealed(forged_payload, recipient=BOB.did, recipient_key=BOB.enc)
    mallory_sig = bytes(CAROL.signing.sign(signed_bytes(ALICE.did, BOB.did, "m1", b"x")).signature)
    with pytest.raises(SealedSignatureError):
        open_sealed(_reseal(header + mallory_sig + b"x", BOB), recipient=BOB.did,
                    recipient_key=BOB.enc)  # fmt: skip
    # a key of the wrong type never verifies
    with pytest.raises(SealedSignatureError):
        open_sealed(sealed_for_bob(), recipient=BOB.did, recipient_key=BOB.enc,
                    sender_keys=ALICE.enc_pub)  # fmt: skip


def test_retargeting_and_msg_id_binding() -> None:
    # Bob decrypts Alice's mail and re-seals the same inner bytes for Carol:
    # Carol checks against her own DID and the signature fails.
    inner = bytes(nacl.public.SealedBox(BOB.enc).decrypt(sealed_for_bob()))
    with pytest.raises(SealedSignatureError):
        open_sealed(_reseal(inner, CAROL), recipient=CAROL.did, recipient_key=CAROL.enc)
    # The router header must agree with what was signed.
    with pytest.raises(SealedMismatchError):
        open_sealed(sealed_for_bob(), recipient=BOB.did, recipient_key=BOB.enc,
                    expected_msg_id="m2")  # fmt: skip
    with pytest.raises(SealedMismatchError):
        open_sealed(sealed_for_bob(), recipient=BOB.did, recipient_key=BOB.enc,
                    expected_sender=CAROL.did)  # fmt: skip


def test_non_did_key_sender_needs_a_key() -> None:
    sealed = seal(b"x", sender="did:plc:abc", sender_key=ALICE.signing, recipient=BOB.did,
                  recipient_key=BOB.enc_pub, msg_id="z")  # fmt: skip
    with pytest.raises(SealedSignatureError):
        open_sealed(sealed, recipient=BOB.did, recipient_key=BOB.enc)
    contents = decrypt_sealed(sealed, recipient=BOB.did, recipient_key=BOB.enc)
    assert contents.claimed_sender == "did:plc:abc"
    assert contents.verify(ALICE.signing_pub).sender == "did:plc:abc"


def test_bad_arguments() -> None:
    with pytest.raises(SealedFormatError):
        seal(b"x", sender=ALICE.did, sender_key=ALICE.signing, recipient=BOB.did,
             recipient_key=BOB.signing_pub, msg_id="m")  # fmt: skip
    with pytest.raises(SealedFormatError):
        seal(b"x", sender=ALICE.did, sender_key=ALICE.signing, recipient=BOB.did,
             recipient_key=BOB.enc_pub, msg_id="")  # fmt: skip
    with pytest.raises(SealedFormatError):
        seal(b"x", sender=ALICE.did, sender_key=b"short", recipient=BOB.did,
             recipient_key=BOB.enc_pub, msg_id="m")  # fmt: skip


def test_malformed_inner_structures() -> None:
    for inner in (b"", b"\x02abc", b"\x01\x00", b"\x01\x00\x00", b"\x01\x00\x05ab",
                  b"\x01\x00\x01\xff\x00\x01m" + b"s" * 64,
                  b"\x01\x00\x01a\x00\x01m" + b"s" * 63):  # fmt: skip
        with pytest.raises(SealedFormatError):
            decrypt_sealed(_reseal(inner, BOB), recipient=BOB.did, recipient_key=BOB.enc)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_opener_on_arbitrary_bytes_raises_only_sealed_error(data: bytes) -> None:
    with pytest.raises(SealedError):
        open_sealed(data, recipient=BOB.did, recipient_key=BOB.enc)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_opener_on_arbitrary_inner_plaintext(inner: bytes) -> None:
    # Correctly encrypted for Bob, arbitrary content: never anything but SealedError.
    with pytest.raises(SealedError):
        open_sealed(_reseal(inner, BOB), recipient=BOB.did, recipient_key=BOB.enc)


@settings(max_examples=100, deadline=None)
@given(
    payload=st.binary(max_size=2000),
    msg_id=st.text(min_size=1, max_size=60),
    flips=st.lists(st.integers(min_value=0), min_size=1, max_size=4),
)
def test_round_trip_and_mutation(payload: bytes, msg_id: str, flips: list[int]) -> None:
    sealed = sealed_for_bob(payload, msg_id)
    mail = open_sealed(sealed, recipient=BOB.did, recipient_key=BOB.enc, expected_msg_id=msg_id)
    assert mail.payload == payload and mail.msg_id == msg_id
    tampered = bytearray(sealed)
    for f in flips:
        tampered[f % len(tampered)] ^= 0xFF
    if bytes(tampered) != sealed:
        with pytest.raises(SealedError):
            open_sealed(bytes(tampered), recipient=BOB.did, recipient_key=BOB.enc)


def test_did_key_recipient_without_keyserver() -> None:
    # A did:key recipient's encryption key is its own key's Montgomery form;
    # it opens with its Ed25519 signing key.
    sealed = seal(b"local-first", sender=ALICE.did, sender_key=ALICE.signing, recipient=BOB.did,
                  msg_id="dk")  # fmt: skip
    mail = open_sealed(sealed, recipient=BOB.did, recipient_key=BOB.signing)
    assert mail.payload == b"local-first"
    with pytest.raises(SealedDecryptError):
        open_sealed(sealed, recipient=BOB.did, recipient_key=BOB.enc)
    with pytest.raises(SealedFormatError):
        seal(b"x", sender=ALICE.did, sender_key=ALICE.signing, recipient="did:plc:abc",
             msg_id="dk")  # fmt: skip
    with pytest.raises(SealedFormatError):
        did_key_encryption_key(BOB.enc_pub.did_key)  # an X25519 did:key has no derived key

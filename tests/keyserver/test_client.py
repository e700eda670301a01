"""`keyserver.client` against a real keyserver: the sealed-mail flow of the
notifications work, end to end (keys from the keyserver, `hearth.sealed` to use them)."""

from __future__ import annotations

import nacl.public
import nacl.signing
import pytest

from hearth import sealed
from hearth.keys import KeyType, PublicKey
from keyserver.client import KeyserverClient, KeyserverError, parse_private
from keyserver.keypair import PublicPair
from tests.keyserver.conftest import KeyIdentity, Keyserver
from tests.world import World


async def test_seal_for_a_did_and_open_with_its_private_keys(
    keyserver: Keyserver, world: World
) -> None:
    alice = world.new_plc_identity(KeyType.P256)
    bob = world.new_web_identity(KeyType.SECP256K1)
    async with KeyserverClient(keyserver.url) as ks:
        aud = await ks.service_did()
        assert aud == keyserver.did
        lxm = "chat.hearth.v1.key.private"
        alice_keys = await ks.private(alice.jwt(aud, lxm))
        bob_public = await ks.public(bob.did)  # Bob never asked: made on first lookup

        mail = sealed.seal(
            b"are you there?",
            sender=alice.did,
            sender_key=alice_keys.current.signing_seed,
            recipient=bob.did,
            recipient_key=bob_public.encryption,
            msg_id="m1",
        )
        bob_keys = await ks.private(bob.jwt(aud, lxm))
        assert bob_keys.current.public == bob_public.keys
        alice_public = await ks.public(alice.did)
        opened = sealed.open_sealed(
            mail,
            recipient=bob.did,
            recipient_key=bob_keys.current.encryption_secret,
            sender_keys=alice_public.signing_keys,
            expected_sender=alice.did,
        )
        assert opened.payload == b"are you there?"

        # Bob rotates; mail sealed to his old key still opens with a previous key.
        rotated = await ks.rotate(bob.jwt(aud, "chat.hearth.v1.key.rotate"))
        assert rotated.current.public != bob_keys.current.public
        again = await ks.private(bob.jwt(aud, lxm))
        assert len(again.encryption_secrets) == 2
        opened_with = []
        for secret in again.encryption_secrets:
            try:
                sealed.open_sealed(
                    mail,
                    recipient=bob.did,
                    recipient_key=secret,
                    sender_keys=alice_public.signing_keys,
                )
                opened_with.append(secret)
            except sealed.SealedError:
                pass
        assert opened_with == [bob_keys.current.encryption_secret]
        assert "private" in repr(again) and again.current.signing_seed.hex() not in repr(again)


async def test_refusals_and_did_key_owners(keyserver: Keyserver) -> None:
    me = KeyIdentity.generate()
    async with KeyserverClient(keyserver.url) as ks:
        with pytest.raises(KeyserverError) as info:
            await ks.public("did:plc:" + "b" * 24)
        assert (info.value.status, info.value.error) == (404, "NotFound")
        with pytest.raises(KeyserverError) as info:
            await ks.private(me.jwt(keyserver.did, "chat.hearth.v1.key.private"))
        assert (info.value.status, info.value.error) == (404, "KeyHeldByOwner")
        with pytest.raises(KeyserverError) as info:
            await ks.private("not-a-token")
        assert info.value.status == 401

        derived = await ks.public(me.did)
        assert derived.keys.signing.did_key == me.did
        enc = nacl.public.PrivateKey.generate()
        mine = PublicPair(me.signer.public_key, PublicKey(KeyType.X25519, bytes(enc.public_key)))
        registered = await ks.register(me.jwt(keyserver.did, "chat.hearth.v1.key.register"), mine)
        assert registered.keys == mine
        assert (await ks.public(me.did)).encryption.raw == bytes(enc.public_key)


def test_answers_are_checked() -> None:
    good_seed = nacl.signing.SigningKey.generate()
    other = nacl.signing.SigningKey.generate()
    enc = nacl.public.PrivateKey.generate()
    from keyserver.keypair import ED25519_PRIV, X25519_PRIV, private_multibase

    body = {
        "did": "did:plc:" + "a" * 24,
        "signingKey": PublicKey(KeyType.ED25519, bytes(other.verify_key)).did_key,
        "encryptionKey": PublicKey(KeyType.X25519, bytes(enc.public_key)).did_key,
        "signingPrivateKey": private_multibase(ED25519_PRIV, bytes(good_seed)),
        "encryptionPrivateKey": private_multibase(X25519_PRIV, bytes(enc)),
        "previous": [],
    }
    with pytest.raises(KeyserverError, match="do not match"):
        parse_private(body)
    body["signingKey"] = PublicKey(KeyType.ED25519, bytes(good_seed.verify_key)).did_key
    assert parse_private(body).current.signing_seed == bytes(good_seed)
    body["encryptionKey"] = body["signingKey"]
    with pytest.raises(KeyserverError):
        parse_private(body)

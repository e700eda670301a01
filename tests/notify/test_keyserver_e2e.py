"""End to end: keys from a real keyserver, sealed mail through a real router, opened by Bob."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import nacl.signing
import pytest

from hearth.config import ServiceConfig, Settings, build_options
from hearth.jwt import Signer
from hearth.keyclient import KeyLookupError, fetch_public_keys, parse_public_keys
from hearth.sealed import SealedSignatureError, decrypt_sealed, did_key_encryption_key, seal
from keyserver.app import OPTIONS, create_app
from tests.notify.helpers import WAIT
from tests.notify.push_endpoint import serve
from tests.notify.routerfix import Client, running_router


class DidKeyUser:
    def __init__(self) -> None:
        seed = os.urandom(32)
        self.signer = Signer.from_ed25519_seed(seed)
        self.signing = nacl.signing.SigningKey(seed)
        self.did = self.signer.did_key


async def test_seal_with_keyserver_keys_and_open_after_routing(tmp_path: Path) -> None:
    alice, bob = DidKeyUser(), DidKeyUser()
    config = ServiceConfig(
        "keyserver",
        Settings(data_dir=tmp_path / "ks"),
        build_options(None, "keyserver", OPTIONS, {}),
    )
    async with (
        serve(create_app(config), lifespan="on") as ks_url,
        httpx.AsyncClient(timeout=WAIT) as http,
        running_router(tmp_path / "router") as r,
    ):
        bob_keys = await fetch_public_keys(http, ks_url, bob.did)
        assert bob_keys.encryption == did_key_encryption_key(bob.did)
        alice_keys = await fetch_public_keys(http, ks_url, alice.did)
        sealed = seal(b"dinner?", sender=alice.did, sender_key=alice.signer, recipient=bob.did,
                      recipient_key=bob_keys.encryption, msg_id="e2e-1")  # fmt: skip
        b = await Client.open(r, bob.signer, device="bob-laptop")
        a = await Client.open(r, alice.signer)
        await a.send(["mail", bob.did, "e2e-1", 60, "normal"], sealed)
        assert (await a.recv())[0] == ["receipt", "e2e-1", "stored"]
        header, body = await b.recv()
        assert header[:3] == ["mail", alice.did, "e2e-1"]
        contents = decrypt_sealed(body, recipient=bob.did, recipient_key=bob.signing)
        mail = contents.verify(alice_keys.signing_keys, expected_sender=header[1],
                               expected_msg_id=header[2])  # fmt: skip
        assert mail.payload == b"dinner?"
        # Bob's keys do not verify Alice's signature
        with pytest.raises(SealedSignatureError):
            contents.verify(bob_keys.signing_keys)
        with pytest.raises(KeyLookupError) as e:
            await fetch_public_keys(http, ks_url, "did:web:nowhere.invalid")
        assert e.value.status is not None and e.value.status >= 400
        await a.close()
        await b.close()


def test_parse_public_keys_rejects_bad_answers() -> None:
    user = DidKeyUser()
    good = {
        "did": user.did,
        "signingKey": user.did,
        "encryptionKey": did_key_encryption_key(user.did).did_key,
        "previous": [],
    }
    assert parse_public_keys(good, user.did).signing_keys[0].did_key == user.did
    for bad in (
        [],
        {**good, "did": "did:key:zOther"},
        {**good, "signingKey": good["encryptionKey"]},
        {**good, "encryptionKey": "zNotAKey"},
        {**good, "previous": [1]},
        {**good, "previous": [{"signingKey": user.did}]},
    ):
        with pytest.raises(KeyLookupError):
            parse_public_keys(bad, user.did)

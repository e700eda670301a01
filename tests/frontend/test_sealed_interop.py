"""The PWA's sealed mail (frontend/src/lib/sealed.ts) and Python's hearth.sealed agree.

The other direction (Python seals, the browser code opens) is in
frontend/tests/sealed.test.ts, with a vector made by hearth.sealed.
"""

from __future__ import annotations

import json
from pathlib import Path

import nacl.bindings
import pytest

from hearth import sealed

VECTOR = Path(__file__).resolve().parents[2] / "frontend/tests/fixtures/sealed-by-js.json"


def test_python_opens_mail_sealed_by_the_browser_code() -> None:
    v = json.loads(VECTOR.read_text())
    seed = bytes.fromhex(v["recipientSeedHex"])
    _public, secret = nacl.bindings.crypto_sign_seed_keypair(seed)
    x25519_secret = nacl.bindings.crypto_sign_ed25519_sk_to_curve25519(secret)
    opened = sealed.open_sealed(
        bytes.fromhex(v["sealedHex"]),
        recipient=v["recipient"],
        recipient_key=x25519_secret,
        expected_sender=v["sender"],
        expected_msg_id=v["msgId"],
    )
    assert opened.payload == v["payload"].encode()
    assert opened.sender == v["sender"]
    with pytest.raises(sealed.SealedMismatchError):
        sealed.open_sealed(
            bytes.fromhex(v["sealedHex"]),
            recipient=v["recipient"],
            recipient_key=x25519_secret,
            expected_msg_id="another",
        )

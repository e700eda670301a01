"""DIDs, handles, did:key, base58/base32 and config parsers, with property-based fuzzing."""

from __future__ import annotations

import argparse

import pytest

from hearth import crockford
from hearth.base58 import Base58Error, b58check_decode, b58check_encode, b58decode, b58encode
from hearth.config import (
    ConfigError,
    add_common_arguments,
    build_settings,
    parse_hostports,
    parse_http_hosts,
)
from hearth.identity import (
    IdentitySyntaxError,
    normalize_handle,
    parse_did,
    web_did_for_url,
    web_did_host,
)
from hearth.jwt import Signer
from hearth.keys import KeyType, PublicKey
from resolver.errors import NotFound
from resolver.policy import did_from_txt

# Test vectors from the did:key method specification.
VECTORS = {
    "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK": KeyType.ED25519,
    "did:key:z6LSeu9HkTHSfLLeUs2nnzUSNedgDUevfNQgQjQC23ZCit6F": KeyType.X25519,
    "did:key:zDnaerDaTF5BXEavCrfRZEk316dpbLsfPDZ3WJ5hRTPFU2169": KeyType.P256,
    "did:key:zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme": KeyType.SECP256K1,
}


@pytest.mark.parametrize(("did", "key_type"), VECTORS.items())
def test_did_key_vectors_round_trip(did: str, key_type: KeyType) -> None:
    key = PublicKey.from_did_key(did)
    assert key.type is key_type
    assert key.did_key == did


@pytest.mark.parametrize("key_type", [KeyType.ED25519, KeyType.P256, KeyType.SECP256K1])
def test_generated_keys_round_trip_and_sign(key_type: KeyType) -> None:
    signer = Signer.generate(key_type)
    key = PublicKey.from_did_key(signer.did_key)
    assert key == signer.public_key
    sig = signer.sign(b"hello")
    assert key.verify(b"hello", sig)
    assert not key.verify(b"hellO", sig)


@pytest.mark.parametrize(
    "did",
    [
        "did:plc:ewvi7nxzyoun6zhxrhs64oiz",
        "did:web:example.com",
        "did:web:127.0.0.1%3A8081",
        "did:web:example.com:users:alice",
        "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK",
        "did:example:abc",
    ],
)
def test_valid_dids(did: str) -> None:
    assert parse_did(did) == did


@pytest.mark.parametrize(
    "did",
    [
        "",
        "did:",
        "did:plc:short",
        "did:plc:UPPERCASEUPPERCASEUPPERC",
        "did:web:",
        "did:web:exa mple.com",
        "did:web:example.com%3Aport",
        "did:key:abc",
        "DID:plc:ewvi7nxzyoun6zhxrhs64oiz",
        "did:web:example.com:",
        "did:x:a%zz",
        "did:x:" + "a" * 3000,
    ],
)
def test_invalid_dids(did: str) -> None:
    with pytest.raises(IdentitySyntaxError):
        parse_did(did)


def test_did_web_port_host() -> None:
    web = web_did_host("did:web:127.0.0.1%3A8081")
    assert web.host == "127.0.0.1:8081" and web.document_url_path == "/.well-known/did.json"
    web = web_did_host("did:web:example.com:u:alice")
    assert web.document_url_path == "/u/alice/did.json"
    assert web_did_for_url("http://127.0.0.1:8702/") == "did:web:127.0.0.1%3A8702"
    assert web_did_for_url("https://keys.example.com") == "did:web:keys.example.com"


@pytest.mark.parametrize(
    ("text", "norm"),
    [("Alice.Example.COM", "alice.example.com"), ("@bob.test", "bob.test"), ("a.b2", "a.b2")],
)
def test_handles_normalise(text: str, norm: str) -> None:
    assert normalize_handle(text) == norm


@pytest.mark.parametrize(
    "bad",
    ["alice", "alice.", ".alice.com", "al_ice.com", "a.1com", "-a.com", "é.com", "a" * 64 + ".com"],
)
def test_invalid_handles(bad: str) -> None:
    with pytest.raises(IdentitySyntaxError):
        normalize_handle(bad)


def test_base58_and_check() -> None:
    for data in (b"", b"\0\0abc", bytes(range(40))):
        assert b58decode(b58encode(data)) == data
        assert b58check_decode(b58check_encode(data)) == data
    with pytest.raises(Base58Error):
        b58check_decode(b58check_encode(b"abc")[:-1] + "z")


def test_crockford() -> None:
    for data in (b"", b"\x00", bytes(range(32))):
        assert crockford.decode(crockford.encode(data)) == data
    assert crockford.encode(b"\xff") == "zw"


def test_config_parsers() -> None:
    assert parse_hostports("127.0.0.1:5353, ::1, [::1]:54") == (
        ("127.0.0.1", 5353),
        ("::1", 53),
        ("::1", 54),
    )
    assert parse_http_hosts("a.test=127.0.0.1:80") == {"a.test": ("127.0.0.1", 80)}
    with pytest.raises(ConfigError):
        parse_http_hosts("nonsense")


def test_allow_private_hosts_setting() -> None:
    parser = argparse.ArgumentParser()
    add_common_arguments(parser)
    args = parser.parse_args([])
    assert not build_settings(args, "resolver", 8701, env={}).allow_private_hosts
    env = {"HEARTH_ALLOW_PRIVATE_HOSTS": "1"}
    assert build_settings(args, "resolver", 8701, env=env).allow_private_hosts
    with pytest.raises(ConfigError):
        build_settings(args, "resolver", 8701, env={"HEARTH_ALLOW_PRIVATE_HOSTS": "maybe"})


def test_txt_records() -> None:
    assert did_from_txt(["v=spf1", "did=did:plc:ewvi7nxzyoun6zhxrhs64oiz"]) is not None
    assert did_from_txt(["hello"]) is None
    with pytest.raises(NotFound):
        did_from_txt(["did=did:plc:ewvi7nxzyoun6zhxrhs64oiz", "did=did:web:x.test"])


@pytest.mark.parametrize(
    "did",
    [
        "did:plc:ewvi7nxzyoun6zhxrhs64oiz\n",  # `$` matches before a final newline
        "did:web:example.com\n",
        "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK\n",
        "did:web:a%3A%C2%B2",  # '²' is str.isdigit() but int() refuses it
        "did:web:a%3A%D9%A3",  # Arabic-Indic 3: int() would read it as port 3
        "did:web:a%3A",  # empty port
        "did:web:a.com%0A",
    ],
)
def test_dids_with_trailing_newline_or_unicode_port_are_invalid(did: str) -> None:
    with pytest.raises(IdentitySyntaxError):
        parse_did(did)


@pytest.mark.parametrize("bad", ["alice.com\n", "alice.com\r\n", "alice.com ", "alice.c\u0663m"])
def test_handles_with_trailing_newline_are_invalid(bad: str) -> None:
    with pytest.raises(IdentitySyntaxError):
        normalize_handle(bad)


def test_did_web_path_segments_are_encoded_again() -> None:
    web = web_did_host("did:web:example.com:a%3Fb:c%23d")
    assert web.path == ("a?b", "c#d")
    assert web.document_url_path == "/a%3Fb/c%23d/did.json"

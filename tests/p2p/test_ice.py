"""TURN REST credentials and the ice-servers answer (pure functions)."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from router.ice import IceConfig, check_turn_credential, ice_servers, parse_urls, turn_credential

DID = "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"


def test_turn_credential_is_the_rest_api_form() -> None:
    cred = turn_credential("s3cret", DID, 1_700_000_000.7, 600)
    assert cred.username == f"1700000600:{DID}"
    expected = hmac.new(b"s3cret", cred.username.encode(), hashlib.sha1).digest()
    assert base64.b64decode(cred.credential) == expected
    assert cred.expires_at == 1_700_000_600


def test_known_vector() -> None:
    # coturn's documentation example scheme: base64(hmac-sha1(secret, "expiry:user"))
    cred = turn_credential("north", "mbzrxpgjys", 1433895918 - 600, 600)
    assert cred.username == "1433895918:mbzrxpgjys"
    assert (
        cred.credential
        == base64.b64encode(
            hmac.new(b"north", b"1433895918:mbzrxpgjys", hashlib.sha1).digest()
        ).decode()
    )


def test_check_refuses_expired_and_forged() -> None:
    cred = turn_credential("k", DID, 1000, 60)
    assert check_turn_credential("k", cred.username, cred.credential, 1059)
    assert not check_turn_credential("k", cred.username, cred.credential, 1061)
    assert not check_turn_credential("other", cred.username, cred.credential, 1000)
    assert not check_turn_credential("k", "9999:" + DID, cred.credential, 1000)


def test_nothing_configured_is_an_empty_list() -> None:
    assert ice_servers(IceConfig(), DID, 0) == (0, {"iceServers": []})


def test_stun_only() -> None:
    config = IceConfig(stun_urls=("stun:a.example:3478",))
    assert ice_servers(config, DID, 0) == (0, {"iceServers": [{"urls": ["stun:a.example:3478"]}]})


def test_turn_without_secret_is_not_offered() -> None:
    config = IceConfig(turn_urls=("turn:t.example",))
    assert ice_servers(config, DID, 0) == (0, {"iceServers": []})


def test_stun_and_turn() -> None:
    config = IceConfig(
        stun_urls=("stun:s:3478",),
        turn_urls=("turn:t:3478?transport=udp", "turns:t:5349"),
        turn_secret="x",
        turn_ttl=120,
    )
    ttl, body = ice_servers(config, DID, 50)
    assert ttl == 120
    stun, turn = body["iceServers"]
    assert stun == {"urls": ["stun:s:3478"]}
    assert turn["urls"] == ["turn:t:3478?transport=udp", "turns:t:5349"]
    assert turn["username"] == f"170:{DID}"
    assert check_turn_credential("x", turn["username"], turn["credential"], 169)


def test_parse_urls() -> None:
    assert parse_urls(" stun:a:1 , turn:b:2?transport=tcp,") == (
        "stun:a:1",
        "turn:b:2?transport=tcp",
    )
    assert parse_urls("") == ()
    for bad in ("http://x", "stun:", "a.example"):
        with pytest.raises(ValueError):
            parse_urls(bad)
    with pytest.raises(ValueError):
        turn_credential("k", DID, 0, 0)

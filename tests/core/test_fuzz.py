"""Every parser of untrusted input raises only its own error type (hypothesis).

Besides random text, the strategies aim at what has broken parsers before:
percent-encoded text, trailing newlines and whitespace (`$` matches before a
final newline), non-ASCII digits (`str.isdigit()` accepts '²' and '٣'), and
deeply nested JSON (RecursionError) inside base64url JWT parts and bodies.
Accepted DIDs and handles must also give URLs httpx can build, since the
resolver fetches them.
"""

from __future__ import annotations

import json
import re
import urllib.parse

import httpx
from hypothesis import given, settings
from hypothesis import strategies as st

from hearth import crockford
from hearth.base58 import Base58Error, b58check_decode, b58decode, b58encode
from hearth.config import ConfigError, parse_hostports, parse_http_hosts
from hearth.identity import IdentitySyntaxError, normalize_handle, parse_did, web_did_host
from hearth.jwt import JwtFormatError, b64url_encode, parse_jwt
from hearth.keys import KeyFormatError, PublicKey
from keyserver.keypair import ED25519_PRIV, X25519_PRIV, parse_private_multibase
from keyserver.messages import BadRequest, RegisterRequest
from resolver.errors import NotFound
from resolver.policy import did_from_txt, did_from_well_known

FUZZ = settings(max_examples=300, deadline=None)

WHITESPACE = st.sampled_from(["\n", "\r\n", " ", "\t", "\x00", "\u2028", "\x0b", "\u00a0"])
# Nd digits ('٣') int() reads; No digits ('²') str.isdigit() accepts but int() refuses.
UNICODE_DIGITS = st.text(
    st.characters(categories=["Nd", "No"]).filter(str.isdigit), min_size=1, max_size=5
)
VALID_DIDS = st.sampled_from(
    [
        "did:plc:ewvi7nxzyoun6zhxrhs64oiz",
        "did:web:example.com",
        "did:web:127.0.0.1%3A8081",
        "did:web:example.com:users:alice",
        "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK",
    ]
)
HOSTNAMES = st.from_regex(r"[a-z0-9]{1,10}(\.[a-z0-9]{1,10}){0,2}", fullmatch=True)


def percent_encoded(text: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return text.map(lambda t: urllib.parse.quote(t, safe=""))


def nested_json(depth: st.SearchStrategy[int] | None = None) -> st.SearchStrategy[str]:
    """`[[[...]]]` or `{"a":{"a":...}}`, deep enough for json.loads to hit the recursion limit."""
    return st.builds(
        lambda n, obj: '{"a":' * n + "1" + "}" * n if obj else "[" * n + "]" * n,
        depth if depth is not None else st.integers(500, 6000),
        st.booleans(),
    )


def did_inputs() -> st.SearchStrategy[str]:
    return st.one_of(
        st.text(max_size=300),
        st.builds(lambda d, w: d + w, VALID_DIDS, WHITESPACE),
        st.builds(lambda w, d: w + d, WHITESPACE, VALID_DIDS),
        st.builds(
            lambda h, d: f"did:web:{h}%3A" + urllib.parse.quote(d), HOSTNAMES, UNICODE_DIGITS
        ),
        st.builds(lambda t: "did:web:" + t, percent_encoded(st.text(max_size=60))),
        st.builds(
            lambda h, t: f"did:web:{h}:" + t, HOSTNAMES, percent_encoded(st.text(max_size=30))
        ),
        st.builds(
            lambda t: "did:plc:" + t, st.text("abcdefghijklmnopqrstuvwxyz234567\n ", max_size=26)
        ),
    )


def handle_inputs() -> st.SearchStrategy[str]:
    return st.one_of(
        st.text(max_size=300),
        st.builds(lambda h, w: h + w, HOSTNAMES, WHITESPACE),
        st.builds(lambda h, d: h + "." + d, HOSTNAMES, UNICODE_DIGITS),
        percent_encoded(st.text(max_size=40)),
    )


def assert_fetchable(url: str) -> None:
    """The resolver would build this URL: httpx must accept it as is."""
    parsed = httpx.URL(url)
    assert parsed.scheme == "https" and parsed.host


@FUZZ
@given(did_inputs())
def test_fuzz_parse_did(text: str) -> None:
    try:
        assert parse_did(text) == text
    except IdentitySyntaxError:
        return
    assert re.fullmatch(r"[\x21-\x7e]+", text), text  # printable ASCII, no whitespace
    if text.startswith("did:web:"):
        web = web_did_host(text)
        hostname, _, port = web.host.partition(":")
        assert not port or (port.isascii() and 0 < int(port) < 65536)
        assert_fetchable(f"https://{web.host}{web.document_url_path}")


@FUZZ
@given(handle_inputs())
def test_fuzz_handle(text: str) -> None:
    try:
        handle = normalize_handle(text)
    except IdentitySyntaxError:
        return
    assert re.fullmatch(r"[a-z0-9.-]+", handle), handle
    assert_fetchable(f"https://{handle}/.well-known/atproto-did")


@FUZZ
@given(st.one_of(did_inputs(), st.builds(lambda d, w: w + d + w, VALID_DIDS, WHITESPACE)))
def test_fuzz_well_known_body(body: str) -> None:
    try:
        did = did_from_well_known(body)
    except NotFound:
        return
    assert did == body.strip()


@FUZZ
@given(
    st.lists(st.one_of(st.text(max_size=60), did_inputs().map(lambda d: "did=" + d)), max_size=5)
)
def test_fuzz_txt(records: list[str]) -> None:
    try:
        did_from_txt(records)
    except NotFound:
        pass


@FUZZ
@given(st.one_of(st.text(max_size=120), st.binary(max_size=60).map(lambda b: "z" + b58encode(b))))
def test_fuzz_multibase(text: str) -> None:
    try:
        PublicKey.from_multibase(text)
    except KeyFormatError:
        pass


def jwt_inputs() -> st.SearchStrategy[str]:
    part = st.one_of(
        nested_json(st.integers(500, 3000)).map(lambda j: b64url_encode(j.encode())),
        st.binary(max_size=60).map(b64url_encode),
        st.text(max_size=40),
    )
    return st.one_of(
        st.text(max_size=400),
        st.builds(lambda h, p, s: f"{h}.{p}.{s}", part, part, part),
    )


@FUZZ
@given(jwt_inputs())
def test_fuzz_jwt(text: str) -> None:
    try:
        parse_jwt(text)
    except JwtFormatError:
        pass


def register_bodies() -> st.SearchStrategy[bytes]:
    key = st.one_of(st.text(max_size=80), did_inputs(), st.integers(), st.none())
    return st.one_of(
        st.binary(max_size=200),
        nested_json().map(str.encode),
        st.builds(
            lambda s, e: json.dumps({"signingKey": s, "encryptionKey": e}).encode(), key, key
        ),
        st.builds(
            lambda n: json.dumps({"signingKey": json.loads("[" * n + "]" * n)}).encode(),
            st.integers(1, 50),
        ),
    )


@FUZZ
@given(register_bodies())
def test_fuzz_register_request(body: bytes) -> None:
    try:
        RegisterRequest.parse(body)
    except BadRequest:
        pass


@FUZZ
@given(
    st.one_of(
        st.text(max_size=120),
        st.binary(max_size=40).map(lambda b: "z" + b58encode(b)),
        st.builds(
            lambda code, raw: "z" + b58encode(code + raw),
            st.sampled_from([bytes([0x80, 0x26]), bytes([0x82, 0x26]), b"\xed\x01"]),
            st.binary(min_size=30, max_size=34),
        ),
    )
)
def test_fuzz_private_multibase(text: str) -> None:
    try:
        code, raw = parse_private_multibase(text)
    except KeyFormatError:
        return
    assert code in (ED25519_PRIV, X25519_PRIV) and len(raw) == 32


@FUZZ
@given(st.text(max_size=100))
def test_fuzz_base58_and_base32(text: str) -> None:
    for fn in (b58decode, b58check_decode):
        try:
            fn(text)
        except Base58Error:
            pass
    try:
        crockford.decode(text)
    except crockford.Base32Error:
        pass


@FUZZ
@given(
    st.one_of(
        st.text(max_size=100),
        st.builds(lambda h, d: f"{h}=127.0.0.1:{d}", HOSTNAMES, UNICODE_DIGITS),
        st.builds(lambda h, d: f"{h}:{d}", HOSTNAMES, UNICODE_DIGITS),
    )
)
def test_fuzz_config(text: str) -> None:
    for fn in (parse_hostports, parse_http_hosts):
        try:
            fn(text)
        except ConfigError:
            pass

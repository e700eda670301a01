"""The keyserver over real HTTP, with real did:plc / did:web identities from `world`."""

from __future__ import annotations

import asyncio
import re
import sqlite3
from typing import Any

import httpx
import nacl.bindings
import nacl.public
import nacl.signing
import pytest

from hearth import crockford, sealed
from hearth.jwt import b64url_encode
from hearth.keys import KeyType, PublicKey
from keyserver.keypair import ED25519_PRIV, X25519_PRIV, parse_private_multibase
from tests.keyserver.conftest import KeyIdentity, Keyserver
from tests.world import Identity, World

PUBLIC = "/xrpc/chat.hearth.v1.key.public"
PRIVATE = "/xrpc/chat.hearth.v1.key.private"
REGISTER = "/xrpc/chat.hearth.v1.key.register"
ROTATE = "/xrpc/chat.hearth.v1.key.rotate"
ROOMY_PUBLIC = "/xrpc/chat.roomy.v0.key.public"
ROOMY_KEY = "/xrpc/chat.roomy.v0.key"


def seeds_of(body: dict[str, Any]) -> tuple[bytes, bytes]:
    """(Ed25519 seed, X25519 secret) of a private-key response, checked against its publics."""
    code, seed = parse_private_multibase(body["signingPrivateKey"])
    assert code == ED25519_PRIV
    code, secret = parse_private_multibase(body["encryptionPrivateKey"])
    assert code == X25519_PRIV
    assert bytes(nacl.signing.SigningKey(seed).verify_key) == signing_raw(body)
    assert bytes(nacl.public.PrivateKey(secret).public_key) == encryption_raw(body)
    return seed, secret


def signing_raw(body: dict[str, Any]) -> bytes:
    key = PublicKey.from_did_key(body["signingKey"])
    assert key.type is KeyType.ED25519
    return key.raw


def encryption_raw(body: dict[str, Any]) -> bytes:
    key = PublicKey.from_did_key(body["encryptionKey"])
    assert key.type is KeyType.X25519
    return key.raw


def keys_of(body: dict[str, Any]) -> tuple[str, str]:
    return body["signingKey"], body["encryptionKey"]


@pytest.fixture(params=["plc-p256", "web-secp256k1"])
def ident(request: pytest.FixtureRequest, world: World) -> Identity:
    if request.param == "plc-p256":
        return world.new_plc_identity(KeyType.P256)
    return world.new_web_identity(KeyType.SECP256K1)


async def test_public_lookup_creates_once(keyserver: Keyserver, ident: Identity) -> None:
    first = await keyserver.public(ident.did)
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["did"] == ident.did and body["previous"] == []
    signing_raw(body), encryption_raw(body)
    for _ in range(3):
        again = await keyserver.public(ident.did)
        assert again.json() == body
    # The owner's private keys are the ones everybody else sees.
    mine = await keyserver.private(ident)
    assert mine.status_code == 200, mine.text
    assert keys_of(mine.json()) == keys_of(body)
    assert mine.headers["cache-control"] == "no-store"
    seeds_of(mine.json())


async def test_private_first_creates_keys(keyserver: Keyserver, ident: Identity) -> None:
    mine = await keyserver.private(ident)
    assert mine.status_code == 200, mine.text
    seed, _ = seeds_of(mine.json())
    public = (await keyserver.public(ident.did)).json()
    assert keys_of(public) == keys_of(mine.json())
    # A signature made with the served seed verifies under the published key.
    sig = nacl.signing.SigningKey(seed).sign(b"hello").signature
    assert PublicKey.from_did_key(public["signingKey"]).verify(b"hello", sig)


UNKNOWN_DIDS = [
    "did:plc:" + "b" * 24,  # not in the PLC directory
    "did:web:nobody.test",  # host serves no document
    "did:example:123",  # a method we never make keys for
]


async def test_unknown_did_404(keyserver: Keyserver) -> None:
    for did in UNKNOWN_DIDS:
        for path in (PUBLIC, ROOMY_PUBLIC):
            r = await keyserver.http.get(path, params={"did": did})
            assert r.status_code == 404, (did, r.text)
            assert r.json()["error"] == "NotFound"
    # Asking did not create anything.
    assert "hearth_keyserver_keys_created_total{" not in (await keyserver.http.get("/metrics")).text


async def test_bad_did_400(keyserver: Keyserver) -> None:
    for params in (
        {},
        {"did": "not-a-did"},
        {"did": "did:plc:short"},
        {"did": "did:web:" + "a" * 3000},
    ):
        r = await keyserver.http.get(PUBLIC, params=params)
        assert r.status_code == 400 and r.json()["error"] == "InvalidRequest", params


async def test_only_the_owner_gets_private_keys(keyserver: Keyserver, world: World) -> None:
    alice = world.new_plc_identity(KeyType.P256)
    bob = world.new_web_identity(KeyType.SECP256K1)
    alice_keys = (await keyserver.private(alice)).json()
    alice_secrets = {alice_keys["signingPrivateKey"], alice_keys["encryptionPrivateKey"]}

    # Bob's perfectly valid token cannot name Alice.
    r = await keyserver.private(bob, did=alice.did)
    assert r.status_code == 403, r.text
    assert r.json()["error"] == "Forbidden"
    assert not any(s in r.text for s in alice_secrets)
    r = await keyserver.http.get(
        ROOMY_KEY, headers=keyserver.auth(bob, "chat.roomy.v0.key"), params={"did": alice.did}
    )
    assert r.status_code == 403
    # Without naming anybody, Bob gets Bob's keys, never Alice's.
    r = await keyserver.private(bob)
    assert r.status_code == 200
    assert r.json()["did"] == bob.did
    assert not any(s in r.text for s in alice_secrets)
    # Naming yourself is fine.
    r = await keyserver.private(alice, did=alice.did)
    assert r.status_code == 200 and keys_of(r.json()) == keys_of(alice_keys)


async def test_token_failures_are_401(keyserver: Keyserver, world: World) -> None:
    from hearth.jwt import Signer, mint_service_jwt

    alice = world.new_plc_identity(KeyType.P256)
    lxm = "chat.hearth.v1.key.private"
    replayed = alice.jwt(keyserver.did, lxm)
    assert (await get_private(keyserver, replayed)).status_code == 200
    impostor = Signer.generate(KeyType.P256)
    cases = {
        "expired": alice.jwt(keyserver.did, lxm, ttl=10, now=1_000_000),
        "wrong aud": alice.jwt("did:web:elsewhere.test", lxm),
        "wrong lxm": alice.jwt(keyserver.did, "chat.hearth.v1.key.rotate"),
        "no lxm": alice.jwt(keyserver.did, None),
        "bad signature": mint_service_jwt(impostor, iss=alice.did, aud=keyserver.did, lxm=lxm),
        "replayed": replayed,
        "garbage": "not.a.token",
        "unknown issuer": mint_service_jwt(
            impostor, iss="did:plc:" + "c" * 24, aud=keyserver.did, lxm=lxm
        ),
    }
    expected = {"expired": "ExpiredToken"}
    for name, token in cases.items():
        r = await get_private(keyserver, token)
        assert r.status_code == 401, name
        body = r.json()
        assert body["error"] == expected.get(name, "InvalidToken"), (name, body)
        assert body["message"], name
        assert "PrivateKey" not in r.text
    for headers in ({}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer"}):
        r = await keyserver.http.get(PRIVATE, headers=headers)
        assert r.status_code == 401
        assert r.json()["error"] == "AuthenticationRequired"
    metrics = (await keyserver.http.get("/metrics")).text
    for reason in ("expired", "bad_audience", "bad_lxm", "bad_signature", "replayed", "missing"):
        assert f'hearth_keyserver_auth_failures_total{{reason="{reason}"}}' in metrics


async def get_private(keyserver: Keyserver, token: str) -> httpx.Response:
    return await keyserver.http.get(PRIVATE, headers={"Authorization": f"Bearer {token}"})


async def test_register_then_private_is_404(keyserver: Keyserver, ident: Identity) -> None:
    served = (await keyserver.private(ident)).json()
    assert keys_of((await keyserver.public(ident.did)).json()) == keys_of(served)
    own_sign = nacl.signing.SigningKey.generate()
    own_enc = nacl.public.PrivateKey.generate()
    body = {
        "signingKey": PublicKey(KeyType.ED25519, bytes(own_sign.verify_key)).did_key,
        "encryptionKey": PublicKey(KeyType.X25519, bytes(own_enc.public_key)).did_key,
    }
    r = await keyserver.http.post(
        REGISTER, json=body, headers=keyserver.auth(ident, "chat.hearth.v1.key.register")
    )
    assert r.status_code == 200, r.text
    public = (await keyserver.public(ident.did)).json()
    assert keys_of(public) == (body["signingKey"], body["encryptionKey"])
    assert [keys_of(p) for p in public["previous"]] == [keys_of(served)]
    assert is_timestamp(public["previous"][0]["validUntil"])

    r = await keyserver.private(ident)
    assert r.status_code == 404
    assert r.json()["error"] == "KeyHeldByOwner"
    assert "owner" in r.json()["message"]
    r = await keyserver.http.get(ROOMY_KEY, headers=keyserver.auth(ident, "chat.roomy.v0.key"))
    assert r.status_code == 404 and r.json()["error"] == "KeyHeldByOwner"
    # Registering the same keys again is a no-op, not a new generation.
    r = await keyserver.http.post(
        REGISTER, json=body, headers=keyserver.auth(ident, "chat.hearth.v1.key.register")
    )
    assert len(r.json()["previous"]) == 1


async def test_register_rejects_bad_bodies(keyserver: Keyserver, world: World) -> None:
    alice = world.new_plc_identity()
    for body in (
        b"not json",
        b"[]",
        b"{}",
        b'{"signingKey": "did:key:zzz", "encryptionKey": "did:key:zzz"}',
        b'{"signingKey": 5, "encryptionKey": null}',
    ):
        r = await keyserver.http.post(
            REGISTER, content=body, headers=keyserver.auth(alice, "chat.hearth.v1.key.register")
        )
        assert r.status_code == 400, (body, r.text)
        assert r.json()["error"] == "InvalidRequest"


async def test_parser_edge_inputs_are_client_errors_never_500(
    keyserver: Keyserver, world: World
) -> None:
    # Trailing newlines (`$` matched before them) and non-ASCII port digits.
    for did in (
        "did:plc:" + "a" * 24 + "\n",
        "did:web:example.test\n",
        "did:web:a.test%3A%C2%B2",
        "did:web:a.test%3A%D9%A3",
    ):
        r = await keyserver.http.get(PUBLIC, params={"did": did})
        assert r.status_code == 400, (did, r.text)
        assert r.json()["error"] == "InvalidRequest"
    # JSON nested deeper than the interpreter's recursion limit, in a body ...
    alice = world.new_plc_identity()
    r = await keyserver.http.post(
        REGISTER,
        content=b"[" * 2000 + b"]" * 2000,
        headers=keyserver.auth(alice, "chat.hearth.v1.key.register"),
    )
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "InvalidRequest"
    # ... and in a token's header.
    deep = b64url_encode(b"[" * 2000 + b"]" * 2000)
    r = await keyserver.http.get(PRIVATE, headers={"Authorization": f"Bearer {deep}.e30.AA"})
    assert r.status_code == 401, r.text
    assert r.json()["error"] == "InvalidToken" and r.json()["message"].startswith("malformed")


async def test_lone_surrogates_in_the_body_are_a_400(keyserver: Keyserver, world: World) -> None:
    alice = world.new_plc_identity()
    sign = PublicKey(KeyType.ED25519, bytes(nacl.signing.SigningKey.generate().verify_key))
    enc = PublicKey(KeyType.X25519, bytes(nacl.public.PrivateKey.generate().public_key))
    keys = b'"signingKey":"%s","encryptionKey":"%s"' % (sign.did_key.encode(), enc.did_key.encode())
    # Escaped, and as the bytes json.loads(bytes) would decode to one.
    for text in (b'"\\udfff"', b'"\xed\xbf\xbf"'):
        r = await keyserver.http.post(
            REGISTER,
            content=b"{%s,%s:1}" % (keys, text),
            headers=keyserver.auth(alice, "chat.hearth.v1.key.register"),
        )
        assert r.status_code == 400, (text, r.text)
        assert r.json()["error"] == "InvalidRequest"
    r = await keyserver.http.post(
        REGISTER,
        content=b'{%s,"\\ud83d\\ude00":1}' % keys,
        headers=keyserver.auth(alice, "chat.hearth.v1.key.register"),
    )
    assert r.status_code == 200, r.text


async def test_public_lookup_never_fetches_private_addresses(keyserver: Keyserver) -> None:
    # An unauthenticated key.public must not make the keyserver fetch from its
    # own network: its own did.json on loopback is the closest such target.
    port = keyserver.url.rsplit(":", 1)[1]
    for did in (f"did:web:127.0.0.1%3A{port}", f"did:web:localhost%3A{port}"):
        r = await keyserver.public(did)
        assert r.status_code == 404, (did, r.text)
    metrics = (await keyserver.http.get("/metrics")).text
    assert "hearth_keyserver_keys_created_total{" not in metrics


async def test_register_rejects_swapped_key_types(keyserver: Keyserver, world: World) -> None:
    alice = world.new_plc_identity()
    x = PublicKey(KeyType.X25519, bytes(nacl.public.PrivateKey.generate().public_key)).did_key
    ed = PublicKey(KeyType.ED25519, bytes(nacl.signing.SigningKey.generate().verify_key)).did_key
    r = await keyserver.http.post(
        REGISTER,
        json={"signingKey": x, "encryptionKey": ed},
        headers=keyserver.auth(alice, "chat.hearth.v1.key.register"),
    )
    assert r.status_code == 400


async def test_register_body_is_bounded(keyserver: Keyserver, world: World) -> None:
    alice = world.new_plc_identity()
    r = await keyserver.http.post(
        REGISTER,
        content=b"{" + b" " * 10_000 + b"}",
        headers=keyserver.auth(alice, "chat.hearth.v1.key.register"),
    )
    assert r.status_code == 413


def is_timestamp(text: str) -> bool:
    return re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", text) is not None


async def test_rotate_keeps_previous(keyserver: Keyserver, ident: Identity) -> None:
    gen0 = (await keyserver.private(ident)).json()
    # Looked up (and so cached) before the rotation: the answers must still change.
    assert keys_of((await keyserver.public(ident.did)).json()) == keys_of(gen0)
    roomy0 = (await keyserver.http.get(ROOMY_PUBLIC, params={"did": ident.did})).json()
    rotated = []
    for _ in range(2):
        r = await keyserver.http.post(
            ROTATE, headers=keyserver.auth(ident, "chat.hearth.v1.key.rotate")
        )
        assert r.status_code == 200, r.text
        rotated.append(r.json())
    gen2 = rotated[-1]
    seeds_of(gen2)
    assert len({keys_of(gen0), keys_of(rotated[0]), keys_of(gen2)}) == 3

    public = (await keyserver.public(ident.did)).json()
    assert keys_of(public) == keys_of(gen2)
    roomy2 = (await keyserver.http.get(ROOMY_PUBLIC, params={"did": ident.did})).json()
    assert roomy2 != roomy0
    assert crockford.decode(roomy2["publicKey"]) == signing_raw(gen2)
    assert [keys_of(p) for p in public["previous"]] == [keys_of(rotated[0]), keys_of(gen0)]
    until = [p["validUntil"] for p in public["previous"]]
    assert all(is_timestamp(t) for t in until) and until[0] >= until[1]

    # The owner can still get old private keys, to read what was sealed for them.
    mine = (await keyserver.private(ident)).json()
    assert keys_of(mine) == keys_of(gen2)
    old = mine["previous"][1]
    assert keys_of(old) == keys_of(gen0)
    assert old["signingPrivateKey"] == gen0["signingPrivateKey"]
    assert old["encryptionPrivateKey"] == gen0["encryptionPrivateKey"]
    seeds_of(old)


async def test_roomy_v0_endpoints(keyserver: Keyserver, ident: Identity) -> None:
    r = await keyserver.http.get(ROOMY_PUBLIC, params={"did": ident.did})
    assert r.status_code == 200, r.text
    public_b32 = r.json()["publicKey"]
    assert re.fullmatch(r"[0-9a-hjkmnp-tv-z]+", public_b32)
    hearth_view = (await keyserver.public(ident.did)).json()
    assert crockford.decode(public_b32) == signing_raw(hearth_view)

    r = await keyserver.http.get(ROOMY_KEY, headers=keyserver.auth(ident, "chat.roomy.v0.key"))
    assert r.status_code == 200, r.text
    assert r.json()["publicKey"] == public_b32
    seed = crockford.decode(r.json()["privateKey"])
    assert len(seed) == 32 and r.json()["privateKey"].islower()
    assert bytes(nacl.signing.SigningKey(seed).verify_key) == crockford.decode(public_b32)
    full = (await keyserver.private(ident)).json()
    assert parse_private_multibase(full["signingPrivateKey"])[1] == seed
    # The hearth lxm does not open the Roomy endpoint, nor the other way round.
    r = await keyserver.http.get(
        ROOMY_KEY, headers=keyserver.auth(ident, "chat.hearth.v1.key.private")
    )
    assert r.status_code == 401


async def test_concurrent_first_lookups_make_one_keypair(
    keyserver: Keyserver, world: World
) -> None:
    ident = world.new_plc_identity()
    responses = await asyncio.gather(*(keyserver.public(ident.did) for _ in range(50)))
    assert {r.status_code for r in responses} == {200}
    assert len({r.text for r in responses}) == 1
    metrics = (await keyserver.http.get("/metrics")).text
    assert 'hearth_keyserver_keys_created_total{how="lookup"} 1.0' in metrics
    conn = sqlite3.connect(keyserver.data_dir / "keyserver" / "keys.sqlite3")
    try:
        rows = conn.execute("SELECT count(*) FROM keys WHERE did = ?", (ident.did,)).fetchone()
    finally:
        conn.close()
    assert rows == (1,)


async def test_rate_limit_behind_a_trusted_proxy(world: World, tmp_path: Any) -> None:
    from tests.keyserver.conftest import running_keyserver

    env = {
        "HEARTH_KEYSERVER_CREATE_BURST": "1",
        "HEARTH_KEYSERVER_CREATE_PER_MINUTE": "0.001",
        "HEARTH_KEYSERVER_CLIENT_IP_HEADER": "X-Forwarded-For",
    }
    async with running_keyserver(world, tmp_path, env) as ks:

        async def lookup(forwarded: str) -> int:
            did = world.new_plc_identity().did
            r = await ks.http.get(
                PUBLIC, params={"did": did}, headers={"X-Forwarded-For": forwarded}
            )
            return r.status_code

        # The proxy appends the real client; what the client wrote before it is ignored.
        assert await lookup("10.0.0.1") == 200
        assert await lookup("10.0.0.2") == 200
        assert await lookup("10.0.0.9, 10.0.0.1") == 429


async def test_creation_is_rate_limited_per_address(world: World, tmp_path: Any) -> None:
    from tests.keyserver.conftest import running_keyserver

    env = {"HEARTH_KEYSERVER_CREATE_BURST": "2", "HEARTH_KEYSERVER_CREATE_PER_MINUTE": "0.001"}
    async with running_keyserver(world, tmp_path, env) as ks:
        idents = [world.new_plc_identity() for _ in range(3)]
        # Concurrent first lookups of one DID are one creation: one token.
        many = await asyncio.gather(*(ks.public(idents[0].did) for _ in range(20)))
        assert {r.status_code for r in many} == {200}
        assert (await ks.public(idents[1].did)).status_code == 200
        r = await ks.public(idents[2].did)
        assert r.status_code == 429
        assert r.json()["error"] == "RateLimitExceeded"
        assert int(r.headers["retry-after"]) >= 1
        # Keys that exist are still served, and the owner can still create its own.
        assert (await ks.public(idents[0].did)).status_code == 200
        assert (await ks.private(idents[2])).status_code == 200
        assert (await ks.public(idents[2].did)).status_code == 200


async def test_rotation_is_limited(world: World, tmp_path: Any) -> None:
    from tests.keyserver.conftest import running_keyserver

    env = {"HEARTH_KEYSERVER_MAX_GENERATIONS": "2", "HEARTH_KEYSERVER_OWNER_BURST": "100"}
    async with running_keyserver(world, tmp_path, env) as ks:
        alice = world.new_plc_identity()
        statuses = []
        for _ in range(3):
            r = await ks.http.post(ROTATE, headers=ks.auth(alice, "chat.hearth.v1.key.rotate"))
            statuses.append(r.status_code)
        assert statuses == [200, 200, 400]
        assert r.json()["error"] == "LimitExceeded"


async def test_upstream_failure_is_502(world: World, tmp_path: Any) -> None:
    from tests.keyserver.conftest import running_keyserver
    from tests.timing import MS

    async with running_keyserver(world, tmp_path, resolver_timeout=300 * MS) as ks:
        ident = world.new_web_identity()
        world.slow_http.add(ident.handle or "")
        r = await ks.public(ident.did)
        assert r.status_code == 502
        assert r.json()["error"] == "UpstreamFailure"


async def test_did_key_identities(keyserver: Keyserver) -> None:
    me = KeyIdentity.generate()
    r = await keyserver.public(me.did)
    assert r.status_code == 200, r.text
    body = r.json()
    # The signing key is the DID itself; the encryption key its X25519 form.
    assert body["signingKey"] == me.did and body["previous"] == []
    seed = me.signer._key.private_bytes_raw()  # type: ignore[union-attr]
    secret = nacl.bindings.crypto_sign_ed25519_sk_to_curve25519(
        bytes(nacl.signing.SigningKey(seed)) + signing_raw(body)
    )
    mail = sealed.seal(
        b"hi",
        sender=me.did,
        sender_key=seed,
        recipient=me.did,
        recipient_key=body["encryptionKey"],
        msg_id="m1",
    )
    opened = sealed.open_sealed(
        mail,
        recipient=me.did,
        recipient_key=secret,
        sender_keys=PublicKey.from_did_key(body["signingKey"]),
    )
    assert opened.payload == b"hi"

    def auth(lxm: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {me.jwt(keyserver.did, lxm)}"}

    r = await keyserver.http.get(PRIVATE, headers=auth("chat.hearth.v1.key.private"))
    assert r.status_code == 404 and r.json()["error"] == "KeyHeldByOwner"
    r = await keyserver.http.post(ROTATE, headers=auth("chat.hearth.v1.key.rotate"))
    assert r.status_code == 400
    # A did:key owner may publish other keys, and that is what others then see.
    enc = nacl.public.PrivateKey.generate()
    other = {
        "signingKey": me.did,
        "encryptionKey": PublicKey(KeyType.X25519, bytes(enc.public_key)).did_key,
    }
    r = await keyserver.http.post(REGISTER, json=other, headers=auth("chat.hearth.v1.key.register"))
    assert r.status_code == 200, r.text
    assert keys_of((await keyserver.public(me.did)).json()) == keys_of(other)
    # A did:key that is not Ed25519 has no keys until it registers some.
    from hearth.jwt import Signer

    p256 = Signer.generate(KeyType.P256).did_key
    assert (await keyserver.public(p256)).status_code == 404


async def test_well_known_health_metrics(keyserver: Keyserver) -> None:
    doc = (await keyserver.http.get("/.well-known/did.json")).json()
    assert doc["id"] == keyserver.did and keyserver.did.startswith("did:web:127.0.0.1%3A")
    ids = {s["id"]: s["serviceEndpoint"] for s in doc["service"]}
    assert ids == {"#hearth_keyserver": keyserver.url, "#roomy_keyserver": keyserver.url}
    health = (await keyserver.http.get("/xrpc/_health")).json()
    assert health["ready"] is True and health["storage"] == "ok" and "version" in health
    r = await keyserver.http.get("/metrics")
    assert r.status_code == 200 and "hearth_keyserver_requests_total" in r.text


async def test_audience_with_a_service_id(keyserver: Keyserver, world: World) -> None:
    """A PDS proxying `atproto-proxy: <did>#roomy_keyserver` may put the fragment in `aud`."""
    alice = world.new_plc_identity()
    for fragment, path, lxm in (
        ("#roomy_keyserver", ROOMY_KEY, "chat.roomy.v0.key"),
        ("#hearth_keyserver", PRIVATE, "chat.hearth.v1.key.private"),
    ):
        token = alice.jwt(keyserver.did + fragment, lxm)
        r = await keyserver.http.get(path, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, r.text
    for aud in (keyserver.did + "#atproto_pds", [keyserver.did], {"x": 1}):
        token = alice.jwt(aud, "chat.hearth.v1.key.private")  # type: ignore[arg-type]
        r = await keyserver.http.get(PRIVATE, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 401, aud
        assert r.json()["error"] == "InvalidToken"

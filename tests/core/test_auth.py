"""Service-auth JWT verification: every accepted and refused case, with distinct reasons."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from hearth.auth import (
    AuthBudget,
    AuthError,
    AuthLimits,
    JtiCache,
    ServiceAuthVerifier,
)
from hearth.jwt import Signer, b64url_decode, b64url_encode, encode_jwt, mint_service_jwt
from hearth.keys import KeyType
from resolver import Resolver
from tests.world import Identity, World

AUD = "did:web:svc.test"
LXM = "chat.hearth.v1.test.method"


@pytest.fixture
async def verifier(world: World) -> AsyncIterator[ServiceAuthVerifier]:
    r = Resolver.from_settings(world.settings())
    yield ServiceAuthVerifier(AUD, r.signing_key)
    await r.aclose()


def payload(ident_did: str, **over: Any) -> dict[str, Any]:
    now = int(time.time())
    p: dict[str, Any] = {
        "iss": ident_did,
        "aud": AUD,
        "exp": now + 60,
        "iat": now,
        "jti": f"j{time.monotonic_ns()}",
        "lxm": LXM,
    }
    p.update(over)
    return {k: v for k, v in p.items() if v is not None}


async def reason(verifier: ServiceAuthVerifier, token: str, lxm: str | None = LXM) -> str:
    with pytest.raises(AuthError) as info:
        await verifier.verify(token, lxm=lxm)
    return info.value.reason


@pytest.mark.parametrize("key_type", [KeyType.P256, KeyType.SECP256K1])
async def test_atproto_tokens_pass(
    world: World, verifier: ServiceAuthVerifier, key_type: KeyType
) -> None:
    ident = world.new_plc_identity(key_type)
    token = ident.jwt(AUD, LXM)
    claims = await verifier.verify(token, lxm=LXM)
    assert claims.iss == ident.did and claims.lxm == LXM


async def test_did_web_token_passes(world: World, verifier: ServiceAuthVerifier) -> None:
    ident = world.new_web_identity(KeyType.SECP256K1)
    assert (await verifier.verify(ident.jwt(AUD, LXM), lxm=LXM)).iss == ident.did


async def test_did_key_eddsa_token_passes(verifier: ServiceAuthVerifier) -> None:
    signer = Signer.generate()
    token = mint_service_jwt(signer, iss=signer.did_key, aud=AUD, lxm=LXM)
    assert (await verifier.verify(token, lxm=LXM)).iss == signer.did_key


async def test_lxm_not_required_when_service_does_not_ask(verifier: ServiceAuthVerifier) -> None:
    signer = Signer.generate()
    token = mint_service_jwt(signer, iss=signer.did_key, aud=AUD, lxm=None)
    assert (await verifier.verify(token, lxm=None)).lxm is None


P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
K256_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def high_s(sig: bytes, n: int) -> bytes:
    """The malleable twin of a low-S raw signature: s replaced by n - s."""
    return sig[:32] + (n - int.from_bytes(sig[32:], "big")).to_bytes(32, "big")


def signed(ident: Identity, header: dict[str, Any], body: dict[str, Any]) -> str:
    return encode_jwt(header, body, ident.signer)


async def test_refusals_have_distinct_reasons(world: World, verifier: ServiceAuthVerifier) -> None:
    ident = world.new_plc_identity(KeyType.P256)
    k256 = world.new_plc_identity(KeyType.SECP256K1)
    es = {"alg": "ES256", "typ": "JWT"}
    now = int(time.time())
    cases = {
        "expired": signed(ident, es, payload(ident.did, exp=now - 120)),
        "no_exp": signed(ident, es, payload(ident.did, exp=None)),
        "exp_too_far": signed(ident, es, payload(ident.did, exp=now + 3600)),
        "bad_audience": signed(ident, es, payload(ident.did, aud="did:web:other.test")),
        "bad_lxm": signed(ident, es, payload(ident.did, lxm="chat.hearth.v1.other")),
        "no_jti": signed(ident, es, payload(ident.did, jti=None)),
    }
    for expected, token in cases.items():
        assert await reason(verifier, token) == expected, expected

    # alg none, and an alg that does not match the key type (swapped).
    good = signed(ident, es, payload(ident.did))
    h, p, s = good.split(".")
    none_header = b64url_encode(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    assert await reason(verifier, f"{none_header}.{p}.") == "bad_alg"
    assert await reason(verifier, f"{none_header}.{p}.{s}") == "bad_alg"
    swapped = signed(k256, es, payload(k256.did))  # ES256 header, secp256k1 key
    assert await reason(verifier, swapped) == "bad_alg"

    # Tampered payload: same signature, different claims.
    def tampered(**over: Any) -> str:
        claims = json.loads(b64url_decode(p))
        claims.update(over)
        return f"{h}.{b64url_encode(json.dumps(claims).encode())}.{s}"

    other_p256 = world.new_plc_identity(KeyType.P256)
    assert await reason(verifier, tampered(iss=other_p256.did)) == "bad_signature"
    assert await reason(verifier, tampered(iss=k256.did)) == "bad_alg"  # ES256 vs a k256 key
    assert await reason(verifier, tampered(exp=now + 59)) == "bad_signature"

    # High-S: the same signature with s replaced by n - s verifies mathematically
    # but atproto requires low-S; it is refused as such, not as a bad signature.
    high_p256 = b64url_encode(high_s(b64url_decode(s), P256_N))
    assert await reason(verifier, f"{h}.{p}.{high_p256}") == "high_s"
    k_good = signed(k256, {"alg": "ES256K", "typ": "JWT"}, payload(k256.did))
    kh, kp, ks = k_good.split(".")
    high_k256 = b64url_encode(high_s(b64url_decode(ks), K256_N))
    assert await reason(verifier, f"{kh}.{kp}.{high_k256}") == "high_s"
    assert (await verifier.verify(k_good, lxm=LXM)).iss == k256.did  # the low-S original

    # The good token works once, then is a replay.
    assert (await verifier.verify(good, lxm=LXM)).iss == ident.did
    assert await reason(verifier, good) == "replayed"

    for garbage in ("", "a.b", "a.b.c", "x" * 10000, "e30.e30.", "W10.W10.AA"):
        assert await reason(verifier, garbage) in ("malformed", "bad_alg")


async def test_did_key_bad_signature(verifier: ServiceAuthVerifier) -> None:
    signer, impostor = Signer.generate(), Signer.generate()
    good = mint_service_jwt(signer, iss=signer.did_key, aud=AUD, lxm=LXM)
    forged = mint_service_jwt(impostor, iss=signer.did_key, aud=AUD, lxm=LXM)
    assert await reason(verifier, forged) == "bad_signature"
    h, p, s = good.split(".")
    flipped = bytes([b64url_decode(s)[0] ^ 1]) + b64url_decode(s)[1:]
    assert await reason(verifier, f"{h}.{p}.{b64url_encode(flipped)}") == "bad_signature"
    assert (await verifier.verify(good, lxm=LXM)).iss == signer.did_key


async def test_key_rotation_re_resolves_once(world: World, verifier: ServiceAuthVerifier) -> None:
    ident = world.new_plc_identity(KeyType.P256)
    assert await verifier.verify(ident.jwt(AUD, LXM), lxm=LXM)  # caches the document
    world.rotate_key(ident)
    fetches = world.http_requests[f"127.0.0.1:{world.http_port}/plc/{ident.did}"]
    assert await verifier.verify(ident.jwt(AUD, LXM), lxm=LXM)
    assert world.http_requests[f"127.0.0.1:{world.http_port}/plc/{ident.did}"] == fetches + 1


async def test_bad_signatures_refetch_the_document_at_most_once_per_interval(
    world: World,
) -> None:
    clock = [time.time()]
    r = Resolver.from_settings(world.settings())
    v = ServiceAuthVerifier(AUD, r.signing_key, clock=lambda: clock[0], refetch_interval=30)
    try:
        ident = world.new_plc_identity(KeyType.P256)
        path = f"127.0.0.1:{world.http_port}/plc/{ident.did}"
        forger = Signer.generate(KeyType.P256)

        def forged() -> str:
            return mint_service_jwt(forger, iss=ident.did, aud=AUD, lxm=LXM, now=clock[0])

        assert await reason(v, forged()) == "bad_signature"
        assert world.http_requests[path] == 2  # first lookup, then one forced refetch
        for _ in range(20):
            assert await reason(v, forged()) == "bad_signature"
        assert world.http_requests[path] == 2
        clock[0] += 31
        assert await reason(v, forged()) == "bad_signature"
        assert world.http_requests[path] == 3
        # The real owner is unaffected (cached document, right key).
        assert await v.verify(ident.jwt(AUD, LXM, now=clock[0]), lxm=LXM)
        assert world.http_requests[path] == 3
    finally:
        await r.aclose()


async def test_key_rotated_to_another_curve_is_refetched(
    world: World, verifier: ServiceAuthVerifier
) -> None:
    ident = world.new_plc_identity(KeyType.P256)
    assert await verifier.verify(ident.jwt(AUD, LXM), lxm=LXM)  # caches a P-256 key
    world.rotate_key(ident, KeyType.SECP256K1)
    path = f"127.0.0.1:{world.http_port}/plc/{ident.did}"
    fetches = world.http_requests[path]
    token = ident.jwt(AUD, LXM)  # ES256K now: an alg that does not match the cached key
    assert (await verifier.verify(token, lxm=LXM)).iss == ident.did
    assert world.http_requests[path] == fetches + 1


async def test_unknown_issuer(verifier: ServiceAuthVerifier) -> None:
    signer = Signer.generate(KeyType.P256)
    token = mint_service_jwt(signer, iss="did:plc:" + "c" * 24, aud=AUD, lxm=LXM)
    assert await reason(verifier, token) == "bad_issuer"


# -- the jti cache -------------------------------------------------------------


def test_jti_cache_prunes_every_expired_entry_behind_a_long_lived_one() -> None:
    cache = JtiCache(capacity=1000, per_issuer=1000)
    cache.record("did:key:zlong", "long", exp=300, address="a", now=0)
    for i in range(999):
        cache.record(f"did:key:z{i}", "j", exp=10, address="a", now=0)
    # 60 s later the 999 short tokens have expired; only the long one is live.
    for i in range(999):
        cache.record(f"did:key:z{i}", "k", exp=120, address="b", now=60)
    assert len(cache) == 1000 and cache.held_by("a") == 1 and cache.held_by("b") == 999
    with pytest.raises(AuthError) as info:
        cache.record("did:key:zlong", "long", exp=300, address="a", now=61)
    assert info.value.reason == "replayed"


def test_a_full_jti_cache_forgets_the_heaviest_address_first() -> None:
    cache = JtiCache(capacity=10, per_issuer=1000)
    cache.record("did:key:zvictim", "v", exp=60, address="victim", now=0)
    for i in range(100):  # a flood from one address, far beyond the capacity
        cache.record(f"did:key:zflood{i}", "j", exp=60, address="flood", now=0)
    assert len(cache) == 10 and cache.held_by("flood") == 9 and cache.held_by("victim") == 1
    # The flood displaced only its own entries: the victim's token is still spent ...
    with pytest.raises(AuthError) as info:
        cache.check("did:key:zvictim", "v", now=1)
    assert info.value.reason == "replayed"
    # ... a newcomer is served (never `busy`), at the heaviest address's expense ...
    cache.record("did:key:znew", "n", exp=60, address="other", now=1)
    assert cache.held_by("flood") == 8 and cache.held_by("other") == 1
    # ... and the flood's oldest entry is what went first.
    cache.check("did:key:zflood0", "j", now=1)
    with pytest.raises(AuthError):
        cache.check("did:key:zflood99", "j", now=1)
    # Expiry works through entries forgotten early without tripping over them.
    cache.record("did:key:zlater", "l", exp=200, address="flood", now=70)
    assert len(cache) == 1 and cache.held_by("flood") == 1 and cache.held_by("victim") == 0


def test_jti_cache_caps_live_tokens_per_issuer() -> None:
    cache = JtiCache(capacity=100, per_issuer=10)
    for i in range(10):
        cache.record("did:key:zgreedy", f"j{i}", exp=30, address="a", now=0)
    with pytest.raises(AuthError) as info:
        cache.record("did:key:zgreedy", "j10", exp=30, address="a", now=0)
    assert info.value.reason == "issuer_busy" and info.value.retry_after
    assert cache.live_for("did:key:zgreedy") == 10
    # Everybody else is still served ...
    for i in range(90):
        cache.record(f"did:key:zother{i}", "j", exp=30, address=f"b{i}", now=0)
    # ... and once its tokens expire the greedy issuer may come back.
    cache.record("did:key:zgreedy", "j10", exp=90, address="a", now=36)
    assert cache.live_for("did:key:zgreedy") == 1 and len(cache) == 1


async def test_one_did_key_cannot_lock_others_out(verifier: ServiceAuthVerifier) -> None:
    greedy, other = Signer.generate(), Signer.generate()
    v = ServiceAuthVerifier(AUD, verifier._key_lookup, budget=AuthBudget(AuthLimits(per_issuer=3)))
    for _ in range(3):
        await v.verify(mint_service_jwt(greedy, iss=greedy.did_key, aud=AUD, lxm=LXM), lxm=LXM)
    token = mint_service_jwt(greedy, iss=greedy.did_key, aud=AUD, lxm=LXM)
    assert await reason(v, token) == "issuer_busy"
    token = mint_service_jwt(other, iss=other.did_key, aud=AUD, lxm=LXM)
    assert (await v.verify(token, lxm=LXM)).iss == other.did_key


# -- budgets and the two-step use ----------------------------------------------


async def _no_lookup(_did: object, _fresh: bool) -> None:
    raise AssertionError("did:key issuers need no lookup")


def did_key_token(signer: Signer | None = None, **kw: Any) -> str:
    signer = signer or Signer.generate()
    return mint_service_jwt(signer, iss=signer.did_key, aud=AUD, lxm=LXM, **kw)


async def test_a_jti_is_recorded_only_when_the_request_is_committed() -> None:
    v = ServiceAuthVerifier(AUD, _no_lookup)
    token = did_key_token()
    checked = await v.check(token, lxm=LXM, client="192.0.2.1")
    # Refused for some other reason after the check: nothing was recorded.
    assert len(v.budget.did_key_jtis) == 0
    assert await v.check(token, lxm=LXM, client="192.0.2.1") == checked
    v.commit(checked)
    assert v.budget.did_key_jtis.held_by("192.0.2.1") == 1
    with pytest.raises(AuthError) as info:
        await v.check(token, lxm=LXM, client="192.0.2.1")
    assert info.value.reason == "replayed"
    with pytest.raises(AuthError) as info:
        v.commit(checked)  # a second commit of one check: a replay like any other
    assert info.value.reason == "replayed"


async def test_the_address_budget_refuses_before_the_token_is_even_parsed() -> None:
    v = ServiceAuthVerifier(AUD, _no_lookup, budget=AuthBudget(AuthLimits(rate=1, burst=3)))
    flood = "2001:db8:1:2::7"
    for _ in range(3):
        await v.verify(did_key_token(), lxm=LXM, client=flood)
    jtis = v.budget.did_key_jtis
    assert len(jtis) == 3
    for token in (did_key_token(), "not a token"):
        with pytest.raises(AuthError) as info:
            await v.verify(token, lxm=LXM, client=flood)
        assert info.value.reason == "rate_limited"  # not `malformed`: nothing was looked at
        assert info.value.retry_after is not None and 0 < info.value.retry_after <= 1
    # The same /64 is the same budget; the cache was not touched.
    with pytest.raises(AuthError) as info:
        await v.verify(did_key_token(), lxm=LXM, client="2001:db8:1:2:ffff::1")
    assert info.value.reason == "rate_limited" and len(jtis) == 3
    # Other addresses have their own budgets.
    assert await v.verify(did_key_token(), lxm=LXM, client="2001:db8:1:3::7")
    assert await v.verify(did_key_token(), lxm=LXM, client="192.0.2.1")


async def test_did_key_tokens_may_live_only_a_short_while(
    world: World, verifier: ServiceAuthVerifier
) -> None:
    signer = Signer.generate()
    limit = verifier.budget.limits.did_key_lifetime
    assert await reason(verifier, did_key_token(signer, ttl=limit + 30)) == "exp_too_far"
    assert await verifier.verify(did_key_token(signer, ttl=limit), lxm=LXM)
    # atproto tokens come from a PDS and keep the longer atproto bound.
    ident = world.new_plc_identity()
    assert await verifier.verify(ident.jwt(AUD, LXM, ttl=limit + 30), lxm=LXM)


async def test_did_key_floods_cannot_displace_atproto_entries(world: World) -> None:
    r = Resolver.from_settings(world.settings())
    try:
        budget = AuthBudget(AuthLimits(did_key_capacity=5, atproto_capacity=5))
        v = ServiceAuthVerifier(AUD, r.signing_key, budget=budget)
        ident = world.new_plc_identity()
        token = ident.jwt(AUD, LXM)
        await v.verify(token, lxm=LXM, client="192.0.2.9")
        for _ in range(20):
            await v.verify(did_key_token(), lxm=LXM, client="192.0.2.9")
        assert len(budget.did_key_jtis) == 5 and len(budget.atproto_jtis) == 1
        assert await reason(v, token) == "replayed"
    finally:
        await r.aclose()

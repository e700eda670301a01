"""The resolver library against real DNS and HTTP fixtures on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hearth.keys import KeyType
from hearth.netguard import is_public_address
from resolver import InvalidInput, NotFound, Resolver, UpstreamError
from resolver.cache import Lifetimes
from resolver.upstream import Upstream
from tests.servers import serve_app
from tests.world import World


@pytest.fixture
async def resolver(world: World) -> AsyncIterator[Resolver]:
    r = Resolver.from_settings(world.settings(resolver_timeout=1.0))
    yield r
    await r.aclose()


async def test_dns_only(world: World, resolver: Resolver) -> None:
    ident = world.new_plc_identity()
    assert ident.handle is not None
    assert await resolver.resolve_handle(ident.handle) == ident.did
    assert world.dns_queries[f"_atproto.{ident.handle}"] == 1


async def test_https_only(world: World, resolver: Resolver) -> None:
    ident = world.new_plc_identity(publish=False)
    assert ident.handle is not None
    world.publish_https(ident.handle, ident.did)
    assert await resolver.resolve_handle(ident.handle) == ident.did
    assert world.http_requests[f"{ident.handle}/.well-known/atproto-did"] == 1


async def test_both_agree(world: World, resolver: Resolver) -> None:
    ident = world.new_plc_identity()
    assert ident.handle is not None
    world.publish_https(ident.handle, ident.did)
    assert await resolver.resolve_handle(ident.handle) == ident.did


async def test_both_disagree(world: World, resolver: Resolver) -> None:
    a = world.new_plc_identity()
    b = world.new_plc_identity()
    assert a.handle is not None
    world.publish_https(a.handle, b.did)
    with pytest.raises(NotFound, match="DNS and HTTPS name different DIDs"):
        await resolver.resolve_handle(a.handle)


async def test_several_dids_in_txt(world: World, resolver: Resolver) -> None:
    a = world.new_plc_identity()
    b = world.new_plc_identity()
    assert a.handle is not None
    world.publish_dns(a.handle, b.did)
    with pytest.raises(NotFound, match="several different DIDs"):
        await resolver.resolve_handle(a.handle)


async def test_same_did_twice_in_txt_is_fine(world: World, resolver: Resolver) -> None:
    a = world.new_plc_identity()
    assert a.handle is not None
    world.publish_dns(a.handle, a.did)
    assert await resolver.resolve_handle(a.handle) == a.did


@pytest.mark.parametrize("bad", ["", "nodot", "-bad.test", "a..b", "x" * 300 + ".test", "1.2"])
async def test_invalid_handle_syntax(resolver: Resolver, bad: str) -> None:
    with pytest.raises(InvalidInput):
        await resolver.resolve_handle(bad)


async def test_unknown_handle(world: World, resolver: Resolver) -> None:
    with pytest.raises(NotFound):
        await resolver.resolve_handle("nobody-here.test")


async def test_disallowed_tld_never_queried(world: World, resolver: Resolver) -> None:
    with pytest.raises(NotFound):
        await resolver.resolve_handle("alice.local")
    assert not world.dns_queries


async def test_upstream_timeout_is_502_within_timeout(world: World) -> None:
    r = Resolver.from_settings(world.settings(resolver_timeout=0.3))
    try:
        handle = world.new_handle()
        world.slow_dns.add(f"_atproto.{handle}")
        world.slow_http.add(handle)
        start = time.monotonic()
        with pytest.raises(UpstreamError):
            await r.resolve_handle(handle)
        # Bounded by the configured timeout (generous margin for a loaded machine).
        assert time.monotonic() - start < 0.3 + 2.0
    finally:
        await r.aclose()


async def test_dns_answer_wins_when_https_hangs(world: World) -> None:
    r = Resolver.from_settings(world.settings(resolver_timeout=0.3))
    try:
        ident = world.new_plc_identity()
        assert ident.handle is not None
        world.slow_http.add(ident.handle)
        assert await r.resolve_handle(ident.handle) == ident.did
    finally:
        await r.aclose()


async def test_did_plc_document(world: World, resolver: Resolver) -> None:
    ident = world.new_plc_identity(KeyType.SECP256K1)
    doc = await resolver.resolve_did(ident.did)
    assert doc["id"] == ident.did
    key = await resolver.signing_key(ident.did, False)
    assert key == ident.signer.public_key


async def test_did_web_document(world: World, resolver: Resolver) -> None:
    ident = world.new_web_identity()
    doc = await resolver.resolve_did(ident.did)
    assert doc == ident.doc


async def test_did_web_with_port(world: World, resolver: Resolver) -> None:
    ident = world.new_port_web_identity()
    assert "%3A" in ident.did
    doc = await resolver.resolve_did(ident.did)
    assert doc["id"] == ident.did


async def test_did_web_path_based(world: World, resolver: Resolver) -> None:
    host = "paths.test"
    did = "did:web:paths.test:users:alice"
    world.web_docs[f"{host}/users/alice"] = {"id": did}
    assert (await resolver.resolve_did(did))["id"] == did


async def test_did_key_document_needs_no_upstream(world: World, resolver: Resolver) -> None:
    from hearth.jwt import Signer

    signer = Signer.generate()
    doc = await resolver.resolve_did(signer.did_key)
    assert doc["verificationMethod"][0]["publicKeyMultibase"] == signer.public_key.multibase
    assert not world.http_requests


async def test_unknown_did(world: World, resolver: Resolver) -> None:
    with pytest.raises(NotFound):
        await resolver.resolve_did("did:plc:" + "a" * 24)
    with pytest.raises(NotFound):
        await resolver.resolve_did("did:web:nothing-here.test")


async def test_document_with_wrong_id_rejected(world: World, resolver: Resolver) -> None:
    world.web_docs["liar.test"] = {"id": "did:web:someone-else.test"}
    with pytest.raises(UpstreamError, match="does not match"):
        await resolver.resolve_did("did:web:liar.test")


@pytest.mark.parametrize("bad", ["did:plc:short", "did:web:", "not-a-did", "did:foo:bar%zz"])
async def test_invalid_did(resolver: Resolver, bad: str) -> None:
    with pytest.raises(InvalidInput):
        await resolver.resolve_did(bad)


async def test_identity_two_way_ok(world: World, resolver: Resolver) -> None:
    ident = world.new_plc_identity()
    by_handle = await resolver.resolve_identity(ident.handle or "")
    by_did = await resolver.resolve_identity(ident.did)
    assert by_handle.handle == by_did.handle == ident.handle
    assert by_handle.did == by_did.did == ident.did


async def test_identity_also_known_as_mismatch(world: World, resolver: Resolver) -> None:
    ident = world.new_plc_identity()
    ident.doc["alsoKnownAs"] = ["at://someone-else.test"]
    by_handle = await resolver.resolve_identity(ident.handle or "")
    assert by_handle.handle == "handle.invalid"
    by_did = await resolver.resolve_identity(ident.did)
    assert by_did.handle == "handle.invalid"


async def test_cache_hit_makes_no_upstream_query(world: World, resolver: Resolver) -> None:
    ident = world.new_plc_identity()
    assert ident.handle is not None
    await resolver.resolve_handle(ident.handle)
    await resolver.resolve_did(ident.did)
    dns_before = sum(world.dns_queries.values())
    http_before = sum(world.http_requests.values())
    for _ in range(5):
        await resolver.resolve_handle(ident.handle.upper())
        await resolver.resolve_did(ident.did)
    assert sum(world.dns_queries.values()) == dns_before
    assert sum(world.http_requests.values()) == http_before


async def test_concurrent_lookups_share_one_query(world: World, resolver: Resolver) -> None:
    ident = world.new_plc_identity()
    assert ident.handle is not None
    results = await asyncio.gather(*(resolver.resolve_handle(ident.handle) for _ in range(100)))
    assert set(results) == {ident.did}
    assert world.dns_queries[f"_atproto.{ident.handle}"] == 1


async def test_negative_entries_expire(world: World) -> None:
    clock = [1000.0]
    r = Resolver.from_settings(world.settings(), lifetimes=Lifetimes(negative=300.0))
    r.handles._clock = lambda: clock[0]
    try:
        handle = world.new_handle()
        with pytest.raises(NotFound):
            await r.resolve_handle(handle)
        ident = world.new_plc_identity(handle=handle)
        clock[0] += 299
        with pytest.raises(NotFound):  # still cached as absent
            await r.resolve_handle(handle)
        clock[0] += 2
        assert await r.resolve_handle(handle) == ident.did
        assert world.dns_queries[f"_atproto.{handle}"] == 2
    finally:
        await r.aclose()


async def test_failures_cached_for_two_minutes(world: World) -> None:
    clock = [0.0]
    r = Resolver.from_settings(world.settings(resolver_timeout=0.2))
    r.handles._clock = lambda: clock[0]
    try:
        handle = world.new_handle()
        world.slow_dns.add(f"_atproto.{handle}")
        world.slow_http.add(handle)
        with pytest.raises(UpstreamError):
            await r.resolve_handle(handle)
        queries = world.dns_queries[f"_atproto.{handle}"]
        requests = world.http_requests[f"{handle}/.well-known/atproto-did"]
        assert queries >= 1 and requests == 1
        # Within 2 min the failure is answered from the cache: no upstream query.
        clock[0] += 119
        with pytest.raises(UpstreamError):
            await r.resolve_handle(handle)
        assert world.dns_queries[f"_atproto.{handle}"] == queries
        assert world.http_requests[f"{handle}/.well-known/atproto-did"] == requests
        clock[0] += 2
        world.slow_dns.clear()
        world.slow_http.clear()
        ident = world.new_plc_identity(handle=handle)
        assert await r.resolve_handle(handle) == ident.did
        assert world.dns_queries[f"_atproto.{handle}"] > queries
    finally:
        await r.aclose()


async def test_stale_while_revalidate(world: World) -> None:
    clock = [0.0]
    r = Resolver.from_settings(world.settings())
    r.handles._clock = lambda: clock[0]
    try:
        ident = world.new_plc_identity()
        assert ident.handle is not None
        await r.resolve_handle(ident.handle)
        other = world.new_plc_identity(publish=False)
        world.txt[f"_atproto.{ident.handle}"] = [f"did={other.did}"]
        clock[0] += 3601  # stale, not expired
        # Served from cache at once, refreshed in the background.
        assert await r.resolve_handle(ident.handle) == ident.did
        for _ in range(200):
            if r.handles._inflight or r.handles._refreshing:
                await asyncio.sleep(0.01)
        assert await r.resolve_handle(ident.handle) == other.did
        clock[0] += 86400 + 1
        assert await r.resolve_handle(ident.handle) == other.did
    finally:
        await r.aclose()


async def test_rotated_key_seen_with_fresh_lookup(world: World, resolver: Resolver) -> None:
    ident = world.new_plc_identity()
    old = await resolver.signing_key(ident.did, False)
    new = world.rotate_key(ident)
    assert await resolver.signing_key(ident.did, False) == old  # cached
    assert await resolver.signing_key(ident.did, True) == new.public_key


async def test_upstream_maps_every_httpx_failure_to_its_own_errors() -> None:
    upstream = Upstream(timeout=1.0)
    try:
        # httpx.InvalidURL is not an httpx.HTTPError: it must not escape either.
        with pytest.raises(UpstreamError):
            await upstream.fetch_url("https://a\n.test/", {}, 100, "a.test")
        with pytest.raises(UpstreamError):
            await upstream.fetch_url("https://a.test/\x00", {}, 100, "a.test")
    finally:
        await upstream.aclose()


async def test_deeply_nested_document_is_an_upstream_error(
    world: World, resolver: Resolver
) -> None:
    async def deep(_request: Request) -> Response:
        return Response(b"[" * 20_000 + b"]" * 20_000, media_type="application/json")

    app = Starlette(routes=[Route("/{path:path}", deep)])
    async with serve_app(app) as url:
        with pytest.raises(UpstreamError, match="not JSON"):
            await resolver.upstream.fetch_json(url + "/plc/x", {}, "PLC directory", trusted=True)


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (500, UpstreamError),
        (503, UpstreamError),
        (429, UpstreamError),
        (302, UpstreamError),
        (404, NotFound),
        (410, NotFound),
    ],
)
async def test_well_known_status_decides_failure_or_absence(
    world: World, status: int, error: type[Exception]
) -> None:
    async def answer(_request: Request) -> Response:
        return Response("nope", status_code=status, headers={"location": "https://x.test/"})

    async with serve_app(Starlette(routes=[Route("/{path:path}", answer)])) as url:
        port = int(url.rsplit(":", 1)[1])
        hosts = {**world.settings().http_hosts, "*.flaky.example": ("127.0.0.1", port)}
        clock = [0.0]
        r = Resolver.from_settings(world.settings(http_hosts=hosts))
        r.handles._clock = lambda: clock[0]
        try:
            handle = "alice.flaky.example"
            with pytest.raises(error):
                await r.resolve_handle(handle)
            calls = r.handles.upstream_calls
            # Upstream failures are remembered 2 min, absences 5 min.
            clock[0] += 121
            with pytest.raises(error):
                await r.resolve_handle(handle)
            refetched = r.handles.upstream_calls > calls
            assert refetched is (error is UpstreamError)
        finally:
            await r.aclose()


async def test_cache_is_bounded_and_evicts_least_recently_used(world: World) -> None:
    r = Resolver.from_settings(world.settings(), max_entries=3)
    try:
        idents = [world.new_plc_identity() for _ in range(4)]
        handles = [i.handle or "" for i in idents]
        for h in handles[:3]:
            await r.resolve_handle(h)
        await r.resolve_handle(handles[0])  # most recently used now; handles[1] is the oldest
        await r.resolve_handle(handles[3])
        assert len(r.handles) == 3
        before = {h: world.dns_queries[f"_atproto.{h}"] for h in handles}
        for h in (handles[0], handles[2], handles[3]):
            assert await r.resolve_handle(h) == idents[handles.index(h)].did
            assert world.dns_queries[f"_atproto.{h}"] == before[h]  # still cached
        assert await r.resolve_handle(handles[1]) == idents[1].did
        assert world.dns_queries[f"_atproto.{handles[1]}"] == before[handles[1]] + 1  # evicted
        assert len(r.handles) == 3
    finally:
        await r.aclose()


async def test_http_hosts_warning_comes_from_the_resolver_library(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    r = Resolver.from_settings(world.settings())  # what keyserver, router, syncserver call
    await r.aclose()
    warnings = [
        rec.getMessage() for rec in caplog.records if "HEARTH_HTTP_HOSTS" in rec.getMessage()
    ]
    assert len(warnings) == 1 and "*.test" in warnings[0]
    caplog.clear()
    r = Resolver.from_settings(world.settings(http_hosts={}))
    await r.aclose()
    assert not [rec for rec in caplog.records if "HEARTH_HTTP_HOSTS" in rec.getMessage()]


# -- caller-named hosts never reach private addresses ---------------------------


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("2606:4700::1111", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("192.168.1.1", False),
        ("172.16.0.1", False),
        ("169.254.169.254", False),  # cloud metadata
        ("100.64.0.1", False),  # carrier-grade NAT
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("::1", False),
        ("fe80::1", False),
        ("fc00::1", False),
        ("::ffff:127.0.0.1", False),  # IPv4-mapped
        ("64:ff9b::a00:1", False),  # NAT64 of 10.0.0.1
        ("2002:7f00:1::", False),  # 6to4 of 127.0.0.1
    ],
)
def test_public_addresses(address: str, public: bool) -> None:
    assert is_public_address(address) is public


@contextlib.asynccontextmanager
async def counting_server() -> AsyncIterator[tuple[int, list[str]]]:
    seen: list[str] = []

    async def answer(request: Request) -> Response:
        seen.append(request.url.path)
        host = request.headers["host"].replace(":", "%3A")
        return JSONResponse({"id": f"did:web:{host}"})

    async with serve_app(Starlette(routes=[Route("/{path:path}", answer)])) as url:
        yield int(url.rsplit(":", 1)[1]), seen


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_did_web_on_a_private_address_is_not_fetched(
    world: World, resolver: Resolver, host: str
) -> None:
    async with counting_server() as (port, seen):
        with pytest.raises(NotFound, match="not at a public address"):
            await resolver.resolve_did(f"did:web:{host}%3A{port}")
        assert seen == []
        # Never over plain http unless mapped.
        assert resolver.upstream.url_for(f"{host}:{port}", "/x")[0].startswith("https://")


async def test_private_hosts_are_fetched_when_allowed_or_mapped(world: World) -> None:
    async with counting_server() as (port, seen):
        refused = Upstream(timeout=1.0)
        allowed = Upstream(timeout=1.0, allow_private=True)
        try:
            for host in ("127.0.0.1", "localhost"):
                with pytest.raises(NotFound, match="not at a public address"):
                    await refused.fetch_url(f"http://{host}:{port}/a", {}, 100, host)
                status, _ = await allowed.fetch_url(f"http://{host}:{port}/a", {}, 100, host)
                assert status == 200
            assert seen == ["/a", "/a"]
        finally:
            await refused.aclose()
            await allowed.aclose()
        # A mapping in HEARTH_HTTP_HOSTS is the operator's word: plain http, no check.
        hosts = {**world.http_hosts, f"127.0.0.1:{port}": ("127.0.0.1", port)}
        r = Resolver.from_settings(world.settings(http_hosts=hosts))
        try:
            doc = await r.resolve_did(f"did:web:127.0.0.1%3A{port}")
            assert doc["id"] == f"did:web:127.0.0.1%3A{port}"
            assert seen == ["/a", "/a", "/.well-known/did.json"]
        finally:
            await r.aclose()

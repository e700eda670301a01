"""The router over real sockets: Roomy v0 rules, auth, malformed frames, limits."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from hearth.jwt import Signer, mint_service_jwt
from router.frames import decode_frame, encode_frame
from tests.router.conftest import (
    MS,
    TIMEOUT,
    RunningRouter,
    connect_token,
    open_raw,
    open_v0,
    start_router,
    stop_router,
)


async def until(condition: Callable[[], bool]) -> None:
    """Wait for a condition the server reaches asynchronously (bounded)."""
    async with asyncio.timeout(TIMEOUT):
        while True:
            if condition():
                return
            await asyncio.sleep(5 * MS)


async def refused(router: RunningRouter, path_did: str, protocols: list[str] | None) -> int:
    with pytest.raises(InvalidStatus) as info:
        await connect(
            f"{router.ws_base}/connect/as/{path_did}",
            subprotocols=[websockets.Subprotocol(p) for p in protocols] if protocols else None,
            open_timeout=TIMEOUT,
        )
    status: int = info.value.response.status_code
    return status


async def router_token(router: RunningRouter, signer: Signer, nsid: str) -> str:
    jwt = mint_service_jwt(signer, iss=signer.did_key, aud=router.did, lxm=nsid)
    async with httpx.AsyncClient() as http:
        r = await http.get(f"{router.url}/xrpc/{nsid}", headers={"Authorization": f"Bearer {jwt}"})
    assert r.status_code == 200, r.text
    token = r.json()["token"]
    assert isinstance(token, str)
    return token


# ------------------------------------------------------------------ Roomy v0 rules


async def test_welcome(router: RunningRouter) -> None:
    a = await open_raw(router)
    assert len(a.conn_id) == 26 and a.conn_id.isalnum()
    assert a.info["server"] == "hearth-router"
    assert a.info["limits"]["max_frame_bytes"] == 1 << 20
    await a.close()


async def test_joins_leaves_and_no_duplicates(router: RunningRouter) -> None:
    a, b = await open_raw(router), await open_raw(router)
    await a.send(["listen", "d1", "d2"])
    await b.send(["listen", "d2", "d1"])
    assert (await a.recv())[0] == ["join", b.did, b.conn_id, "d2"]
    assert (await a.recv())[0] == ["join", b.did, b.conn_id, "d1"]
    assert (await b.recv())[0] == ["join", a.did, a.conn_id, "d2"]
    assert (await b.recv())[0] == ["join", a.did, a.conn_id, "d1"]
    await b.send(["listen", "d1", "d2"])  # same set again: no frames at all
    await b.expect_nothing()
    await a.expect_nothing()
    await b.send(["listen", "d1"])
    assert (await a.recv())[0] == ["leave", b.did, b.conn_id, "d2"]
    await b.expect_nothing()
    await b.close()
    assert (await a.recv())[0] == ["leave", b.did, b.conn_id, "d1"]
    await a.close()


async def test_send_routing(router: RunningRouter) -> None:
    a, b = await open_raw(router), await open_raw(router)
    body = bytes(range(256)) * 4
    await a.send(["send", b.did, b.conn_id, "doc"], body)
    assert await b.recv() == (["send", a.did, a.conn_id, "doc"], body)
    await a.send(["send", a.did, b.conn_id, "doc"], b"wrong did")
    assert (await a.recv())[0][:2] == ["error", "not_found"]
    await a.send(["send", b.did, "01J0000000000000000000000", "doc"], b"wrong conn")
    assert (await a.recv())[0][:2] == ["error", "not_found"]
    await a.send(["send", a.did, a.conn_id, "doc"], b"self")
    assert (await a.recv())[0][:2] == ["error", "to_self"]
    await b.expect_nothing()  # nothing of the above reached b
    # Text frames carrying the same bytes work too; replies are binary.
    await a.ws.send(encode_frame(["send", b.did, b.conn_id, "t"], b"txt").decode())
    assert await b.recv() == (["send", a.did, a.conn_id, "t"], b"txt")
    await a.close()
    await b.close()


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (b"\x01\x02", "short_frame"),
        (b"\xff\x00\x00\x00[]", "bad_length"),
        (b"\x03\x00\x00\x00[1,", "bad_header"),
        (b"\x02\x00\x00\x00\xc3\x28", "bad_header"),
        (encode_frame([7]), "bad_type"),
        (encode_frame(["fly", "x"]), "unknown_verb"),
        (encode_frame(["send", "x"]), "bad_arity"),
        (encode_frame(["send", "a", ["b"], "c"]), "bad_type"),
    ],
)
async def test_malformed_frames_get_error_and_connection_works(
    router: RunningRouter, frame: bytes, code: str
) -> None:
    a, b = await open_raw(router), await open_raw(router)
    await a.ws.send(frame)
    header, _ = await a.recv()
    assert header[0] == "error" and header[1] == code and len(header) == 4
    await a.send(["send", b.did, b.conn_id, "d"], b"still works")
    assert (await b.recv())[1] == b"still works"
    await a.close()
    await b.close()


# ------------------------------------------------------------------ authentication


async def test_auth_failures_refused_before_upgrade(router: RunningRouter) -> None:
    alice, bob = Signer.generate(), Signer.generate()
    good = connect_token(alice, router.did)
    assert await refused(router, alice.did_key, None) == 403
    assert await refused(router, alice.did_key, ["authorization"]) == 403
    assert await refused(router, alice.did_key, ["bearer", good]) == 403
    stolen = connect_token(alice, router.did)
    assert await refused(router, bob.did_key, ["authorization", stolen]) == 403  # wrong DID
    expired = connect_token(alice, router.did, ttl=-60)
    assert await refused(router, alice.did_key, ["authorization", expired]) == 403
    wrong_aud = connect_token(alice, "did:web:elsewhere.example")
    assert await refused(router, alice.did_key, ["authorization", wrong_aud]) == 403
    wrong_lxm = mint_service_jwt(alice, iss=alice.did_key, aud=router.did, lxm="x.y.z")
    assert await refused(router, alice.did_key, ["authorization", wrong_lxm]) == 403
    assert await refused(router, alice.did_key, ["authorization", "0" * 52]) == 403
    assert await refused(router, "not-a-did", ["authorization", good]) == 400
    # The good token still works once, and only once.
    a = await open_raw(router, alice, subprotocols=["authorization", good])
    assert await refused(router, alice.did_key, ["authorization", good]) == 403
    await a.close()
    assert router.state.refused["no_token"] == 3
    assert router.state.refused["bad_jwt_issuer"] == 1
    assert router.state.refused["bad_jwt_expired"] == 1


@pytest.mark.parametrize("nsid", ["chat.roomy.v0.router.token", "chat.hearth.v1.router.token"])
async def test_router_tokens_single_use_and_bound_to_did(router: RunningRouter, nsid: str) -> None:
    alice, bob = Signer.generate(), Signer.generate()
    token = await router_token(router, alice, nsid)
    assert len(token) == 52
    assert await refused(router, bob.did_key, ["authorization", token]) == 403
    # The failed attempt burnt it: tokens are single-use, whoever uses them.
    assert await refused(router, alice.did_key, ["authorization", token]) == 403
    token = await router_token(router, alice, nsid)
    a = await open_raw(router, alice, subprotocols=["authorization", token])
    assert await refused(router, alice.did_key, ["authorization", token]) == 403
    await a.close()


async def test_token_endpoint_requires_service_auth(router: RunningRouter) -> None:
    nsid = "chat.hearth.v1.router.token"
    signer = Signer.generate()
    async with httpx.AsyncClient() as http:
        r = await http.get(f"{router.url}/xrpc/{nsid}")
        assert r.status_code == 401
        other = mint_service_jwt(signer, iss=signer.did_key, aud=router.did, lxm="x.y.z")
        r = await http.get(
            f"{router.url}/xrpc/{nsid}", headers={"Authorization": f"Bearer {other}"}
        )
        assert r.status_code == 401


async def test_expired_router_token(tmp_path: Path) -> None:
    running, task = await start_router(tmp_path, token_ttl=0.0)
    try:
        alice = Signer.generate()
        token = await router_token(running, alice, "chat.roomy.v0.router.token")
        assert await refused(running, alice.did_key, ["authorization", token]) == 403
    finally:
        await stop_router(running, task)


async def raw_http(router: RunningRouter, request: str) -> tuple[int, bytes]:
    host, port = router.url.rsplit("/", 1)[-1].split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(request.encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
    rest = b""
    if b" 101 " in head.split(b"\r\n", 1)[0]:
        rest = await asyncio.wait_for(reader.read(4096), TIMEOUT)
    writer.close()
    return int(head.split(b" ")[1]), head + rest


async def test_handshake_variants(router: RunningRouter) -> None:
    alice = Signer.generate()
    key = base64.b64encode(os.urandom(16)).decode()

    def upgrade(path: str, protocol: str) -> str:
        return (
            f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Protocol: {protocol}\r\n\r\n"
        )

    # The `ws` package's `authorization,<token>` (no space) and a trailing slash.
    token = connect_token(alice, router.did)
    status, data = await raw_http(
        router, upgrade(f"/connect/as/{alice.did_key}/", f"authorization,{token},hearth.v1")
    )
    assert status == 101
    assert b"Sec-WebSocket-Protocol: authorization\r\n" in data
    assert b'"welcome"' in data
    status, _ = await raw_http(router, upgrade("/elsewhere", "authorization,x"))
    assert status == 404
    # No Upgrade header: plain HTTP, 400.
    status, _ = await raw_http(
        router, f"GET /connect/as/{alice.did_key} HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    assert status == 400


# ------------------------------------------------------------------ limits


async def test_oversize_frame_is_refused_and_connection_stays(tmp_path: Path) -> None:
    running, task = await start_router(tmp_path, max_frame_bytes=1000)
    try:
        a, b = await open_raw(running), await open_raw(running)
        assert a.info["limits"]["max_frame_bytes"] == 1000
        await a.send(["send", b.did, b.conn_id, "d"], b"x" * 5000)
        assert (await a.recv())[0][:2] == ["error", "too_large"]
        await a.send(["send", b.did, b.conn_id, "d"], b"small")
        assert (await b.recv())[1] == b"small"
        await a.close()
        await b.close()
    finally:
        await stop_router(running, task)


async def test_interest_and_connection_limits(tmp_path: Path) -> None:
    running, task = await start_router(tmp_path, max_interests=2, max_connections_per_did=2)
    try:
        alice = Signer.generate()
        a1 = await open_raw(running, alice)
        a2 = await open_raw(running, alice)
        token = connect_token(alice, running.did)
        assert await refused(running, alice.did_key, ["authorization", token]) == 429
        await a1.send(["listen", "1", "2", "3"])
        assert (await a1.recv())[0][:2] == ["error", "too_many_interests"]
        await a2.close()
        await until(lambda: len(running.state.router.connections) == 1)
        a3 = await open_raw(running, alice)
        await a1.close()
        await a3.close()
    finally:
        await stop_router(running, task)


async def test_rate_limit_then_abuse_closes(tmp_path: Path) -> None:
    running, task = await start_router(
        tmp_path, rate_frames=1.0, burst_frames=3.0, max_errors=5.0, error_rate=0.001
    )
    try:
        a = await open_raw(running)
        for _ in range(3):
            await a.send(["listen", "d"])
        await a.send(["listen", "d"])
        assert (await a.recv())[0][:2] == ["error", "rate_limited"]
        for _ in range(10):
            await a.ws.send(b"junk")
        with pytest.raises(ConnectionClosed):
            while True:
                await a.recv()
        assert a.ws.close_code == 1008
        assert a.ws.close_reason == "too many bad frames"
    finally:
        await stop_router(running, task)


async def test_slow_consumer_is_closed_while_others_flow(tmp_path: Path) -> None:
    running, task = await start_router(tmp_path, max_outgoing_bytes=256 * 1024)
    try:
        sender, fast = await open_raw(running), await open_raw(running)
        slow_signer = Signer.generate()
        # A raw socket that completes the handshake and then never reads.
        host, port = running.url.rsplit("/", 1)[-1].split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        key = base64.b64encode(os.urandom(16)).decode()
        token = connect_token(slow_signer, running.did)
        writer.write(
            (
                f"GET /connect/as/{slow_signer.did_key} HTTP/1.1\r\nHost: x\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                f"Sec-WebSocket-Protocol: authorization, {token}\r\n\r\n"
            ).encode()
        )
        await reader.readuntil(b"\r\n\r\n")
        state = running.state
        await until(lambda: len(state.router.by_did.get(slow_signer.did_key, {})) == 1)  # type: ignore[call-overload]
        (slow_id,) = state.router.by_did[slow_signer.did_key]  # type: ignore[index]
        body = os.urandom(60_000)
        sent = 0
        while slow_id in state.router.connections:
            await sender.send(["send", slow_signer.did_key, slow_id, "d"], body)
            await sender.send(["send", fast.did, fast.conn_id, "d"], b"tick")
            assert (await fast.recv())[1] == b"tick"  # the others keep flowing
            sent += 1
            assert sent < 10_000
        assert state.slow_consumers == 1
        assert state.router.stats.closed["slow_consumer"] == 1
        writer.close()
        await sender.send(["send", fast.did, fast.conn_id, "d"], b"after")
        assert (await fast.recv())[1] == b"after"
        await sender.close()
        await fast.close()
    finally:
        await stop_router(running, task)


async def test_idle_connection_is_closed_and_ponging_one_is_kept(tmp_path: Path) -> None:
    running, task = await start_router(tmp_path, ping_interval=0.05, idle_timeout=0.3)
    try:
        alive = await open_raw(running)  # websockets answers pings by itself
        silent = Signer.generate()
        host, port = running.url.rsplit("/", 1)[-1].split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                f"GET /connect/as/{silent.did_key} HTTP/1.1\r\nHost: x\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                f"Sec-WebSocket-Protocol: authorization, {connect_token(silent, running.did)}"
                "\r\n\r\n"
            ).encode()
        )
        await reader.readuntil(b"\r\n\r\n")
        data = b""
        async with asyncio.timeout(TIMEOUT):
            while True:  # read pings until the router closes us
                chunk = await reader.read(4096)
                if not chunk:
                    break
                data += chunk
        assert b"\x89\x00" in data  # at least one ping
        assert b"idle timeout" in data  # then a close frame with the reason
        assert running.state.router.stats.closed["idle"] == 1
        # The ponging connection is still there and usable.
        assert alive.conn_id in running.state.router.connections
        await alive.send(["listen", "d"])
        await alive.expect_nothing()
        await alive.close()
        writer.close()
    finally:
        await stop_router(running, task)


async def test_shutdown_closes_connections_with_1001(tmp_path: Path) -> None:
    running, task = await start_router(tmp_path)
    a = await open_raw(running)
    await stop_router(running, task)
    with pytest.raises(ConnectionClosed):
        await a.recv()
    assert a.ws.close_code == 1001


# ------------------------------------------------------------------ memory


async def test_ten_thousand_cycles_leave_no_trace(router: RunningRouter) -> None:
    state = router.state
    watcher = await open_raw(router)
    shared = [f"doc-{k}" for k in range(7)]
    await watcher.send(["listen", *shared])
    await watcher.expect_nothing()
    n, concurrency = int(os.environ.get("HEARTH_ROUTER_CYCLES", "10000")), 16
    signers = [Signer.generate() for _ in range(concurrency)]
    leaves = 0

    async def worker(k: int) -> None:
        signer = signers[k]
        for i in range(k, n, concurrency):
            # Tokens straight from the router's store: cheaper than a JWT each time.
            token = state.tokens.issue(signer.did_key, time.monotonic())  # type: ignore[arg-type]
            c = await open_raw(router, signer, subprotocols=["authorization", token])
            await c.send(["listen", f"own-{i}", f"doc-{i % 7}"])
            await c.close()

    async def count_leaves() -> None:
        nonlocal leaves
        while leaves < n:
            header, _ = await watcher.recv()
            if header[0] == "leave":
                leaves += 1

    counter = asyncio.create_task(count_leaves())
    await asyncio.gather(*(worker(k) for k in range(concurrency)))
    await asyncio.wait_for(counter, 60 * TIMEOUT)
    await until(lambda: len(state.router.connections) == 1)
    assert list(state.router.connections) == [watcher.conn_id]
    assert list(state.router.docs) == shared
    assert all(list(members) == [watcher.conn_id] for members in state.router.docs.values())
    assert list(state.router.by_did) == [watcher.did]
    assert len(state.protocols) == 1
    assert state.router.stats.connections_total == n + 1
    await watcher.close()
    await until(lambda: not state.router.connections)
    assert state.router.docs == {} and state.router.by_did == {} and not state.protocols


# ------------------------------------------------------------------ HTTP surface


async def test_did_json_health_metrics(router: RunningRouter) -> None:
    a, b = await open_raw(router), await open_raw(router)
    await a.send(["send", b.did, b.conn_id, "d"], b"12345")
    await b.recv()
    async with httpx.AsyncClient() as http:
        doc = (await http.get(f"{router.url}/.well-known/did.json")).json()
        assert doc["id"] == router.did
        assert {s["id"] for s in doc["service"]} == {"#hearth_router", "#roomy_router"}
        health = (await http.get(f"{router.url}/xrpc/_health")).json()
        assert health["connections"] == 2
        metrics = (await http.get(f"{router.url}/metrics")).text
    assert "hearth_router_connections 2.0" in metrics
    assert "hearth_router_relayed_bytes_total 5.0" in metrics
    await a.close()
    await b.close()


async def test_a_failing_handler_closes_only_its_connection(router: RunningRouter) -> None:
    from router.messages import CLIENT_MESSAGES, Listen

    class Boom(Listen):
        pass

    def parse(header: list[object]) -> Boom:
        return Boom(())

    def explode(*_args: object) -> None:
        raise RuntimeError("handler bug")

    a, b = await open_raw(router), await open_raw(router)
    await a.send(["listen", "d"])
    CLIENT_MESSAGES["boom"] = parse
    router.state.router.register(Boom, explode)
    try:
        await a.send(["boom"])
        with pytest.raises(ConnectionClosed):
            await a.recv()
        assert a.ws.close_code == 1011
    finally:
        del CLIENT_MESSAGES["boom"]
    await b.send(["listen", "d"])
    await b.expect_nothing()  # no join about the failed connection
    assert router.state.router.stats.closed["internal_error"] == 1
    assert {doc: list(members) for doc, members in router.state.router.docs.items()} == {
        "d": [b.conn_id]
    }
    await b.close()


def raw_header(header: list[object], body: bytes = b"") -> bytes:
    """A frame whose header is JSON with escapes (lone surrogates survive `json.dumps`)."""
    head = json.dumps(header).encode()
    return len(head).to_bytes(4, "little") + head + body


@pytest.mark.parametrize(
    "header",
    [
        ["listen", "\ud800", "doc"],
        ["fly\udfff", "x"],
        ["send", "did:key:z6Mk", "01J0000000000000000000000", "d\udc00"],
        ["mail", "did:key:z6Mk", "m\ud800", 60, "normal"],
        ["notify", "doc\ud800", "ping"],
        ["signal", "did:key:z6Mk", "01J0000000000000000000000", "\udbff"],
    ],
)
async def test_lone_surrogates_get_bad_type_and_leave_no_ghost(
    router: RunningRouter, header: list[object]
) -> None:
    header = [json.loads(f'"{h}"') if isinstance(h, str) else h for h in header]
    core = router.state.router
    for _ in range(20):
        a = await open_raw(router)
        await a.send(["listen", "doc"])
        await a.ws.send(raw_header(header, b"body"))
        got, _ = await a.recv()
        assert got[:2] == ["error", "bad_type"], got
        await a.expect_nothing()  # the connection stays usable
        await a.close()
    await until(lambda: not core.connections)
    assert core.docs == {}
    b = await open_raw(router)
    await b.send(["listen", "doc"])
    await b.expect_nothing()  # no ghost is announced
    await b.close()


async def test_permessage_deflate_is_never_negotiated(router: RunningRouter) -> None:
    signer = Signer.generate()
    ws = await connect(
        f"{router.ws_base}/connect/as/{signer.did_key}",
        subprotocols=[
            websockets.Subprotocol("authorization"),
            websockets.Subprotocol(connect_token(signer, router.did)),
            websockets.Subprotocol("hearth.v1"),
        ],
        compression="deflate",
        open_timeout=TIMEOUT,
    )
    assert ws.response is not None
    assert "Sec-WebSocket-Extensions" not in ws.response.headers
    assert ws.protocol.extensions == []
    assert (await asyncio.wait_for(ws.recv(decode=False), TIMEOUT))[4:16] == b'["welcome","'
    await ws.close()


async def test_router_wide_connection_limit(tmp_path: Path) -> None:
    running, task = await start_router(tmp_path, max_connections=2)
    try:
        a = await open_raw(running, Signer.generate())
        b = await open_raw(running, Signer.generate())
        carol = Signer.generate()
        # A third identity, however fresh, is refused before the upgrade: did:key
        # identities cost nothing, so the per-DID cap alone cannot bound the router.
        assert (
            await refused(
                running, carol.did_key, ["authorization", connect_token(carol, running.did)]
            )
            == 503
        )
        await b.close()
        await until(lambda: len(running.state.router.connections) == 1)
        c = await open_raw(running, carol)
        await a.close()
        await c.close()
    finally:
        await stop_router(running, task)


async def test_listen_rate_is_configured_and_reported(tmp_path: Path) -> None:
    running, task = await start_router(tmp_path, rate_listen=0.001, burst_listen=2.0)
    try:
        a = await open_raw(running)
        assert a.info["limits"]["rate_listen"] == 0.001
        assert a.info["limits"]["burst_listen"] == 2.0
        await a.send(["listen", "d1"])
        await a.send(["listen", "d2"])
        await a.send(["listen", "d3"])
        header, _ = await a.recv()
        assert header[:2] == ["error", "rate_limited"] and header[3] == "listen"
        await a.close()
    finally:
        await stop_router(running, task)


async def test_a_v0_client_receives_only_v0_frames(router: RunningRouter) -> None:
    # Roomy's RouterClient logs "Error parsing router message." for every frame
    # it does not know: a client that did not offer `hearth.v1` gets only
    # join, leave and send, whatever happens around it.
    roomy = Signer.generate()
    ws = await open_v0(router, roomy)
    core = router.state.router
    await until(lambda: roomy.did_key in core.by_did)
    (v0_conn,) = core.by_did[roomy.did_key]  # type: ignore[index]
    h = await open_raw(router)
    await h.send(["listen", "doc"])
    await h.expect_nothing()

    async def v0_recv() -> list[Any]:
        data = await asyncio.wait_for(ws.recv(decode=False), TIMEOUT)
        assert isinstance(data, bytes)
        return list(decode_frame(data)[0])

    await ws.send(encode_frame(["listen", "doc"]))
    assert await v0_recv() == ["join", h.did, h.conn_id, "doc"]  # no welcome before it
    assert (await h.recv())[0] == ["join", roomy.did_key, v0_conn, "doc"]
    # Everything that would draw an extension frame to the v0 client:
    await ws.send(b"\x00")  # a bad frame (error)
    await ws.send(encode_frame(["send", roomy.did_key, v0_conn, "doc"], b"self"))  # to_self
    await ws.send(encode_frame(["ice-servers"]))
    await ws.send(encode_frame(["mail", h.did, "m-from-v0", 60, "normal"], b"x"))  # receipt
    assert (await h.recv())[0][:3] == ["mail", roomy.did_key, "m-from-v0"]
    await h.send(["mail", roomy.did_key, "m1", 60, "ping"], b"sealed")  # a mail delivery
    assert (await h.recv())[0] == ["receipt", "m1", "stored"]
    await h.send(["signal", roomy.did_key, v0_conn, "doc"], b'{"type":"offer"}')
    header, _ = await h.recv()  # it would never see it: relay instead
    assert header[:2] == ["error", "unsupported"] and header[3] == "signal"
    await h.send(["send", roomy.did_key, v0_conn, "doc"], b"last")
    assert await v0_recv() == ["send", h.did, h.conn_id, "doc"]  # the very next frame
    assert core.stats.withheld >= 6
    await h.send(["listen"])
    assert await v0_recv() == ["leave", h.did, h.conn_id, "doc"]
    await h.close()
    await ws.close()

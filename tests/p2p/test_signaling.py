"""The router's `signal` and `ice-servers` verbs against a real router on port 0."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx

from router.ice import check_turn_credential
from router.signaling import parse_ice_servers, parse_signal
from tests.router.conftest import open_raw, start_router, stop_router

OFFER = json.dumps({"type": "offer", "sdp": "v=0\r\n", "gen": 1}).encode()


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "_total "):
            return float(line.split()[-1])
    raise AssertionError(f"{name} not in /metrics")


async def test_signal_is_forwarded_like_send_and_counted_apart(tmp_path: Path) -> None:
    router, task = await start_router(tmp_path)
    try:
        a, b = await open_raw(router), await open_raw(router)
        await a.send(["signal", b.did, b.conn_id, "doc1"], OFFER)
        header, body = await b.recv()
        assert header == ["signal", a.did, a.conn_id, "doc1"]
        assert body == OFFER
        assert parse_signal(header, body).json()["type"] == "offer"
        # same rules as send: wrong DID, unknown connId, self
        await a.send(["signal", a.did, b.conn_id, "doc1"], OFFER)
        assert (await a.recv())[0][:2] == ["error", "not_found"]
        await a.send(["signal", b.did, "nope", "doc1"], OFFER)
        assert (await a.recv())[0][:2] == ["error", "not_found"]
        await a.send(["signal", a.did, a.conn_id, "doc1"], OFFER)
        assert (await a.recv())[0][:2] == ["error", "to_self"]
        # a body that is not a JSON object, wrong arity
        await a.send(["signal", b.did, b.conn_id, "doc1"], b"\xff not json")
        assert (await a.recv())[0][:2] == ["error", "bad_body"]
        # JSON nested deeper than the decoder's recursion limit is a bad body too
        await a.send(["signal", b.did, b.conn_id, "doc1"], b"[" * 5_000)
        assert (await a.recv())[0][:2] == ["error", "bad_body"]
        await a.send(["signal", b.did, b.conn_id], OFFER)
        assert (await a.recv())[0][:2] == ["error", "bad_arity"]
        await b.send(["send", a.did, a.conn_id, "doc1"], b"12345")
        assert (await a.recv())[1] == b"12345"
        async with httpx.AsyncClient() as http:
            text = (await http.get(router.url + "/metrics")).text
        assert metric(text, "hearth_router_signal_frames") == 1
        assert metric(text, "hearth_router_signal_bytes") == len(OFFER)
        assert metric(text, "hearth_router_relayed_bytes") == 5
        await a.close()
        await b.close()
    finally:
        await stop_router(router, task)


async def test_signal_rate_limit(tmp_path: Path) -> None:
    router, task = await start_router(tmp_path, signal_rate=0.001, signal_burst=3.0)
    try:
        a, b = await open_raw(router), await open_raw(router)
        for _ in range(3):
            await a.send(["signal", b.did, b.conn_id, "d"], OFFER)
            assert (await b.recv())[0][0] == "signal"
        await a.send(["signal", b.did, b.conn_id, "d"], OFFER)
        header, _ = await a.recv()
        assert header[:2] == ["error", "rate_limited"]
        # send is not limited by the signal bucket
        await a.send(["send", b.did, b.conn_id, "d"], b"x")
        assert (await b.recv())[0][0] == "send"
        await a.close()
        await b.close()
    finally:
        await stop_router(router, task)


async def test_ice_servers_nothing_configured(tmp_path: Path) -> None:
    router, task = await start_router(tmp_path)
    try:
        a = await open_raw(router)
        await a.send(["ice-servers"])
        header, body = await a.recv()
        answer = parse_ice_servers(header, body)
        assert answer.ttl == 0 and answer.servers == []
        await a.send(["ice-servers", "extra"])
        assert (await a.recv())[0][:2] == ["error", "bad_arity"]
        await a.close()
    finally:
        await stop_router(router, task)


async def test_ice_servers_stun_and_turn(tmp_path: Path) -> None:
    router, task = await start_router(
        tmp_path,
        stun_urls=("stun:127.0.0.1:3478",),
        turn_urls=("turn:127.0.0.1:3478?transport=udp",),
        turn_secret="sekrit",
        turn_ttl=90,
    )
    try:
        a = await open_raw(router)
        await a.send(["ice-servers"])
        answer = parse_ice_servers(*(await a.recv()))
        assert answer.ttl == 90
        stun, turn = answer.servers
        assert stun == {"urls": ["stun:127.0.0.1:3478"]}
        assert turn["urls"] == ["turn:127.0.0.1:3478?transport=udp"]
        expiry, did = turn["username"].split(":", 1)
        assert did == a.did
        assert abs(int(expiry) - (time.time() + 90)) < 60
        assert check_turn_credential("sekrit", turn["username"], turn["credential"], time.time())
        await a.close()
    finally:
        await stop_router(router, task)


def test_settings_from_environment() -> None:
    from hearth.config import ServiceConfig, Settings, build_options
    from router.signaling import OPTIONS, SignalingSettings

    env = {
        "HEARTH_ROUTER_STUN_URLS": "stun:s.example:3478",
        "HEARTH_ROUTER_TURN_URLS": "turn:t.example:3478?transport=udp, turns:t.example:5349",
        "HEARTH_ROUTER_TURN_SECRET": "x",
        "HEARTH_ROUTER_TURN_TTL": "120",
        "HEARTH_ROUTER_SIGNAL_RATE": "5",
    }
    options = build_options(None, "router", OPTIONS, env)
    config = ServiceConfig("router", Settings(), options)
    settings = SignalingSettings.from_config(config)
    assert settings.ice.stun_urls == ("stun:s.example:3478",)
    assert settings.ice.turn_urls == ("turn:t.example:3478?transport=udp", "turns:t.example:5349")
    assert settings.ice.turn_secret == "x" and settings.ice.turn_ttl == 120
    assert settings.rate == (5.0, 200.0)
    defaults = SignalingSettings.from_config(
        ServiceConfig("router", Settings(), build_options(None, "router", OPTIONS, {}))
    )
    assert not defaults.ice.turn_enabled and defaults.ice.stun_urls == ()


def signal_body(size: int) -> bytes:
    """A JSON object body of exactly `size` bytes."""
    head = b'{"type":"offer","gen":1,"sdp":"'
    body = head + b"x" * (size - len(head) - 2) + b'"}'
    assert len(body) == size
    json.loads(body)
    return body


async def test_max_signal_bytes_and_limits_in_welcome(tmp_path: Path) -> None:
    router, task = await start_router(tmp_path, max_signal_bytes=200)
    try:
        a, b = await open_raw(router), await open_raw(router)
        limits = a.info["limits"]
        assert limits["max_signal_bytes"] == 200
        assert limits["signal_rate"] == 20.0 and limits["signal_burst"] == 200.0
        assert limits["ice_rate"] == 1.0 and limits["ice_burst"] == 10.0
        await a.send(["signal", b.did, b.conn_id, "d"], signal_body(200))
        header, body = await b.recv()
        assert header[0] == "signal" and len(body) == 200
        await a.send(["signal", b.did, b.conn_id, "d"], signal_body(201))
        header, _ = await a.recv()
        assert header == ["error", "too_large", "signal body over 200 bytes", "signal"]
        await b.expect_nothing()  # the refused body was not forwarded
        await a.close()
        await b.close()
    finally:
        await stop_router(router, task)


async def test_ice_servers_rate_is_configurable(tmp_path: Path) -> None:
    router, task = await start_router(tmp_path, ice_rate=0.001, ice_burst=2.0)
    try:
        a = await open_raw(router)
        assert a.info["limits"]["ice_rate"] == 0.001 and a.info["limits"]["ice_burst"] == 2.0
        for _ in range(2):
            await a.send(["ice-servers"])
            assert (await a.recv())[0][0] == "ice-servers"
        await a.send(["ice-servers"])
        header, _ = await a.recv()
        assert header[:2] == ["error", "rate_limited"] and header[3] == "ice-servers"
        await a.close()
    finally:
        await stop_router(router, task)

"""Session tokens: issued for a JWT, bound to the DID, revocable, never logged."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from pathlib import Path

import httpx
import pytest
import websockets

from hearth.jwt import Signer, mint_service_jwt
from tests.syncserver.helpers import TIMEOUT, RawPeer, RunningServer, metric, running_server
from tests.syncserver.ids import new_document_id
from tests.syncserver.test_protocol import make_changes, sync_until_acked


async def closed_with(url: str) -> int | None:
    async with websockets.connect(url) as ws:
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), TIMEOUT)
        return ws.close_code


async def test_token_needs_a_service_auth_jwt_for_this_method(server: RunningServer) -> None:
    alice = Signer.generate()
    r = await server.xrpc("GET", "token")
    assert r.status_code == 401 and r.json()["error"] == "AuthenticationRequired"
    wrong_lxm = mint_service_jwt(alice, iss=alice.did_key, aud=server.did, lxm="other.method")
    r = await server.xrpc("GET", "token", bearer=wrong_lxm)
    assert r.status_code == 401 and "lxm" in r.json()["message"]
    wrong_aud = mint_service_jwt(
        alice, iss=alice.did_key, aud="did:web:elsewhere", lxm="chat.hearth.v1.sync.token"
    )
    assert (await server.xrpc("GET", "token", bearer=wrong_aud)).status_code == 401
    r = await server.xrpc("GET", "token", alice)
    assert r.status_code == 200
    body = r.json()
    assert body["did"] == alice.did_key and body["expiresIn"] == 24 * 3600
    # A session token cannot mint more session tokens.
    assert (await server.xrpc("GET", "token", bearer=body["token"])).status_code == 401


async def test_unknown_token_is_refused(server: RunningServer) -> None:
    assert await closed_with(server.ws("not-a-token")) == 4001
    assert await metric(server, "hearth_syncserver_refused_total", reason="bad_token") == 1


async def test_token_binds_the_did_for_writes(server: RunningServer) -> None:
    alice = Signer.generate()
    token = await server.token_for(alice)
    doc_id = new_document_id()
    async with RawPeer.connect(server.ws(token)) as peer:
        await sync_until_acked(peer, doc_id, make_changes(2))
    r = await server.xrpc("GET", "getAccess", bearer=token, params={"documentId": doc_id})
    assert r.status_code == 200 and r.json()["owner"] == alice.did_key


async def test_revoking_closes_live_sockets_and_refuses_reconnects(server: RunningServer) -> None:
    alice = Signer.generate()
    one, two = await server.token_for(alice), await server.token_for(alice)
    async with RawPeer.connect(server.ws(one)) as peer:
        r = await server.xrpc("POST", "revokeToken", body={"token": one})
        assert r.status_code == 200 and r.json() == {"revoked": 1}
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(peer.ws.recv(), TIMEOUT)
        assert peer.ws.close_code == 4001
    assert await closed_with(server.ws(one)) == 4001
    # The other token still works until the DID revokes all of its tokens.
    async with RawPeer.connect(server.ws(two), "second"):
        pass
    r = await server.xrpc("POST", "revokeToken", alice, body={})
    assert r.json() == {"revoked": 1}
    assert await closed_with(server.ws(two)) == 4001
    assert (await server.xrpc("POST", "revokeToken", body={"token": "nope"})).status_code == 404


async def test_tokens_never_reach_logs(
    server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    token = await server.token_for(Signer.generate())
    uvicorn_log = logging.getLogger("uvicorn.error")
    old = uvicorn_log.level
    uvicorn_log.setLevel(logging.DEBUG)
    try:
        with caplog.at_level(logging.DEBUG):
            async with RawPeer.connect(server.ws(token)):
                pass
            await server.xrpc("GET", "export", bearer=token, params={"documentId": "x"})
            assert await closed_with(server.ws(token + "x")) == 4001
    finally:
        uvicorn_log.setLevel(old)
    assert any("WebSocket" in r.getMessage() for r in caplog.records)  # uvicorn did log
    server_records = [r for r in caplog.records if not r.name.startswith("websockets.client")]
    assert any("<redacted>" in r.getMessage() for r in server_records)
    assert not any(token in r.getMessage() for r in server_records)


async def test_deeply_nested_json_bodies_are_a_400(server: RunningServer) -> None:
    alice = Signer.generate()
    jwt = mint_service_jwt(
        alice, iss=alice.did_key, aud=server.did, lxm="chat.hearth.v1.sync.setAccess"
    )
    # setAccess reads a body only once authenticated; an anonymous revokeToken
    # body is at most 4 KiB.
    cases = {
        "setAccess": (b"[" * 100_000 + b"]" * 100_000, f"Bearer {jwt}"),
        "revokeToken": (b"[" * 2000 + b"]" * 2000, None),
    }
    async with httpx.AsyncClient() as http:
        for name, (nested, authorization) in cases.items():
            headers = {"content-type": "application/json"}
            if authorization is not None:
                headers["authorization"] = authorization
            r = await http.post(
                f"{server.url}/xrpc/chat.hearth.v1.sync.{name}", content=nested, headers=headers
            )
            assert r.status_code == 400, (name, r.status_code, r.text)
            assert r.json()["error"] == "InvalidRequest"


async def test_lone_surrogates_in_json_bodies_are_a_400(server: RunningServer) -> None:
    # JSON can escape a lone surrogate, and json.loads(bytes) also decodes the
    # three UTF-8-style bytes of one; neither string could be echoed or stored.
    alice = Signer.generate()
    escaped = b'"\\ud800"'
    raw = b'"\xed\xa0\x80"'
    for text in (escaped, raw):
        jwt = mint_service_jwt(
            alice, iss=alice.did_key, aud=server.did, lxm="chat.hearth.v1.sync.setAccess"
        )
        bodies = {
            "setAccess": (b'{"documentId":"%s","note":%s}' % (new_document_id().encode(), text)),
            "revokeToken": b'{"token":%s}' % text,
        }
        async with httpx.AsyncClient() as http:
            for name, body in bodies.items():
                headers = {"content-type": "application/json"}
                if name == "setAccess":
                    headers["authorization"] = f"Bearer {jwt}"
                r = await http.post(
                    f"{server.url}/xrpc/chat.hearth.v1.sync.{name}", content=body, headers=headers
                )
                assert r.status_code == 400, (name, text, r.status_code, r.text)
                assert r.json()["error"] == "InvalidRequest", r.text
    # A surrogate pair is an ordinary character.
    r = await server.xrpc("POST", "revokeToken", body={"token": "\U0001f600"})
    assert r.status_code == 404


async def status_before_the_body(url: str, path: str, length: int, authorization: str) -> int:
    """Send a POST's head declaring `length` body bytes, send none, return the status."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {length}\r\n{authorization}\r\n"
        )
        writer.write(head.encode())
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), TIMEOUT)
        return int(status_line.split()[1])
    finally:
        writer.close()


async def test_bodies_are_not_read_before_the_token_is_checked(server: RunningServer) -> None:
    set_access = "/xrpc/chat.hearth.v1.sync.setAccess"
    revoke = "/xrpc/chat.hearth.v1.sync.revokeToken"
    bad = "Authorization: Bearer not-a-token\r\n"
    for length in (100 << 20, 512 << 10):  # over the 1 MiB limit, and under it, never sent
        assert await status_before_the_body(server.url, set_access, length, "") == 401
        assert await status_before_the_body(server.url, set_access, length, bad) == 401
        assert await status_before_the_body(server.url, revoke, length, bad) == 401
    # Anonymous revokeToken: the body is the credential, limited to what one token needs.
    assert await status_before_the_body(server.url, revoke, 100 << 20, "") == 413
    assert await status_before_the_body(server.url, revoke, 8 << 10, "") == 413
    # The token checked first is still the owner's check: a stranger is 404/403 after it.
    owner, stranger = Signer.generate(), Signer.generate()
    token = await server.token_for(owner)
    doc_id = new_document_id()
    async with RawPeer.connect(server.ws(token)) as peer:
        await sync_until_acked(peer, doc_id, make_changes(1))
    r = await server.xrpc("POST", "setAccess", stranger, body={"documentId": doc_id})
    assert r.status_code == 403
    r = await server.xrpc("POST", "setAccess", bearer=token, body={"documentId": doc_id})
    assert r.status_code == 200
    r = await server.xrpc("POST", "setAccess", bearer=token, body={"documentId": "x"})
    assert r.status_code == 400


async def test_session_tokens_per_did_are_capped_and_the_newest_works(tmp_path: Path) -> None:
    cap = 4
    alice, bob = Signer.generate(), Signer.generate()
    async with running_server(tmp_path, max_tokens_per_did=cap) as server:
        bobs = await server.token_for(bob)
        tokens = [await server.token_for(alice) for _ in range(3 * cap)]
        db = sqlite3.connect(
            f"file:{tmp_path / 'syncserver' / 'syncserver.sqlite3'}?mode=ro", uri=True
        )
        try:
            (stored,) = db.execute(
                "SELECT COUNT(*) FROM tokens WHERE did = ?", (alice.did_key,)
            ).fetchone()
        finally:
            db.close()
        assert stored == cap
        async with RawPeer.connect(server.ws(tokens[-1])):
            pass
        assert await closed_with(server.ws(tokens[0])) == 4001  # evicted
        assert await closed_with(server.ws(tokens[-cap - 1])) == 4001
        unknown: dict[str, str] = {"documentId": new_document_id()}
        r = await server.xrpc("GET", "getAccess", bearer=tokens[-cap], params=unknown)
        assert r.status_code == 404  # authenticated: the oldest kept token still works
        r = await server.xrpc("GET", "getAccess", bearer=tokens[-cap - 1], params=unknown)
        assert r.status_code == 401
        async with RawPeer.connect(server.ws(bobs), "bob"):  # another DID's token stays
            pass

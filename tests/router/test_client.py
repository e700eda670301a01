"""router.client against a real router: events, send, reconnect restoring interests."""

from __future__ import annotations

import asyncio

import pytest
from websockets.exceptions import InvalidStatus

from hearth.jwt import Signer, mint_service_jwt
from router.client import (
    Deliver,
    Disconnected,
    ErrorMessage,
    Join,
    Leave,
    NotConnected,
    RouterClient,
    Welcome,
    did_key_auth,
    router_token_auth,
)
from router.server import RouterProtocol
from tests.router.conftest import TIMEOUT, RunningRouter


async def next_of(client: RouterClient, kind: type) -> object:
    async with asyncio.timeout(TIMEOUT):
        while True:
            event = await client.next_event()
            if isinstance(event, kind):
                return event


async def test_listen_join_send_leave(router: RunningRouter) -> None:
    alice, bob = Signer.generate(), Signer.generate()
    async with (
        RouterClient(router.url, did_key_auth(alice, router.did)) as a,
        RouterClient(router.url, did_key_auth(bob, router.did)) as b,
    ):
        wa = await a.next_event()
        assert isinstance(wa, Welcome) and wa.did == alice.did_key and a.conn_id == wa.conn_id
        await b.next_event()
        await a.listen("doc")
        await b.listen("doc")
        join = await next_of(a, Join)
        assert join == Join(b.did, b.conn_id, "doc")  # type: ignore[arg-type]
        await a.send(join.did, join.conn_id, "doc", b"payload")  # type: ignore[attr-defined]
        got = await next_of(b, Deliver)
        assert got == Deliver(a.did, a.conn_id, "doc", b"payload")  # type: ignore[arg-type]
        await a.send(alice.did_key, "01J0000000000000000000000", "doc", b"x")
        error = await next_of(a, ErrorMessage)
        assert error.code == "not_found" and error.verb == "send"  # type: ignore[attr-defined]
        await b.listen()
        left = await next_of(a, Leave)
        assert left == Leave(b.did, b.conn_id, "doc")  # type: ignore[arg-type]


async def test_reconnect_restores_interests(router: RunningRouter) -> None:
    alice, bob = Signer.generate(), Signer.generate()
    async with (
        RouterClient(router.url, did_key_auth(alice, router.did)) as a,
        RouterClient(router.url, did_key_auth(bob, router.did), backoff_min=0.01) as b,
    ):
        await a.listen("doc")
        await b.listen("doc")
        await next_of(a, Join)
        old = b.conn_id
        assert old is not None
        # The router drops bob's connection.
        proto = router.state.router.connections[old].peer
        assert isinstance(proto, RouterProtocol)
        proto.close(1011, "test restart")
        gone = await next_of(b, Disconnected)
        assert gone == Disconnected(1011, "test restart")
        assert await next_of(a, Leave) == Leave(b.did, old, "doc")  # type: ignore[arg-type]
        welcome = await next_of(b, Welcome)
        assert welcome.conn_id != old  # type: ignore[attr-defined]
        # The interest set came back without the application doing anything.
        rejoin = await next_of(a, Join)
        assert rejoin == Join(b.did, welcome.conn_id, "doc")  # type: ignore[arg-type, attr-defined]
        await b.send(a.did, a.conn_id or "", "doc", b"back")
        assert (await next_of(a, Deliver)).body == b"back"  # type: ignore[attr-defined]


async def test_router_token_auth_and_refusal(router: RunningRouter) -> None:
    alice = Signer.generate()
    nsid = "chat.roomy.v0.router.token"

    async def service_jwt() -> str:
        return mint_service_jwt(alice, iss=alice.did_key, aud=router.did, lxm=nsid)

    auth = router_token_auth(alice.did_key, router.url, service_jwt, nsid=nsid)
    async with RouterClient(router.url, auth) as a:
        assert isinstance(await a.next_event(), Welcome)
    # One connection only: a refused handshake raises.
    bad = did_key_auth(alice, "did:web:not-this-router.example")
    client = RouterClient(router.url, bad, reconnect=False)
    with pytest.raises(InvalidStatus):
        await client.start()
    with pytest.raises(NotConnected):
        await client.send(alice.did_key, "x", "doc", b"")
    await client.close()


async def test_without_reconnect_iteration_ends(router: RunningRouter) -> None:
    alice = Signer.generate()
    client = RouterClient(router.url, did_key_auth(alice, router.did), reconnect=False)
    await client.start()
    proto = router.state.router.connections[client.conn_id or ""].peer
    assert isinstance(proto, RouterProtocol)
    proto.close(1001, "bye")
    events = [e async for e in client]
    assert isinstance(events[0], Welcome)
    assert events[-1] == Disconnected(1001, "bye")
    await client.close()

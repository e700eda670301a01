"""router.client against a real router: events, send, reconnect restoring interests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from websockets import Subprotocol
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import InvalidStatus

from hearth.jwt import Signer, mint_service_jwt
from router.client import (
    Auth,
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
from tests.router.conftest import TIMEOUT, RunningRouter, start_router, stop_router


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


class CountingAuth:
    """Wraps an Auth: counts attempts and failures of its token source."""

    def __init__(self, inner: Auth) -> None:
        self.inner = inner
        self.calls = 0
        self.failures: list[BaseException] = []
        self.changed = asyncio.Event()

    @property
    def auth(self) -> Auth:
        return Auth(self.inner.did, self._token)

    async def _token(self) -> str:
        self.calls += 1
        self.changed.set()
        try:
            return await self.inner.token()
        except BaseException as e:
            self.failures.append(e)
            raise

    async def until(self, cond: Callable[[], bool]) -> None:
        async with asyncio.timeout(TIMEOUT):
            while not cond():
                self.changed.clear()
                await self.changed.wait()


def make_auth(kind: str, signer: Signer, url: str, router_did: str) -> Auth:
    if kind == "did_key":
        return did_key_auth(signer, router_did)
    nsid = "chat.hearth.v1.router.token"

    async def service_jwt() -> str:
        return mint_service_jwt(signer, iss=signer.did_key, aud=router_did, lxm=nsid)

    return router_token_auth(signer.did_key, url, service_jwt, nsid=nsid)


@pytest.mark.parametrize("kind", ["did_key", "router_token"])
async def test_router_restart_on_the_same_port(tmp_path: Path, kind: str) -> None:
    # The router goes away (with its token endpoint) and comes back on the same
    # port: the client keeps retrying through every kind of failure (refused
    # TCP, httpx.ConnectError from the token endpoint) and restores its interests.
    first, task = await start_router(tmp_path / "1")
    counting = CountingAuth(make_auth(kind, Signer.generate(), first.url, first.did))
    client = RouterClient(first.url, counting.auth, backoff_min=0.005, backoff_max=0.05)
    try:
        await client.start()
        await client.listen("doc")
        await stop_router(first, task)
        assert isinstance(await next_of(client, Disconnected), Disconnected)
        # several attempts fail while nothing listens on the port
        calls = counting.calls
        await counting.until(lambda: counting.calls >= calls + 3)
        if kind == "router_token":
            assert any(isinstance(e, httpx.ConnectError) for e in counting.failures)
        second, task = await start_router(tmp_path / "2", port=first.port)
        assert second.did == first.did
        try:
            welcome = await next_of(client, Welcome)
            assert welcome.conn_id == client.conn_id  # type: ignore[attr-defined]
            async with RouterClient(second.url, did_key_auth(Signer.generate(), second.did)) as b:
                await b.listen("doc")
                join = await next_of(b, Join)
                # the interest set came back without the application asking
                assert join == Join(client.did, welcome.conn_id, "doc")  # type: ignore[arg-type, attr-defined]
        finally:
            await client.close()
            await stop_router(second, task)
    finally:
        await client.close()


async def test_start_backs_off_until_the_router_appears(tmp_path: Path) -> None:
    # Nothing listens yet: start() keeps trying, each wait longer than the last.
    probe, task = await start_router(tmp_path / "probe")
    port, did, url = probe.port, probe.did, probe.url
    await stop_router(probe, task)
    attempts: list[int] = []
    counted = asyncio.Event()

    class Recording(RouterClient):
        def _backoff(self, attempt: int) -> float:
            attempts.append(attempt)
            counted.set()
            return super()._backoff(attempt)

    counting = CountingAuth(make_auth("router_token", Signer.generate(), url, did))
    client = Recording(url, counting.auth, backoff_min=0.001, backoff_max=0.02)
    starting = asyncio.create_task(client.start())
    try:
        async with asyncio.timeout(TIMEOUT):
            while len(attempts) < 4:
                counted.clear()
                await counted.wait()
        assert attempts[:4] == [0, 1, 2, 3]
        assert not starting.done()  # httpx.ConnectError did not escape start()
        running, task = await start_router(tmp_path / "up", port=port)
        try:
            await asyncio.wait_for(starting, TIMEOUT)
            assert isinstance(await next_of(client, Welcome), Welcome)
        finally:
            await client.close()
            await stop_router(running, task)
    finally:
        starting.cancel()
        await client.close()


async def test_bad_first_frame_is_retried(tmp_path: Path) -> None:
    # A server that answers the upgrade with garbage instead of `welcome`, then a
    # real router on the same port: the client gets through.
    probe, task = await start_router(tmp_path / "probe")
    port, did, url = probe.port, probe.did, probe.url
    await stop_router(probe, task)
    served = asyncio.Event()

    async def garbage(ws: ServerConnection) -> None:
        served.set()
        await ws.send(b"\x00")  # a short frame: FrameError in the client

    bogus = await serve(garbage, "127.0.0.1", port, subprotocols=[Subprotocol("authorization")])
    client = RouterClient(url, did_key_auth(Signer.generate(), did), backoff_min=0.005)
    starting = asyncio.create_task(client.start())
    try:
        await asyncio.wait_for(served.wait(), TIMEOUT)
        bogus.close()
        await bogus.wait_closed()
        assert not starting.done()
        running, task = await start_router(tmp_path / "up", port=port)
        try:
            await asyncio.wait_for(starting, TIMEOUT)
        finally:
            await client.close()
            await stop_router(running, task)
    finally:
        starting.cancel()
        await client.close()


async def test_close_ends_iteration_even_with_a_full_queue(router: RunningRouter) -> None:
    client = RouterClient(router.url, did_key_auth(Signer.generate(), router.did), queue_size=1)
    await client.start()  # `welcome` fills the queue
    assert client._events.full()
    await client.close()
    async with asyncio.timeout(TIMEOUT):
        events = [e async for e in client]
    assert len(events) == 1 and isinstance(events[0], Welcome)
    with pytest.raises(EOFError):
        await client.next_event()


async def test_a_429_connect_refusal_says_when_and_the_client_waits(tmp_path: Path) -> None:
    # One token check per address, then one every 2 s: after a connection the
    # next attempt from loopback is refused 429 with Retry-After.
    running, task = await start_router(tmp_path, auth_rate=0.5, auth_burst=1)
    pauses: list[float] = []

    class Recording(RouterClient):
        async def _pause(self, seconds: float) -> None:
            pauses.append(seconds)
            await super()._pause(seconds)

    try:
        async with RouterClient(
            running.url, did_key_auth(Signer.generate(), running.did), reconnect=False
        ):
            pass
        with pytest.raises(InvalidStatus) as refused:
            async with RouterClient(
                running.url, did_key_auth(Signer.generate(), running.did), reconnect=False
            ):
                pass
        response = refused.value.response
        assert response.status_code == 429
        retry = int(response.headers["Retry-After"])
        assert 1 <= retry <= 2 and f"retry in {retry} s" in response.body.decode()
        # A reconnecting client with a backoff far below it waits as told, once.
        client = Recording(
            running.url,
            did_key_auth(Signer.generate(), running.did),
            backoff_min=0.001,
            backoff_max=0.01,
        )
        try:
            await asyncio.wait_for(client.start(), TIMEOUT)
        finally:
            await client.close()
        # Refused once (retrying every 10 ms instead would be refused ~100 times).
        assert running.state.refused == {"auth_rate_limited": 2}
        assert len(pauses) == 1 and pauses[0] >= 1, pauses
    finally:
        await stop_router(running, task)

"""The directory of public spaces at a real syncserver (port 0, real HTTP):
chat.hearth.v1.directory.*; the listing logic itself without a server."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from hearth.jwt import mint_service_jwt
from hearth.spaces import OpId, SpaceState
from hearth.spaces.ops import Join, JoinPolicy, Rank, SetDescription, SetJoinPolicy, SetRole
from hearth.spaces.state import Member
from hearth.types import Did
from syncserver.directory import Directory, parse_cursor
from tests.syncserver.helpers import running_server
from tests.syncserver.spaces_world import Person, Space, SpacesClient, statuses

NO_INVITE = Join(None, None, None)
DIRECTORY = "chat.hearth.v1.directory"


class DirectoryClient(SpacesClient):
    async def dir(
        self,
        who: Person | None,
        method: str,
        name: str,
        *,
        params: dict[str, str] | str | None = None,
        body: Any = None,
        session: bool = False,
    ) -> httpx.Response:
        headers = {"content-type": "application/json"}
        if who is not None and session:
            headers["authorization"] = f"Bearer {await self.token(who)}"
        elif who is not None:
            jwt = mint_service_jwt(who.signer, iss=who.did, aud=self.did, lxm=f"{DIRECTORY}.{name}")
            headers["authorization"] = f"Bearer {jwt}"
        url = f"{self.url}/xrpc/{DIRECTORY}.{name}"
        if isinstance(params, str):  # raw, percent-escapes as given
            url, params = f"{url}?{params}", None
        async with httpx.AsyncClient() as http:
            # ASCII-escaped, so a test can send a lone surrogate.
            content = None if body is None else json.dumps(body).encode()
            return await http.request(method, url, headers=headers, params=params, content=content)

    async def set_listed(self, who: Person, space: str, listed: bool) -> httpx.Response:
        return await self.dir(who, "POST", "setListed", body={"space": space, "listed": listed})

    async def everything(
        self, who: Person | None, name: str = "list", limit: int = 25, **extra: str
    ) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        cursor = ""
        while True:
            params = {"limit": str(limit), **extra}
            if cursor:
                params["cursor"] = cursor
            r = await self.dir(who, "GET", name, params=params)
            assert r.status_code == 200, r.text
            page = r.json()
            assert len(page["spaces"]) <= limit
            out += page["spaces"]
            if "cursor" not in page:
                return out
            cursor = page["cursor"]


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[DirectoryClient]:
    async with running_server(tmp_path) as srv:
        yield DirectoryClient(srv.url, srv.did)


async def founded(
    c: SpacesClient, *, members: int = 1, policy: JoinPolicy = JoinPolicy.OPEN
) -> tuple[Space, list[Person]]:
    people = [Person(f"p{i}") for i in range(members)]
    s = Space(people[0])
    ops = [s.create, *(s.write(p, NO_INVITE) for p in people[1:])]
    if policy is not JoinPolicy.OPEN:
        ops.append(s.write(people[0], SetJoinPolicy(policy)))
    answer = await c.submit(people[0], s.id, *ops)
    assert all(st == "accepted" for st, _ in statuses(answer)), answer
    return s, people


async def test_owner_lists_anyone_sees_the_public_face_members_the_private_name(
    client: DirectoryClient,
) -> None:
    c = client
    s, (alice, bob) = await founded(c, members=2)
    await c.submit(alice, s.id, s.write(alice, SetDescription("Knitting, mostly")))
    r = await c.set_listed(alice, s.id, True)
    assert r.status_code == 200 and r.json() == {"space": s.id, "listed": True}, r.text

    public = {
        "space": s.id,
        "name": "Hearth",
        "description": "Knitting, mostly",
        "memberCount": 2,
        "joinPolicy": "open",
    }
    assert await c.everything(None) == [public]
    assert await c.everything(None, "search", q="KNIT") == [public]
    assert await c.everything(None, "search", q="nothing like it") == []
    assert await c.everything(Person("stranger")) == [public]
    assert await c.everything(bob) == [{**public, "privateName": "Hearth (members)"}]
    r = await c.dir(bob, "GET", "search", params={"q": "hearth"}, session=True)
    assert r.json() == {"spaces": [{**public, "privateName": "Hearth (members)"}]}
    # The private name is no search oracle, even for members.
    assert await c.everything(None, "search", q="(members)") == []
    assert await c.everything(bob, "search", q="(members)") == []

    # Fresh from the log: a new member and a new description show without relisting.
    carol = Person("carol")
    await c.submit(carol, s.id, s.write(carol, NO_INVITE))
    await c.submit(alice, s.id, s.write(alice, SetDescription("Crochet too")))
    (entry,) = await c.everything(None, "search", q="crochet")
    assert entry["memberCount"] == 3 and entry["description"] == "Crochet too"

    r = await c.set_listed(alice, s.id, False)
    assert r.status_code == 200 and r.json()["listed"] is False
    assert await c.everything(None) == []
    assert await c.everything(None, "search", q="crochet") == []


async def test_only_the_owner_lists_and_unlists(client: DirectoryClient) -> None:
    c = client
    s, (alice, bob) = await founded(c, members=2)
    await c.submit(alice, s.id, s.write(alice, SetRole(bob.did, Rank.ADMIN)))
    r = await c.set_listed(bob, s.id, True)
    assert r.status_code == 403 and r.json()["error"] == "NotOwner", r.text
    assert (await c.set_listed(Person("x"), s.id, True)).status_code == 403
    assert await c.everything(None) == []
    assert (await c.set_listed(alice, s.id, True)).status_code == 200
    r = await c.set_listed(bob, s.id, False)
    assert r.status_code == 403 and r.json()["error"] == "NotOwner"
    assert [e["space"] for e in await c.everything(None)] == [s.id]
    r = await c.dir(None, "POST", "setListed", body={"space": s.id, "listed": False})
    assert r.status_code == 401
    r = await c.set_listed(alice, "0" * 64, True)
    assert r.status_code == 404 and r.json()["error"] == "SpaceNotFound"


async def test_invite_only_is_never_listed(client: DirectoryClient) -> None:
    c = client
    hidden, (alice,) = await founded(c, policy=JoinPolicy.INVITE_ONLY)
    r = await c.set_listed(alice, hidden.id, True)
    assert r.status_code == 409 and r.json()["error"] == "InviteOnly", r.text
    assert "invite-only" in r.json()["message"]

    s, (bob,) = await founded(c, policy=JoinPolicy.APPROVAL)
    assert (await c.set_listed(bob, s.id, True)).status_code == 200
    assert [e["joinPolicy"] for e in await c.everything(None)] == ["approval"]
    await c.submit(bob, s.id, s.write(bob, SetJoinPolicy(JoinPolicy.INVITE_ONLY)))
    assert await c.everything(None) == []
    assert await c.everything(None, "search", q="hearth") == []
    # It left the directory: opening up again does not list it, its owner does.
    await c.submit(bob, s.id, s.write(bob, SetJoinPolicy(JoinPolicy.OPEN)))
    assert await c.everything(None) == []
    assert (await c.set_listed(bob, s.id, True)).status_code == 200
    assert [e["joinPolicy"] for e in await c.everything(None)] == ["open"]


async def test_pages_hold_every_listed_space_once_in_a_stable_order(
    client: DirectoryClient,
) -> None:
    c = client
    spaces = [(await founded(c, members=1 + i % 3))[0] for i in range(7)]
    for s in spaces:
        assert (await c.set_listed(s.owner, s.id, True)).status_code == 200
    whole = await c.everything(None, limit=100)
    assert [(-e["memberCount"], e["space"]) for e in whole] == sorted(
        (-e["memberCount"], e["space"]) for e in whole
    )
    for limit in (1, 2, 3):
        paged = await c.everything(None, limit=limit)
        assert paged == whole
        found = await c.everything(None, "search", limit=limit, q="hearth")
        assert found == whole
    assert sorted(e["space"] for e in whole) == sorted(s.id for s in spaces)


async def test_bad_input_is_refused(client: DirectoryClient) -> None:
    c = client
    s, (alice,) = await founded(c)
    for params in (
        "limit=0",
        "limit=101",
        "limit=-1",
        "limit=ten",
        "cursor=nope",
        "cursor=" + "A" * 200,
        "limit=1&limit=2",
        "other=1",
        "limit=%ED%A0%80",
        "cursor=%FF",
    ):
        r = await c.dir(None, "GET", "list", params=params)
        assert r.status_code == 400 and r.json()["error"] == "InvalidRequest", (params, r.text)
    for params in ("q=" + "a" * 101, "q=", "q=%ED%A0%80", "q=a%ED%B0%80b", ""):
        r = await c.dir(None, "GET", "search", params=params)
        assert r.status_code == 400 and r.json()["error"] == "InvalidRequest", (params, r.text)
    for body in (
        {"space": s.id},
        {"space": s.id, "listed": "yes"},
        {"space": "nope", "listed": True},
        {"space": s.id, "listed": True, "nested": [[[["deep"]]]]},
    ):
        r = await c.dir(alice, "POST", "setListed", body=body)
        assert r.status_code == 400 and r.json()["error"] == "InvalidRequest", (body, r.text)
    r = await c.dir(alice, "POST", "setListed", body={"space": s.id, "listed": True, "x": "\ud800"})
    assert r.status_code == 400
    # The server still answers.
    r = await c.dir(None, "GET", "search", params={"q": "\u00e9t\u00e9 \U0001f9f6"})
    assert r.status_code == 200 and r.json() == {"spaces": []}


async def test_list_and_search_are_rate_limited_per_address(tmp_path: Path) -> None:
    async with running_server(tmp_path, directory_requests_per_minute=2) as srv:
        c = DirectoryClient(srv.url, srv.did)
        for name in ("list", "search"):
            r = await c.dir(None, "GET", name, params={"q": "x"} if name == "search" else None)
            assert r.status_code == 200, r.text
        r = await c.dir(Person("anyone"), "GET", "list")
        assert r.status_code == 429 and r.json()["error"] == "RateLimitExceeded"
        assert int(r.headers["retry-after"]) >= 1


async def test_listing_survives_a_restart(tmp_path: Path) -> None:
    async with running_server(tmp_path) as srv:
        c = DirectoryClient(srv.url, srv.did)
        s, (alice, bob) = await founded(c, members=2)
        gone, (carol,) = await founded(c)
        assert (await c.set_listed(alice, s.id, True)).status_code == 200
        assert (await c.set_listed(carol, gone.id, True)).status_code == 200
        assert (await c.set_listed(carol, gone.id, False)).status_code == 200
        closed, (dave,) = await founded(c)
        assert (await c.set_listed(dave, closed.id, True)).status_code == 200
        await c.submit(dave, closed.id, closed.write(dave, SetJoinPolicy(JoinPolicy.INVITE_ONLY)))
        await c.submit(dave, closed.id, closed.write(dave, SetJoinPolicy(JoinPolicy.OPEN)))
        before = await c.everything(bob)
    async with running_server(tmp_path) as srv:
        c = DirectoryClient(srv.url, srv.did)
        assert await c.everything(bob) == before
        assert [e["space"] for e in before] == [s.id] and before[0]["privateName"]


def _state(space: str, members: int, name: str, policy: JoinPolicy) -> SpaceState:
    people = {Did(f"did:key:z{space[:4]}{i}"): Member(Rank.MEMBER, False) for i in range(members)}
    return SpaceState(OpId(space), public_name=name, policy=policy, members=people)


def test_directory_pages_without_a_server() -> None:
    d = Directory()
    a, b, c = "a" * 64, "b" * 64, "c" * 64
    d.put(_state(b, 2, "Bees", JoinPolicy.OPEN))
    d.put(_state(a, 2, "Ants", JoinPolicy.APPROVAL))
    d.put(_state(c, 5, "Cats", JoinPolicy.OPEN))
    d.changed(OpId("d" * 64), _state("d" * 64, 9, "Dogs", JoinPolicy.OPEN))  # not listed
    first, cursor = d.page(None, 2)
    assert [e.space for e in first] == [c, a] and cursor is not None
    rest, end = d.page(parse_cursor(cursor), 2)
    assert [e.space for e in rest] == [b] and end is None
    d.changed(OpId(c), _state(c, 5, "Cats", JoinPolicy.INVITE_ONLY))
    assert [e.space for e in d.page(None, 10)[0]] == [a, b]
    assert [e.space for e in d.page(None, 10, "EE")[0]] == [b]
    d.remove(OpId(a))
    assert [e.space for e in d.page(None, 10)[0]] == [b]

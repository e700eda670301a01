"""Space authority logs at a real syncserver (port 0, real HTTP): chat.hearth.v1.space.*."""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from hearth.spaces import OpId
from hearth.spaces.ops import (
    Approve,
    Deny,
    Join,
    JoinPolicy,
    Kick,
    Knock,
    Rank,
    SetDescription,
    SetJoinPolicy,
    SetRole,
    SetStampCost,
)
from hearth.spaces.stamps import Purpose, challenge, make_stamp, worth
from tests.faults import locked
from tests.syncserver.helpers import running_server, server_at, server_process
from tests.syncserver.spaces_world import Person, Space, SpacesClient, now_ms, statuses
from tests.timing import MS

NO_INVITE = Join(None, None, None)


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[SpacesClient]:
    async with running_server(tmp_path) as srv:
        yield SpacesClient(srv.url, srv.did)


async def founded(c: SpacesClient, *, members: int = 1) -> tuple[Space, list[Person]]:
    """An open space whose owner (first person) and `members - 1` others joined; stored."""
    people = [Person(f"p{i}") for i in range(members)]
    s = Space(people[0])
    ops = [s.create]
    for p in people[1:]:
        ops.append(s.write(p, NO_INVITE))
    answer = await c.submit(people[0], s.id, *ops)
    assert all(st == "accepted" for st, _ in statuses(answer)), answer
    return s, people


async def test_knock_waits_for_offline_moderators_then_approved(client: SpacesClient) -> None:
    c = client
    alice, bob, carol, dave = Person("alice"), Person("bob"), Person("carol"), Person("dave")
    s = Space(alice)
    ops = [s.create, s.write(bob, NO_INVITE), s.write(alice, SetRole(bob.did, Rank.MODERATOR))]
    ops.append(s.write(alice, SetJoinPolicy(JoinPolicy.APPROVAL)))
    # Bob's own join is relayed by Alice: ops travel whoever authored them.
    assert statuses(await c.submit(alice, s.id, *ops)) == [("accepted", None)] * 4

    # Carol is no member: she sees the public part, enough to knock.
    public = await c.state(carol, s.id)
    assert public["view"] == "public"
    assert public["state"]["joinPolicy"] == "approval"
    assert public["state"]["memberCount"] == 2
    assert "privateName" not in public["state"] and "members" not in public["state"]
    assert public["you"] == {"did": carol.did, "member": False, "requests": []}
    # Nobody else is connected: the server keeps the knock.
    knock = s.write(carol, Knock("hi, Bob sent me", None), public["joinParents"])
    answer = await c.submit(carol, s.id, knock)
    assert statuses(answer) == [("accepted", None)]
    assert "heads" not in answer  # no member: no view of the log
    mine = await c.state(carol, s.id)
    assert mine["you"]["requests"] == [
        {"id": knock.id, "note": "hi, Bob sent me", "status": "pending"}
    ]
    own = await c.ops(carol, s.id)
    assert own["view"] == "own" and own["ops"] == [knock.wire.decode()]

    # Dave knocks too and is denied.
    dknock = s.write(dave, Knock("let me in", None), public["joinParents"])
    assert statuses(await c.submit(dave, s.id, dknock)) == [("accepted", None)]

    # Later the owner comes online: the requests are in the state, with their notes.
    full = await c.state(alice, s.id)
    assert full["view"] == "member"
    assert full["state"]["requests"][knock.id]["note"] == "hi, Bob sent me"
    assert full["state"]["requests"][knock.id]["did"] == carol.did
    assert dknock.id in full["state"]["requests"]
    # Her own log is behind the server's (knocks she never saw): fetch and follow.
    for w in await c.all_ops(alice, s.id):
        s.log.add(w.encode())
    approve = s.write(alice, Approve(knock.id, True), sorted({*s.log.heads, knock.id}))
    deny = s.write(bob, Deny(dknock.id, "not now"), sorted({*s.log.heads, dknock.id}))
    assert statuses(await c.submit(alice, s.id, approve, deny)) == [("accepted", None)] * 2

    # Carol is a member now: the whole state, the whole log.
    now = await c.state(carol, s.id)
    assert now["view"] == "member"
    assert now["state"]["members"][carol.did] == {"rank": "member", "ticket": True}
    assert len(await c.all_ops(carol, s.id)) == 8
    # Dave reads why.
    dstate = await c.state(dave, s.id)
    assert dstate["you"]["requests"] == [
        {"id": dknock.id, "note": "let me in", "status": "denied", "reason": "not now"}
    ]


async def test_submit_with_a_service_auth_jwt_and_without_credentials(
    client: SpacesClient,
) -> None:
    alice = Person("alice")
    s = Space(alice)
    r = await client.call(
        alice, "POST", "submitOps", body={"space": s.id, "ops": [s.create.wire.decode()]}, jwt=True
    )
    assert r.status_code == 200, r.text
    assert r.json()["results"] == [{"id": s.id, "status": "accepted", "stored": True}]
    r = await client.call(None, "POST", "submitOps", body={"space": s.id, "ops": []})
    assert r.status_code == 401 and r.json()["error"] == "AuthenticationRequired"
    r = await client.call(None, "GET", "getOps", params={"space": s.id})
    assert r.status_code == 401


async def test_bad_ops_refused_precisely_and_nothing_stored(client: SpacesClient) -> None:
    """Boundary refusals keep nothing; ops the rules reject are kept without effect
    (docs/spaces.md, "Plug-in points": dropping them would strand what descends from
    them), so an escalation, an outsider's op relayed by a member, change nothing."""
    c = client
    s, (alice, bob, carol) = await founded(c, members=3)
    mallory = Person("mallory")
    before = await c.all_ops(alice, s.id)

    good = s.write(alice, SetDescription("ok"), keep=False)
    forged_sig = s.write(alice, SetDescription("mine now"), sign_as=bob, keep=False)
    escalation = s.write(bob, SetRole(carol.did, Rank.ADMIN), keep=False)  # bob is a member
    self_promotion = s.write(bob, SetRole(bob.did, Rank.OWNER), keep=False)
    outsider = s.write(mallory, SetDescription("spam"), keep=False)
    other_space = Space(mallory)
    cases = [
        (b"not json", "not-json"),
        (good.wire.replace(b'"time"', b' "time"'), "not-canonical"),
        (b'{"op":{},"sig":"00"}', "bad-field"),
        (b"\xff\xfe", "not-utf8"),
        (forged_sig.wire, "bad-signature"),
        (other_space.create.wire, "wrong-space"),
    ]
    answer = await c.submit(alice, s.id, *(w for w, _ in cases))
    assert statuses(answer) == [("rejected", why) for _, why in cases]
    for r in answer["results"]:
        assert r["message"] and r["stored"] is False
    assert await c.all_ops(alice, s.id) == before
    state = await c.state(alice, s.id)
    assert state["state"]["description"] == "" and state["state"]["rejected"] == {}

    # Escalations by a member, an outsider's op relayed by a member: no effect.
    ruled = [(escalation, "rank"), (self_promotion, "rank"), (outsider, "not-member")]
    answer = await c.submit(alice, s.id, *(o for o, _ in ruled))
    assert statuses(answer) == [("rejected", why) for _, why in ruled]
    assert all(r["stored"] for r in answer["results"])
    state = await c.state(alice, s.id)
    assert state["state"]["description"] == ""
    assert state["state"]["members"][carol.did]["rank"] == "member"
    assert state["state"]["members"][bob.did]["rank"] == "member"
    assert mallory.did not in state["state"]["members"]
    assert state["state"]["rejected"] == {o.id: why for o, why in ruled}
    before = await c.all_ops(alice, s.id)

    # A non-member sends someone else's op, or one that is not an entry op: 403.
    spam = s.write(mallory, SetDescription("more spam"), keep=False)
    r = await c.call(
        mallory, "POST", "submitOps", body={"space": s.id, "ops": [spam.wire.decode()]}
    )
    assert r.status_code == 403 and r.json()["error"] == "NotMember", r.text
    assert "not-member" in r.json()["message"]
    r = await c.call(
        mallory, "POST", "submitOps", body={"space": s.id, "ops": [good.wire.decode()]}
    )
    assert r.status_code == 403 and r.json()["error"] == "NotMember"
    # Ops of an unknown space, without its create: 404.
    r = await c.call(
        alice,
        "POST",
        "submitOps",
        body={"space": other_space.id, "ops": [good.wire.decode()]},
    )
    assert r.status_code == 404 and r.json()["error"] == "SpaceNotFound"
    # Not a request at all.
    bodies: list[dict[str, object]] = [
        {"space": "nope", "ops": []},
        {"space": s.id, "ops": [1]},
        {"ops": []},
    ]
    for body in bodies:
        r = await c.call(alice, "POST", "submitOps", body=body)
        assert r.status_code == 400 and r.json()["error"] == "InvalidRequest", body
    assert await c.all_ops(alice, s.id) == before
    # The good op still goes in, and the service keeps serving.
    assert statuses(await c.submit(alice, s.id, good)) == [("accepted", None)]
    async with httpx.AsyncClient() as http:
        assert (await http.get(c.url + "/xrpc/_health")).status_code == 200


async def test_unknown_parents_wait_then_are_promoted(client: SpacesClient) -> None:
    c = client
    s, (alice, bob) = await founded(c, members=2)
    first = s.write(alice, SetRole(bob.did, Rank.ADMIN))
    second = s.write(bob, SetDescription("described by bob"))
    answer = await c.submit(alice, s.id, second)
    assert statuses(answer) == [("pending", None)]
    state = await c.state(alice, s.id)
    assert state["pending"] == [second.id]
    assert state["state"]["description"] == ""
    assert second.wire.decode() in await c.all_ops(alice, s.id)
    # The parent arrives: the waiting op is resolved (and takes effect only now).
    assert statuses(await c.submit(alice, s.id, first)) == [("accepted", None)]
    state = await c.state(alice, s.id)
    assert state["pending"] == []
    assert state["state"]["rejected"] == {}
    assert state["state"]["description"] == "described by bob"
    # Sending it again changes nothing and says what became of it.
    assert statuses(await c.submit(bob, s.id, second)) == [("accepted", None)]


async def test_forged_rank_escalation_is_refused(client: SpacesClient) -> None:
    """Bob writes a kick before he saw his promotion to moderator: rank-not-seen."""
    c = client
    s, (alice, bob, carol) = await founded(c, members=3)
    before_promotion = s.log.heads
    promote = s.write(alice, SetRole(bob.did, Rank.MODERATOR))
    assert statuses(await c.submit(alice, s.id, promote)) == [("accepted", None)]
    backdated = s.write(bob, Kick(carol.did, "early"), before_promotion, keep=False)
    answer = await c.submit(bob, s.id, backdated)
    assert statuses(answer) == [("rejected", "rank-not-seen")]
    state = await c.state(alice, s.id)
    assert carol.did in state["state"]["members"]
    assert state["state"]["rejected"] == {backdated.id: "rank-not-seen"}


async def test_stamped_knocks(client: SpacesClient) -> None:
    c = client
    alice, carol = Person("alice"), Person("carol")
    s = Space(alice, JoinPolicy.APPROVAL)
    cost = s.write(alice, SetStampCost(4, 0))
    assert statuses(await c.submit(alice, s.id, s.create, cost)) == [("accepted", None)] * 2
    public = await c.state(carol, s.id)
    assert public["state"]["stampCost"] == {"join": 4, "firstPost": 0}
    bare = s.write(carol, Knock("no stamp", None), [OpId(s.id)], keep=False)
    assert statuses(await c.submit(carol, s.id, bare)) == [("rejected", "stamp-missing")]
    t = now_ms()
    cheap = None
    for seed in range(256):  # a stamp worth exactly 0-3 bits: too cheap for 4
        st = make_stamp(carol.did, s.id, Purpose.JOIN, 0, t, seed=seed.to_bytes(8, "big"))
        if worth(challenge(carol.did, s.id, Purpose.JOIN, st.window), st.nonce) < 4:
            cheap = st
            break
    assert cheap is not None
    # Each knock follows the one before, so the walk meets them in this order.
    too_cheap = s.write(carol, Knock("cheap", cheap.encode()), [bare.id], time_ms=t, keep=False)
    assert statuses(await c.submit(carol, s.id, too_cheap)) == [("rejected", "stamp-too-cheap")]
    good_stamp = make_stamp(carol.did, s.id, Purpose.JOIN, 4, t)
    good = s.write(carol, Knock("paid", good_stamp.encode()), [too_cheap.id], time_ms=t)
    assert statuses(await c.submit(carol, s.id, good)) == [("accepted", None)]
    requests = (await c.state(carol, s.id))["you"]["requests"]
    assert [(r["status"], r.get("reason")) for r in requests] == [
        ("rejected", "stamp-missing"),
        ("rejected", "stamp-too-cheap"),
        ("pending", None),
    ]
    # A knock claiming a time far from the server's clock.
    old = s.write(carol, Knock("old", None), [OpId(s.id)], time_ms=t - 3_600_000, keep=False)
    assert statuses(await c.submit(carol, s.id, old)) == [("rejected", "time-skew")]
    # create, cost, and the three knocks that verified (two without effect)
    assert len(await c.all_ops(alice, s.id)) == 5


async def test_limits_batch_op_size_log_and_pending(tmp_path: Path) -> None:
    async with running_server(
        tmp_path,
        space_max_ops=7,
        space_max_rejected_per_author=1,
        space_max_batch=3,
        space_max_pending=1,
    ) as srv:
        c = SpacesClient(srv.url, srv.did)
        s, (alice, bob) = await founded(c, members=2)
        ops = [s.write(alice, SetDescription(f"d{i}")) for i in range(4)]
        r = await c.call(
            alice,
            "POST",
            "submitOps",
            body={"space": s.id, "ops": [o.wire.decode() for o in ops]},
        )
        assert r.status_code == 413 and r.json()["error"] == "BatchTooLarge", r.text
        # Over the format's 16 KiB (no op with valid fields gets there).
        big = b'{"op":' + b" " * 16_400 + b"}"
        assert statuses(await c.submit(alice, s.id, big)) == [("rejected", "too-large")]
        # Pending: one op may wait for a parent; a second is refused whole.
        lost = s.write(alice, SetDescription("never sent"), keep=False)
        w1 = s.write(alice, SetDescription("w1"), [lost.id], keep=False)
        w2 = s.write(alice, SetDescription("w2"), [w1.id], keep=False)
        assert statuses(await c.submit(alice, s.id, w1)) == [("pending", None)]
        r = await c.call(
            alice, "POST", "submitOps", body={"space": s.id, "ops": [w2.wire.decode()]}
        )
        assert r.status_code == 429 and r.json()["error"] == "TooManyPending", r.text
        # One op of bob's that the rules reject is kept; a second is one too many.
        tries = [
            s.write(bob, SetRole(bob.did, rank), [s.ops[1].id], keep=False)
            for rank in (Rank.ADMIN, Rank.MODERATOR)
        ]
        assert statuses(await c.submit(bob, s.id, tries[0])) == [("rejected", "rank")]
        r = await c.call(
            bob, "POST", "submitOps", body={"space": s.id, "ops": [tries[1].wire.decode()]}
        )
        assert r.status_code == 429 and r.json()["error"] == "TooManyRejectedOps", r.text
        # The log: 2 + 1 pending + 1 rejected held; 3 more fit, the 4th is refused whole.
        assert statuses(await c.submit(alice, s.id, *ops[:3])) == [("accepted", None)] * 3
        r = await c.call(
            alice, "POST", "submitOps", body={"space": s.id, "ops": [ops[3].wire.decode()]}
        )
        assert r.status_code == 413 and r.json()["error"] == "LogFull", r.text
        assert "log-full" in r.json()["message"]
        assert len(await c.all_ops(alice, s.id)) == 7
        assert (await c.state(alice, s.id))["state"]["description"] == "d2"


async def test_join_request_flood_and_submit_rate(tmp_path: Path) -> None:
    async with running_server(
        tmp_path,
        space_join_requests_per_did=2,
        space_creates_per_did=2,
        space_join_requests_per_space=3,
        space_submits_per_minute=8,
    ) as srv:
        c = SpacesClient(srv.url, srv.did)
        alice = Person("alice")
        s = Space(alice, JoinPolicy.APPROVAL)
        await c.submit(alice, s.id, s.create)
        carol = Person("carol")
        k1 = s.write(carol, Knock("1", None), [OpId(s.id)], keep=False)
        # Carol knocks again having seen her first knock: already-pending, but it counts.
        k2 = s.write(carol, Knock("2", None), [k1.id], keep=False)
        k3 = s.write(carol, Knock("3", None), [k1.id], keep=False)
        assert statuses(await c.submit(carol, s.id, k1)) == [("accepted", None)]
        assert statuses(await c.submit(carol, s.id, k2)) == [("rejected", "already-pending")]
        r = await c.call(
            carol, "POST", "submitOps", body={"space": s.id, "ops": [k3.wire.decode()]}
        )
        assert r.status_code == 429 and r.json()["error"] == "TooManyJoinRequests", r.text
        assert "Retry-After" in r.headers
        # Per space: the third request this hour is the last.
        dave, erin = Person("dave"), Person("erin")
        kd = s.write(dave, Knock("d", None), [OpId(s.id)], keep=False)
        ke = s.write(erin, Knock("e", None), [OpId(s.id)], keep=False)
        assert statuses(await c.submit(dave, s.id, kd)) == [("accepted", None)]
        r = await c.call(erin, "POST", "submitOps", body={"space": s.id, "ops": [ke.wire.decode()]})
        assert r.status_code == 429 and r.json()["error"] == "TooManyJoinRequests"  # erin: 1
        state = await c.state(alice, s.id)
        assert sorted(q["did"] for q in state["state"]["requests"].values()) == sorted(
            [carol.did, dave.did]
        )
        assert len(await c.all_ops(alice, s.id)) == 4  # k2 is kept, without effect
        # The submit rate per caller: carol has used 3 of 8.
        for _ in range(5):
            await c.submit(carol, s.id, k1)
        r = await c.call(
            carol, "POST", "submitOps", body={"space": s.id, "ops": [k1.wire.decode()]}
        )
        assert r.status_code == 429 and r.json()["error"] == "RateLimitExceeded"
        # Others are still served.
        assert (await c.state(alice, s.id))["view"] == "member"
        # Alice founded one space; a second is fine, a third this hour is one too many.
        second, third = Space(alice), Space(alice)
        assert statuses(await c.submit(alice, second.id, second.create)) == [("accepted", None)]
        r = await c.call(
            alice,
            "POST",
            "submitOps",
            body={"space": third.id, "ops": [third.create.wire.decode()]},
        )
        assert r.status_code == 429 and r.json()["error"] == "TooManySpaces", r.text
        r = await c.call(alice, "GET", "getState", params={"space": third.id})
        assert r.status_code == 404


async def test_get_ops_pages(client: SpacesClient) -> None:
    c = client
    s, (alice, bob) = await founded(c, members=2)
    more = [s.write(alice, SetDescription(f"d{i}")) for i in range(5)]
    await c.submit(alice, s.id, *more)
    seen: list[str] = []
    since = 0
    while True:
        page = await c.ops(bob, s.id, since, limit=3)
        assert len(page["ops"]) <= 3
        seen += page["ops"]
        since = page["cursor"]
        if not page["more"]:
            break
    assert seen == [o.wire.decode() for o in s.ops]
    # By heads: what a replica that has the first three ops lacks, parents first.
    r = await c.call(
        bob, "GET", "getOps", params={"space": s.id, "heads": s.ops[2].id, "limit": "2"}
    )
    assert r.status_code == 200, r.text
    page = r.json()
    assert page["ops"] == [o.wire.decode() for o in s.ops[3:5]] and page["more"] is True
    r = await c.call(bob, "GET", "getOps", params={"space": s.id, "heads": s.ops[4].id})
    assert r.json()["ops"] == [o.wire.decode() for o in s.ops[5:]] and not r.json()["more"]
    r = await c.call(Person("x"), "GET", "getOps", params={"space": s.id, "heads": s.id})
    assert r.status_code == 403 and r.json()["error"] == "NotMember"
    r = await c.call(bob, "GET", "getOps", params={"space": s.id, "heads": "zz"})
    assert r.status_code == 400
    r = await c.call(alice, "GET", "getOps", params={"space": "0" * 64})
    assert r.status_code == 404 and r.json()["error"] == "SpaceNotFound"
    r = await c.call(alice, "GET", "getOps", params={"space": s.id, "since": "-1"})
    assert r.status_code == 400


async def test_ops_survive_kill_9(tmp_path: Path) -> None:
    async with server_process(tmp_path) as (proc, url):
        srv = await server_at(url)
        c = SpacesClient(srv.url, srv.did)
        s, (alice, bob) = await founded(c, members=2)
        carol = Person("carol")
        pending = s.write(carol, Knock("x", None), [OpId("f" * 64)], keep=False)
        await c.submit(alice, s.id, s.write(alice, SetDescription("before the crash")))
        assert statuses(await c.submit(carol, s.id, pending)) == [("pending", None)]
        before = await c.all_ops(alice, s.id)
        state = await c.state(alice, s.id)
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
    async with server_process(tmp_path) as (_proc, url):
        srv = await server_at(url)
        c = SpacesClient(srv.url, srv.did)
        alice.token = ""  # session tokens survive too, but take a fresh one
        assert await c.all_ops(alice, s.id) == before
        again = await c.state(alice, s.id)
        assert again["state"] == state["state"] and again["pending"] == [pending.id]


async def test_a_failed_store_acknowledges_nothing_and_recovers(tmp_path: Path) -> None:
    async with running_server(tmp_path, storage_busy_timeout=100 * MS) as srv:
        c = SpacesClient(srv.url, srv.did)
        s, (alice, bob) = await founded(c, members=2)
        op = s.write(alice, SetDescription("while locked"))
        with locked(tmp_path / "syncserver" / "spaces.sqlite3"):
            r = await c.call(
                alice, "POST", "submitOps", body={"space": s.id, "ops": [op.wire.decode()]}
            )
            assert r.status_code == 503 and r.json()["error"] == "StorageUnavailable", r.text
        # Memory did not run ahead of the disk: the op is not there, and goes in now.
        assert (await c.state(alice, s.id))["state"]["description"] == ""
        assert len(await c.all_ops(alice, s.id)) == 2
        assert statuses(await c.submit(alice, s.id, op)) == [("accepted", None)]
        assert (await c.state(alice, s.id))["state"]["description"] == "while locked"

"""Space authority log benchmark: resolving 10,000 ops, and the cost of one op.

    .venv/bin/python bench/spaces.py [--ops N] [--no-ts] [--changes N] [--no-authorship]

Builds a space of N signed ops (default 10,000): 300 people join, an owner,
admins and moderators run it (roles, kicks, bans, redactions, actor bindings,
descriptions). Two shapes of the same mix: *linear* (one writer at a time,
each op follows all heads) and *concurrent* (four partitioned replicas that
merge every few ops). Prints, on this machine:

- per-op cost of signing, of parsing the wire bytes, of verifying a signature;
- the time to resolve all N ops at once (the walk), for both shapes;
- the time to feed them one by one into a log, reading the state after each
  (the syncserver's case), for the linear shape;
- `AuthorityLog.add` of all N wire ops (parse + verify + resolve);

then the same figures for the PWA's TypeScript implementation under Node, on
the very same ops (frontend/bench/spaces.ts, loaded by frontend/tests/run-ts.mjs
through Vite's module runner; checks that it reaches Python's states), side by
side with the ratio. `--no-ts` skips that. Python times are CPU time; Node's
are wall-clock (best of three; verification on 1,000 ops spread over the log).

Last, the syncserver's extra CPU per stored change from authorship checks
(`--no-authorship` skips it). In process, not a server subprocess: a `SyncHub` over
`MemoryStorage`, built as tests/syncserver/test_hub.py builds it, and one connection
of a member of the linear space above sending `--changes` sync messages (default
2,000), each carrying one new change by the member's bound actor, to a new
document. Two hubs: one wired as syncserver/app.py wires it (`SpaceAccessPolicy`,
`SpaceAuthorship`), the document bound to the space (`Bindings.bind`, as
`chat.hearth.v1.space.bindDocument` does); one with today's defaults
(`StoredAccess`, `AnyAuthor`), the same workload on an unbound document. CPU is
`time.process_time()` around each `hub.handle` (the client's side is not counted;
the hub computes its reply on a worker thread, as in the server, and process time
counts it), the two hubs taking turns change by change in one event loop so both
see the same load, best of five rounds. Prints both in us per stored change, the
ratio bound/unbound, and the access and authorship calls alone (the floor of the
difference, which on a loaded machine is within the hub figures' noise). The store
is in memory, so the denominator lacks SQLite's commit: a real server's ratio is
closer still to 1.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FRONTEND = ROOT / "frontend"
sys.path.insert(0, str(ROOT))

from prometheus_client import CollectorRegistry  # noqa: E402

from hearth.base58 import b58check_encode  # noqa: E402
from hearth.jwt import Signer  # noqa: E402
from hearth.spaces import (  # noqa: E402
    AuthorityLog,
    Resolver,
    canonical,
    parse_op,
    sign_op,
    verify_op,
)
from hearth.spaces.encoding import actor_for  # noqa: E402
from hearth.spaces.ops import (  # noqa: E402
    Ban,
    BindActor,
    Body,
    Create,
    Join,
    JoinPolicy,
    Kick,
    Op,
    OpId,
    Rank,
    Redact,
    SetDescription,
    SetRole,
    SignedOp,
    Unban,
)
from hearth.spaces.state import SpaceState  # noqa: E402
from hearth.types import Did, DocumentId  # noqa: E402
from syncserver.automerge import Document, SyncState  # noqa: E402
from syncserver.automerge.chunk import encode_change  # noqa: E402
from syncserver.enforcement import Bindings, SpaceAccessPolicy, SpaceAuthorship  # noqa: E402
from syncserver.hub import SyncHub  # noqa: E402
from syncserver.messages import JoinMessage, Message, PeerMetadata, SyncMessage  # noqa: E402
from syncserver.metrics import SyncMetrics  # noqa: E402
from syncserver.storage import Access, MemoryStorage  # noqa: E402

PEOPLE = 300


def signer(i: int) -> Signer:
    return Signer.from_ed25519_seed(hashlib.sha256(b"bench-spaces %d" % i).digest())


def build(n_ops: int, replicas: int, seed: int = 1) -> tuple[OpId, list[SignedOp]]:
    """N signed ops: joins, then appointments, then the moderation mix."""
    rng = random.Random(seed)
    people = [signer(i) for i in range(PEOPLE)]
    dids = [Did(p.did_key) for p in people]
    ops: list[SignedOp] = []
    clock = 1_780_000_000_000
    heads: list[set[OpId]] = [set() for _ in range(replicas)]
    space = OpId("")

    def emit(who: int, body: Body, r: int) -> None:
        nonlocal clock, space
        clock += 1
        parents = tuple(sorted(heads[r]))
        create = isinstance(body, Create)
        op = sign_op(Op(None if create else space, dids[who], parents, clock, body), people[who])
        if create:
            space = op.id
        ops.append(op)
        heads[r] = {op.id}

    emit(0, Create("bench", "bench", JoinPolicy.OPEN, "n"), 0)
    for i in range(1, PEOPLE):
        emit(i, Join(None, None, None), 0)
    for i in range(1, 4):
        emit(0, SetRole(dids[i], Rank.ADMIN), 0)
    for i in range(4, 12):
        emit(1 + i % 3, SetRole(dids[i], Rank.MODERATOR), 0)
    for r in range(1, replicas):
        heads[r] = set(heads[0])
    while len(ops) < n_ops:
        r = rng.randrange(replicas)
        if replicas > 1 and rng.random() < 0.1:
            other = rng.randrange(replicas)
            heads[r] |= heads[other]
            heads[other] = set(heads[r])
            continue
        target = rng.randrange(12, PEOPLE)
        mod = rng.randrange(0, 12)
        roll = rng.random()
        body: Body
        if roll < 0.4:
            body = Redact("chan", f"m{len(ops)}", dids[target], "")
        elif roll < 0.6:
            nonce = f"d{len(ops)}"
            body = BindActor(actor_for(space, dids[target], nonce), nonce)
            mod = target
        elif roll < 0.7:
            body = Kick(dids[target], "")
        elif roll < 0.75:
            body = Join(None, None, None)
            mod = target
        elif roll < 0.85:
            body = SetRole(dids[target], rng.choice([Rank.MODERATOR, Rank.MEMBER]))
            mod = rng.randrange(0, 4)
        elif roll < 0.9:
            body = Ban(dids[target], "spam")
        elif roll < 0.95:
            body = Unban(dids[target])
        else:
            body = SetDescription(f"description {len(ops)}")
            mod = rng.randrange(0, 4)
        emit(mod, body, r)
    return space, ops


def spam_wave(kicks: int) -> tuple[OpId, list[SignedOp]]:
    """The revocation worst case: `kicks` members each write an op on a branch from
    before their kick (so it is walked first and revoked by it): one walk per kick."""
    people = [signer(i) for i in range(kicks + 2)]
    dids = [Did(p.did_key) for p in people]
    clock = 1_780_000_000_000
    ops: list[SignedOp] = []

    def emit(who: int, body: Body, parents: list[OpId], space: OpId | None) -> SignedOp:
        nonlocal clock
        clock += 1
        op = sign_op(Op(space, dids[who], tuple(sorted(parents)), clock, body), people[who])
        ops.append(op)
        return op

    space = emit(0, Create("wave", "wave", JoinPolicy.OPEN, "n"), [], None).id
    head = emit(1, Join(None, None, None), [space], space).id
    head = emit(0, SetRole(dids[1], Rank.MODERATOR), [head], space).id
    forks = []
    for i in range(2, kicks + 2):
        head = emit(i, Join(None, None, None), [head], space).id
        forks.append((i, head))
    for i, fork in forks:
        emit(i, BindActor(actor_for(space, dids[i], "x"), "x"), [fork], space)
        head = emit(1, Kick(dids[i], "spam"), [head], space).id
    return space, ops


def timed(fn: Callable[[], object]) -> float:
    t0 = time.process_time()
    fn()
    return time.process_time() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ops", type=int, default=10_000)
    parser.add_argument("--no-ts", action="store_true", help="skip the TypeScript figures")
    parser.add_argument("--changes", type=int, default=2_000, help="sync messages per round")
    parser.add_argument(
        "--no-authorship", action="store_true", help="skip the syncserver authorship figures"
    )
    args = parser.parse_args()
    n = args.ops

    t0 = time.process_time()
    space, linear = build(n, 1)
    sign_us = (time.process_time() - t0) / n * 1e6
    _, concurrent = build(n, 4)
    wires = [op.wire for op in linear]

    parse_s = timed(lambda: [parse_op(w) for w in wires])

    def verify_all() -> None:
        for op in linear:
            verify_op(op)

    verify_s = timed(verify_all)
    print(f"ops: {n}, people: {PEOPLE}, mean wire size {sum(map(len, wires)) / n:.0f} bytes")
    print(f"sign (incl. building):  {sign_us:8.1f} us/op")
    print(f"parse_op:               {parse_s / n * 1e6:8.1f} us/op")
    print(f"verify_op (Ed25519):    {verify_s / n * 1e6:8.1f} us/op")
    py: dict[str, float] = {"parse us/op": parse_s / n * 1e6, "verify us/op": verify_s / n * 1e6}

    for name, ops in (("linear", linear), ("concurrent", concurrent)):
        sid = ops[0].id
        best = min(timed(lambda: _resolve(sid, ops)) for _ in range(3))  # noqa: B023
        py[f"resolve {name} ms"] = best * 1e3
        state = _resolve(sid, ops)
        print(
            f"resolve {n} ops at once ({name:10s}): {best * 1e3:8.1f} ms "
            f"({best / n * 1e6:.1f} us/op; {len(state.members)} members, "
            f"{len(state.rejected)} rejected)"
        )

    wave_space, wave = spam_wave(100)
    t = timed(lambda: _resolve(wave_space, wave))
    py["resolve spam wave ms"] = t * 1e3
    state = _resolve(wave_space, wave)
    print(
        f"spam wave: 100 kicks, each revoking a concurrent op ({len(wave)} ops): "
        f"{t * 1e3:8.1f} ms ({sum(1 for w in state.rejected.values() if w == 'revoked')} revoked)"
    )

    def one_by_one() -> None:
        r = Resolver(space)
        for op in linear:
            r.add(op.id, op.op)
            r.state  # noqa: B018

    py["one by one ms"] = timed(one_by_one) * 1e3
    print(f"one by one, state read after each (linear): {py['one by one ms']:8.1f} ms")

    def log_all() -> None:
        log = AuthorityLog(space)
        for w in wires:
            log.add(w)
        log.state  # noqa: B018

    log_s = timed(log_all)
    py["AuthorityLog.add us/op"] = log_s / n * 1e6
    print(f"AuthorityLog.add x {n} (parse + verify + resolve): {log_s * 1e3:8.1f} ms")
    if not args.no_ts:
        sets = [("linear", linear), ("concurrent", concurrent), ("spam wave", wave)]
        print_side_by_side(py, typescript(sets))
    if not args.no_authorship:
        authorship_cost(_resolve(space, linear), args.changes)
    return 0


def typescript(sets: list[tuple[str, list[SignedOp]]]) -> dict[str, float]:
    """The same figures for frontend/src/lib/spaces under Node (frontend/bench/spaces.ts)."""
    if shutil.which("node") is None or not (FRONTEND / "node_modules" / "vite").is_dir():
        raise SystemExit("TypeScript figures need node and frontend/node_modules (npm ci)")
    doc = {
        "sets": [
            {
                "name": name,
                "space": ops[0].id,
                "wires": [op.wire.decode() for op in ops],
                "state": canonical(_resolve(ops[0].id, ops).to_json()).decode(),
            }
            for name, ops in sets
        ],
        "verify": 1_000,
        "logOps": len(sets[0][1]),
        "repeat": 3,
    }
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.json"
        path.write_text(json.dumps(doc))
        run = subprocess.run(
            ["node", "tests/run-ts.mjs", "bench/spaces.ts", "bench", str(path)],
            cwd=FRONTEND, check=True, capture_output=True, text=True,
        )  # fmt: skip
    out = json.loads(run.stdout)
    for r in out["resolve"]:
        if not r["sameState"]:
            raise SystemExit(f"TypeScript resolved the {r['name']} ops to another state")
    ts = {
        "parse us/op": out["parseUs"],
        "verify us/op": out["verifyUs"],
        "one by one ms": out["oneByOneMs"],
        "AuthorityLog.add us/op": out["log"]["ms"] / out["log"]["ops"] * 1e3,
    }
    for r in out["resolve"]:
        ts[f"resolve {r['name']} ms"] = r["ms"]
    return ts


def print_side_by_side(py: dict[str, float], ts: dict[str, float]) -> None:
    print("\nPython and TypeScript (Node, same ops, same states):")
    print(f"  {'':28s} {'Python':>10s} {'TypeScript':>11s} {'TS/Py':>7s}")
    for key, value in py.items():
        other = ts.get(key)
        if other is None:
            continue
        print(f"  {key:28s} {value:10.1f} {other:11.1f} {other / value:7.2f}")


class _Peer:
    """The hub's side of a connection: what it sends lands in `inbox`."""

    def __init__(self) -> None:
        self.inbox: list[Message] = []

    def send(self, message: Message) -> None:
        self.inbox.append(message)

    def close(self, code: int, reason: str) -> None:
        raise SystemExit(f"the hub closed the connection: {code} {reason}")


class _HubWriter:
    """One hub and one connection of a member writing one document, a change per sync
    message by the member's bound actor. `bound`: a hub wired as app.py wires it
    (`SpaceAccessPolicy`, `SpaceAuthorship`), the document bound to the space; else a
    hub with today's defaults (`StoredAccess`, `AnyAuthor`), the document unbound."""

    def __init__(self, state: SpaceState, bound: bool) -> None:
        self.did, actor = next((d, a) for a, d in state.actors.items() if state.may_write(d))
        self.actor = bytes.fromhex(actor)
        self.state, self.bound = state, bound
        self.storage = MemoryStorage()
        metrics = SyncMetrics(CollectorRegistry(), self.storage.stats)
        self.bindings = Bindings()
        if bound:
            self.hub = SyncHub(
                self.storage,
                metrics,
                peer_id="srv",
                access_policy=SpaceAccessPolicy(self.bindings),
                authorship=SpaceAuthorship(self.bindings),
            )
        else:
            self.hub = SyncHub(self.storage, metrics, peer_id="srv")
        self.peer = _Peer()
        self.doc_id = DocumentId(b58check_encode(os.urandom(16)))
        self.doc, self.sync = Document(), SyncState()
        self.seq = 0

    async def start(self) -> None:
        """Join, create the document (owned by the member), bind it if `bound`."""
        conn = await self.hub.join(
            self.peer, JoinMessage("bench", PeerMetadata(), ("1",)), self.did
        )
        assert conn is not None
        self.conn = conn
        self.peer.inbox.clear()  # the hub's `peer` answer
        await self.write()
        if self.bound:
            self.bindings.bind(self.doc_id, self.state.space, self.state)

    async def write(self) -> float:
        """One new change, synced until the hub has nothing more to say; the hub's CPU
        seconds (`process_time` around each `hub.handle`)."""
        self.seq += 1
        self.doc.apply(
            encode_change(deps=self.doc.heads, actor=self.actor, seq=self.seq, start_op=self.seq)
        )
        cpu = 0.0
        out = self.doc.generate_sync_message(self.sync)
        while out is not None:
            t0 = time.process_time()
            await self.hub.handle(self.conn, SyncMessage("bench", "srv", self.doc_id, out))
            cpu += time.process_time() - t0
            out = None
            for msg in self.peer.inbox:
                if not isinstance(msg, SyncMessage):
                    raise SystemExit(f"the hub answered {msg}")
                self.doc.receive_sync_message(self.sync, msg.data)
                out = self.doc.generate_sync_message(self.sync) or out
            self.peer.inbox.clear()
        return cpu

    def stored(self) -> int:
        return sum(1 for _ in self.storage.changes(self.doc_id))


async def _hub_round(state: SpaceState, n: int) -> dict[bool, float]:
    """Hub CPU seconds for `n` changes on an unbound (False) and a bound (True)
    document, the two hubs taking turns change by change (so both see the same load)."""
    writers = {b: _HubWriter(state, b) for b in (False, True)}
    for w in writers.values():
        await w.start()
    cpu = {False: 0.0, True: 0.0}
    for i in range(n):
        for b in (False, True) if i % 2 else (True, False):
            cpu[b] += await writers[b].write()
    for w in writers.values():
        if w.stored() != n + 1:
            raise SystemExit(f"the hub stored {w.stored()} changes, not {n + 1}")
    return cpu


def _checks_us(state: SpaceState, bound: bool, n: int = 100_000) -> float:
    """The access and authorship calls alone, as the hub makes them for one change
    (may_read, may_write, check), in us."""
    w = _HubWriter(state, bound)
    if bound:
        w.bindings.bind(w.doc_id, state.space, state)
    docs = w.hub.documents
    policy, authorship = docs.access_policy, docs.authorship
    did, actor, doc_id, stored = w.did, w.actor, w.doc_id, Access(owner=w.did)

    def calls() -> None:
        for _ in range(n):
            policy.may_read(did, doc_id, stored)
            policy.may_write(did, doc_id, stored)
            authorship.check(did, actor, doc_id)

    assert authorship.check(did, actor, doc_id) is None
    return min(timed(calls) for _ in range(3)) / n * 1e6


def authorship_cost(state: SpaceState, n: int, rounds: int = 5) -> None:
    """Print the syncserver's CPU per stored change on a bound and an unbound document."""
    best = {True: float("inf"), False: float("inf")}
    for _ in range(rounds):
        cpu = asyncio.run(_hub_round(state, n))
        for b in best:
            best[b] = min(best[b], cpu[b])
    unbound_us, bound_us = best[False] / n * 1e6, best[True] / n * 1e6
    print(f"\nsyncserver hub, {n} sync messages of one change each (best of {rounds}):")
    print(f"  unbound document (StoredAccess, AnyAuthor):          {unbound_us:8.1f} us/change")
    print(f"  bound to the space (SpaceAccessPolicy, Authorship): {bound_us:8.1f} us/change")
    print(f"  bound/unbound: {bound_us / unbound_us:.3f} ({bound_us - unbound_us:+.1f} us/change)")
    today, space = _checks_us(state, False), _checks_us(state, True)
    print(
        f"  the checks alone (may_read, may_write, check): {today:.2f} us today, "
        f"{space:.2f} us bound ({len(state.members)} members, {len(state.actors)} actors): "
        f"+{space - today:.2f} us/change, ratio {(unbound_us + space - today) / unbound_us:.4f}"
    )


def _resolve(space: OpId, ops: list[SignedOp]) -> SpaceState:
    r = Resolver(space)
    r.add_all((op.id, op.op) for op in ops)
    return r.state


if __name__ == "__main__":
    sys.exit(main())

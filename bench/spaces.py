"""Space authority log benchmark: resolving 10,000 ops, and the cost of one op.

    .venv/bin/python bench/spaces.py [--ops N]

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
"""

from __future__ import annotations

import argparse
import hashlib
import json
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
from hearth.types import Did  # noqa: E402

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


def _resolve(space: OpId, ops: list[SignedOp]) -> SpaceState:
    r = Resolver(space)
    r.add_all((op.id, op.op) for op in ops)
    return r.state


if __name__ == "__main__":
    sys.exit(main())

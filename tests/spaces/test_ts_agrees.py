"""The TypeScript implementation (frontend/src/lib/spaces/) agrees with this one.

One Node run (frontend/tests/run-ts.mjs -> frontend/tests/spaces-agree.ts) checks
what Python makes of:

- 300 random concurrent histories from tests/spaces/gen.py (several admins and
  moderators, partitioned replicas; seeded; half of them 40-100 ops long, where
  revocations happen): op ids, and the state for the listed, reversed and two
  shuffled delivery orders, incrementally or at once;
- 16 signed histories through AuthorityLog (parse, signatures, refusals, state,
  and what `since(heads)` serves a peer);
- 3,000 mutated wire ops: the same refusal reason, or the same op id;
- Ed25519 edge cases: libsodium's verdict (non-canonical S, R and keys, keys and
  R of small order, keys with a torsion component, where a cofactored check
  would differ);
- invite tokens, well-formed and damaged;

and Python verifies and resolves a space the TypeScript side wrote (every op kind
the PWA writes; signatures byte for byte as libsodium's).

The shared corpus is checked by both suites separately (test_corpus.py and
frontend/tests/spaces-corpus.test.ts).
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import subprocess
from pathlib import Path
from typing import Any

import nacl.bindings
import nacl.exceptions
import nacl.signing

from hearth.spaces import AuthorityLog, OpError, Resolver, canonical, parse_op
from hearth.spaces.encoding import signing_input
from hearth.spaces.invites import InviteToken, new_invite, parse_invite_token
from hearth.spaces.ops import OpId, op_bytes
from tests.spaces.gen import history
from tests.timing import MS

FRONTEND = Path(__file__).resolve().parents[2] / "frontend"
RUNNER = FRONTEND / "tests" / "run-ts.mjs"
TS_TIMEOUT = 120_000 * MS  # the Node run takes ~5-10 s on the 2-core development machine


def _histories(count: int) -> list[dict[str, Any]]:
    """Half short, half long (long ones are where revocations happen, chains too)."""
    rng = random.Random(12)
    out = []
    for seed in range(count):
        if seed % 2:
            h = history(seed, rng.randrange(40, 100), rng.randrange(2, 5))
        else:
            h = history(seed, rng.randrange(1, 40), rng.randrange(1, 5))
        r = Resolver(h.space)
        r.add_all(h.ops)
        out.append(
            {
                "space": h.space,
                "ops": [op_bytes(op).decode() for _, op in h.ops],
                "ids": [op_id for op_id, _ in h.ops],
                "state": canonical(r.state.to_json()).decode(),
            }
        )
    return out


def _signed(count: int) -> tuple[list[dict[str, Any]], list[bytes]]:
    sets, wires = [], []
    for seed in range(count):
        h = history(10_000 + seed, 30, 3, sign=True)
        assert h.signed is not None
        ws = [s.wire for s in h.signed]
        wires += ws
        log = AuthorityLog(h.space)
        refused = []
        for i, w in enumerate(ws):
            try:
                log.add(w)
            except OpError as e:
                refused.append({"index": i, "reason": e.reason})
        rng = random.Random(seed)
        ids = [s.id for s in h.signed]
        since = [
            {"heads": heads, "wires": [w.decode() for w in log.since(heads)]}
            for heads in ([], log.heads, rng.sample(ids, 2), rng.sample(ids, 5) + ["0" * 64])
        ]
        sets.append(
            {
                "space": h.space,
                "wires": [w.decode() for w in ws],
                "refused": refused,
                "state": canonical(log.state.to_json()).decode(),
                "since": since,
            }
        )
    return sets, wires


# --- mutated wire ops ----------------------------------------------------------

_ODD_VALUES: list[Any] = [
    0, 1, -1, 2, 64, 65, 2**53 - 1, 2**53, -(2**53), 1.5, 1e300, None, True, False,
    "", "x", "x" * 129, "é" * 60, "\u2028", "\ud800", "a b", "did:key:z6Mk", "did:web:x",
    "did:plc:" + "a" * 250, "owner", "admin", "open", "approval", "invite-only", "0" * 64,
    "A" * 64, "0" * 128, "z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK", [], [[]], {},
    {"a": 1}, ["0" * 64], ["f" * 64, "0" * 64], [f"{i:064x}" for i in range(17)],
]  # fmt: skip
_TYPES = ["create", "invite", "revoke-invite", "join", "knock", "approve", "deny", "set-role",
          "kick", "ban", "unban", "redact", "purge", "set-name", "set-join-policy",
          "set-stamp-cost", "set-description", "leave", "bind-actor", "Join", "x" * 65]  # fmt: skip
_FIELDS = ["v", "type", "author", "time", "parents", "space", "publicName", "privateName",
           "joinPolicy", "nonce", "key", "expires", "maxUses", "invite", "inviteSig", "stamp",
           "note", "request", "ticket", "reason", "target", "role", "channel", "message",
           "replacement", "join", "firstPost", "description", "actor", "__proto__"]  # fmt: skip
_BYTES = [b" ", b'"', b"\\", b"{", b"}", b"[", b"]", b",", b":", b"0", b"1", b".", b"e", b"-",
          b"\x80", b"\xff", b"\xc3", b"\xed\xa0\x80", b"\t", b"\x00", b"NaN",
          b"\xef\xbb\xbf"]  # fmt: skip


def _dumps(value: Any, rng: random.Random) -> bytes:
    roll = rng.random()
    if roll < 0.9:  # canonical-looking text (floats and null still print)
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    elif roll < 0.95:
        text = json.dumps(value, ensure_ascii=True, separators=(",", ":"), sort_keys=True)
    else:
        text = json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
    return text.encode("utf-8", "surrogatepass")


def _mutate(wire: bytes, rng: random.Random) -> bytes:
    kind = rng.randrange(11)
    if kind < 3:  # bytes
        b = bytearray(wire)
        for _ in range(rng.randrange(1, 3)):
            i = rng.randrange(len(b) + 1)
            how = rng.randrange(3)
            if how == 0 and i < len(b):
                del b[i]
            elif how == 1:
                b[i:i] = rng.choice(_BYTES)
            else:
                b = b[:i]
        return bytes(b)
    doc = json.loads(wire)
    op = doc["op"]
    if kind < 7:  # a field gets an odd value, or goes, or comes
        name = rng.choice(sorted(op)) if rng.random() < 0.7 else rng.choice(_FIELDS)
        if rng.random() < 0.15:
            op.pop(name, None)
        else:
            op[name] = rng.choice(_ODD_VALUES)
    elif kind == 7:
        op["type"] = rng.choice(_TYPES)
    elif kind == 8:
        doc[rng.choice(["op", "sig", "x"])] = rng.choice(_ODD_VALUES)
    elif kind == 9:
        return wire.replace(b'{"op":', b'{"op":' + b"[" * rng.randrange(1, 40), 1)
    else:
        op[rng.choice(["description", "note", "x"])] = "d" * rng.choice([2_000, 16_300, 17_000])
    return _dumps(doc, rng)


# Cases found by reading both parsers side by side.
_KNOWN = [
    b'{"op,sig":1}',
    b'{"op":{},"sig,x":1}',
    b'{"__proto__":{},"sig":"00"}',
    b"[" * 300 + b"]" * 300,
]


def _parse_cases(wires: list[bytes], count: int) -> list[dict[str, Any]]:
    rng = random.Random(7)
    cases = []
    for i in range(count):
        if i < len(_KNOWN):
            data = _KNOWN[i]
        else:
            data = _mutate(rng.choice(wires), rng) if i % 20 else rng.choice(wires)
        try:
            reason, op_id = None, parse_op(data).id
        except OpError as e:
            reason, op_id = e.reason, None
        cases.append({"hex": data.hex(), "reason": reason, "id": op_id})
    return cases


def _token_cases() -> list[dict[str, Any]]:
    rng = random.Random(5)
    texts = []
    for i in range(20):
        _, seed = new_invite(seed=rng.randbytes(32))
        good = InviteToken(OpId(f"{i:064x}"), OpId(rng.randbytes(32).hex()), seed).encode()
        texts += [good, f"  {good}\n", good[:-1], good + "A", good.upper(), good.replace(".", ":")]
        texts += [f"\x1c{good}\u3000", f"\ufeff{good}", f"{good}\x85", f"\u200b{good}"]
        texts.append(
            good[:-1] + rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-_")
        )
    out = []
    for text in texts:
        try:
            token: str | None = parse_invite_token(text).encode()
        except OpError as e:
            assert e.reason == "bad-invite-token"
            token = None
        out.append({"text": text, "token": token})
    assert {c["token"] is None for c in out} == {True, False}
    return out


# --- Ed25519 edge cases ----------------------------------------------------------

P = 2**255 - 19
D = -121665 * pow(121666, P - 2, P) % P
L = 2**252 + 27742317777372353535851937790883648493
Point = tuple[int, int]


def _add(a: Point, b: Point) -> Point:
    (x1, y1), (x2, y2) = a, b
    t = D * x1 * x2 * y1 * y2 % P
    return ((x1 * y2 + x2 * y1) * pow(1 + t, P - 2, P) % P,
            (y1 * y2 + x1 * x2) * pow(1 - t, P - 2, P) % P)  # fmt: skip


def _mul(k: int, a: Point) -> Point:
    out: Point = (0, 1)
    while k:
        if k & 1:
            out = _add(out, a)
        a = _add(a, a)
        k >>= 1
    return out


def _x_of(y: int, sign: int) -> int | None:
    u, v = (y * y - 1) % P, (D * y * y + 1) % P
    x = u * pow(v, 3, P) * pow(u * pow(v, 7, P), (P - 5) // 8, P) % P
    if v * x * x % P == (-u) % P:
        x = x * pow(2, (P - 1) // 4, P) % P
    if v * x * x % P != u % P:
        return None
    if x & 1 != sign:
        x = (-x) % P
    return x


def _encode(a: Point, y_offset: int = 0) -> bytes:
    return ((a[1] + y_offset) | (a[0] & 1) << 255).to_bytes(32, "little")


def _decode(b: bytes) -> Point:
    n = int.from_bytes(b, "little")
    y, sign = n & ((1 << 255) - 1), n >> 255
    x = _x_of(y, sign)
    assert x is not None
    return (x, y)


# The eight points of small order (the torsion subgroup), as encoded by RFC 8032.
TORSION = [
    _decode(bytes.fromhex(h))
    for h in (
        "0100000000000000000000000000000000000000000000000000000000000000",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
        "0000000000000000000000000000000000000000000000000000000000000080",
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
        "0000000000000000000000000000000000000000000000000000000000000000",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
    )
]


def _base(k: int) -> bytes:
    """[k]B encoded (libsodium: the pure-Python _mul is too slow for many)."""
    return nacl.bindings.crypto_scalarmult_ed25519_base_noclamp(k.to_bytes(32, "little"))


def _h(*parts: bytes) -> int:
    return int.from_bytes(hashlib.sha512(b"".join(parts)).digest(), "little") % L


def _sign_raw(a: int, public: bytes, message: bytes, r: int, r_enc: bytes | None = None) -> bytes:
    """A signature by the scalar `a` for the key encoding `public` (whatever point it is)."""
    r_bytes = r_enc if r_enc is not None else _base(r)
    s = (r + _h(r_bytes, public, message) * a) % L
    return r_bytes + s.to_bytes(32, "little")


def _libsodium(key: bytes, message: bytes, sig: bytes) -> bool:
    try:
        nacl.signing.VerifyKey(key).verify(message, sig)
    except (nacl.exceptions.BadSignatureError, ValueError, TypeError):
        return False
    return True


def _signature_cases() -> list[dict[str, Any]]:
    rng = random.Random(3)
    cases: list[tuple[str, bytes, bytes, bytes]] = []
    sk = nacl.signing.SigningKey(bytes(range(32)))
    pk = bytes(sk.verify_key)
    msg = b"hearth-space-op-v1\n{}"
    good = sk.sign(msg).signature
    cases.append(("valid", pk, msg, good))
    cases.append(("other message", pk, msg + b" ", good))
    s = int.from_bytes(good[32:], "little")
    cases.append(("S + L", pk, msg, good[:32] + (s + L).to_bytes(32, "little")))
    cases.append(("S = L", pk, msg, good[:32] + L.to_bytes(32, "little")))
    a = rng.randrange(1, L)
    A = _decode(_base(a))
    orders = {t: next(k for k in (1, 2, 4, 8) if _mul(k, t) == (0, 1)) for t in set(TORSION)}
    assert sorted(orders.values()) == [1, 2, 4, 4, 8, 8, 8, 8]
    for t, order in orders.items():
        for sign in (0, 1):  # the x sign bit of a point with x = 0 is free in an encoding
            enc = bytearray(_encode(t))
            enc[31] = enc[31] & 0x7F | sign << 7
            key = bytes(enc)
            cases.append((f"small-order key (order {order})", key, msg,
                          _sign_raw(a, key, msg, rng.randrange(1, L))))  # fmt: skip
            # R of small order, S = h * a: [S]B - [h]A is the identity for the honest
            # key when R encodes the identity; libsodium refuses every small-order R.
            r_enc = bytes(enc)
            h = _h(r_enc, _encode(A), msg)
            cases.append((f"small-order R (order {order})", _encode(A), msg,
                          r_enc + (h * a % L).to_bytes(32, "little")))  # fmt: skip
        # A key with a torsion component: a cofactored check accepts what a
        # cofactorless one (libsodium) refuses unless the order divides h.
        if order > 1:
            mixed = _encode(_add(A, t))
            for i in range(20):  # past signing.ts TABLE_AFTER: its precomputed path too
                m = msg + bytes([i])
                cases.append((f"key + order-{order} torsion", mixed, m,
                              _sign_raw(a, mixed, m, rng.randrange(1, L))))  # fmt: skip
    # Non-canonical encodings (y + p) of points with a small y.
    for y in range(2, 19):
        x = _x_of(y, 0)
        if x is None:
            continue
        odd = _encode((x, y), P)
        cases.append((f"non-canonical key y={y}", odd, msg, _sign_raw(a, odd, msg, 5)))
        cases.append((f"non-canonical R y={y}", _encode(A), msg,
                      _sign_raw(a, _encode(A), msg, 5, r_enc=odd)))  # fmt: skip
    cases.append(("key y = p + 1 (identity)", _encode((0, 1), P), msg, good))
    for _ in range(8):
        cases.append(("random key", rng.randbytes(32), msg, good))
        cases.append(("random signature", pk, msg, rng.randbytes(64)))
    out: list[dict[str, Any]] = [
        {"name": n, "key": k.hex(), "message": m.hex(), "sig": s.hex(), "ok": _libsodium(k, m, s)}
        for n, k, m, s in cases
    ]
    # The cases must include both verdicts where a cofactored check would differ.
    verdicts = {c["ok"] for c in out if "torsion" in c["name"]}
    assert verdicts == {True, False}
    return out


def test_typescript_agrees_with_python(tmp_path: Path) -> None:
    if shutil.which("node") is None or not (FRONTEND / "node_modules" / "vite").is_dir():
        raise RuntimeError("needs node and frontend/node_modules (cd frontend && npm ci)")
    signed, wires = _signed(16)
    cases = {
        "histories": _histories(300),
        "signed": signed,
        "parse": _parse_cases(wires, 3_000),
        "signatures": _signature_cases(),
        "tokens": _token_cases(),
    }
    path = tmp_path / "cases.json"
    path.write_text(json.dumps(cases))
    run = subprocess.run(
        ["node", str(RUNNER), "tests/spaces-agree.ts", "agree", str(path)],
        cwd=FRONTEND, capture_output=True, text=True, timeout=TS_TIMEOUT,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-4000:]
    result = json.loads(run.stdout)
    assert result["mismatches"] == []
    assert result["checked"] == {
        "histories": 300,
        "deliveries": 1_200,
        "signed": 16,
        "since": 64,
        "parse": 3_000,
        "signatures": len(cases["signatures"]),
        "tokens": len(cases["tokens"]),
    }
    # Ops the TypeScript side wrote: Python keeps them all, signed byte for byte as
    # libsodium signs (Ed25519 is deterministic), and reaches the same state.
    written = result["written"]
    log = AuthorityLog(written["space"])
    for wire, seed in zip(written["wires"], written["seeds"], strict=True):
        op = parse_op(wire.encode())
        sig = nacl.signing.SigningKey(bytes.fromhex(seed)).sign(signing_input(op.op_bytes))
        assert sig.signature == op.sig
        log.add(wire.encode())
    assert log.state.rejected == {}
    assert canonical(log.state.to_json()).decode() == written["state"]
    assert len(written["wires"]) == 21

    # The histories exercise revocation (a weak generator would prove little).
    revoking = [h for h in cases["histories"] if '":"revoked"' in h["state"]]
    assert len(revoking) >= 30, len(revoking)

    # The cases reach every parse reason, and signatures either way.
    assert {c["reason"] for c in cases["parse"]} >= {
        None, "too-large", "not-utf8", "not-json", "not-canonical", "bad-shape", "bad-field",
        "bad-version", "bad-did", "too-many-parents", "unknown-type", "bad-actor",
    }  # fmt: skip
    assert {c["ok"] for c in cases["signatures"]} == {True, False}

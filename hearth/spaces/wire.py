"""The wire boundary: `parse_op(bytes) -> SignedOp`, or an OpError with a stable reason.

Wire form (docs/spaces.md): the canonical JSON of `{"op": {...}, "sig": "<hex>"}`.
Every op carries `v` (1), `type`, `author` (a DID), `parents` (sorted, unique op
ids; empty only for `create`), `time` (ms since the epoch, the author's clock)
and, except `create`, `space` (the id of the space's `create` op); the other
fields depend on the type. Unknown fields are refused, so one meaning has one
encoding. Checks run in the order docs/spaces.md gives ("Parsing: the order of
checks"), so the TypeScript parser names the same reason for the same bytes.

`parse_op` checks syntax only (sizes, types, field rules, a `bind-actor`'s
actor id); signatures are checked by `signing.verify_op`, authority by the
resolver. Cost: linear in the op's size, which is bounded before parsing.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TypeVar

from hearth.keys import KeyFormatError, KeyType, PublicKey
from hearth.spaces.encoding import Json, actor_for, op_id_of, parse_canonical
from hearth.spaces.errors import OpError
from hearth.spaces.ops import (
    ROLES_WITH_OWNER,
    VERSION,
    WIRE_OP_END,
    WIRE_OP_START,
    Approve,
    Ban,
    BindActor,
    Body,
    Create,
    Deny,
    Invite,
    Join,
    JoinPolicy,
    Kick,
    Knock,
    Leave,
    Op,
    OpId,
    Purge,
    Rank,
    Redact,
    RevokeInvite,
    SetDescription,
    SetJoinPolicy,
    SetName,
    SetRole,
    SetStampCost,
    SignedOp,
    Unban,
)
from hearth.types import Did

MAX_OP_BYTES = 16_384
MAX_PARENTS = 16
MAX_NAME_BYTES = 100
MAX_TEXT_BYTES = 500  # reasons and knock notes
MAX_DESCRIPTION_BYTES = 2_000
MAX_STAMP_BYTES = 1_024
MAX_DID_BYTES = 256
MAX_STAMP_BITS = 64

_DID_RE = re.compile(r"did:[a-z]+:[A-Za-z0-9._:%-]*[A-Za-z0-9._-]")
_ID_RE = re.compile(r"[0-9a-f]{64}")
_TOKEN_RE = re.compile(r"[\x21-\x7e]{1,128}")  # channel, message and nonce ids
_SIG_RE = re.compile(r"[0-9a-f]{128}")
_ACTOR_RE = re.compile(r"[0-9a-f]{32}")


T = TypeVar("T")


class _Fields:
    """Reads the fields of one JSON object, each at most once; `done` refuses leftovers."""

    def __init__(self, obj: dict[str, Json]) -> None:
        self._obj = dict(obj)

    def take(self, name: str, check: Callable[[str, Json], T]) -> T:
        if name not in self._obj:
            raise OpError("bad-field", f"missing field {name!r}")
        return check(name, self._obj.pop(name))

    def maybe(self, name: str, check: Callable[[str, Json], T]) -> T | None:
        if name not in self._obj:
            return None
        return check(name, self._obj.pop(name))

    def done(self) -> None:
        if self._obj:
            raise OpError("bad-field", f"unknown field {sorted(self._obj)[0]!r}")


def _text(limit: int) -> Callable[[str, Json], str]:
    def check(name: str, v: Json) -> str:
        if not isinstance(v, str) or len(v.encode()) > limit:
            raise OpError("bad-field", f"{name} must be a string of at most {limit} bytes")
        return v

    return check


def _token(name: str, v: Json) -> str:
    if not isinstance(v, str) or not _TOKEN_RE.fullmatch(v):
        raise OpError("bad-field", f"{name} must be 1-128 printable ASCII characters")
    return v


def _did(name: str, v: Json) -> Did:
    if not isinstance(v, str) or len(v) > MAX_DID_BYTES or not _DID_RE.fullmatch(v):
        raise OpError("bad-did", f"{name} is not a DID")
    return Did(v)


def _op_id(name: str, v: Json) -> OpId:
    if not isinstance(v, str) or not _ID_RE.fullmatch(v):
        raise OpError("bad-field", f"{name} must be an op id (64 lowercase hex)")
    return OpId(v)


def _int(lo: int, hi: int) -> Callable[[str, Json], int]:
    def check(name: str, v: Json) -> int:
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise OpError("bad-field", f"{name} must be an integer in [{lo}, {hi}]")
        return v

    return check


def _bool(name: str, v: Json) -> bool:
    if not isinstance(v, bool):
        raise OpError("bad-field", f"{name} must be a boolean")
    return v


def _policy(name: str, v: Json) -> JoinPolicy:
    try:
        return JoinPolicy(v)
    except ValueError:
        raise OpError("bad-field", f"{name} must be open, approval or invite-only") from None


def _pattern(rx: re.Pattern[str], what: str) -> Callable[[str, Json], str]:
    def check(name: str, v: Json) -> str:
        if not isinstance(v, str) or not rx.fullmatch(v):
            raise OpError("bad-field", f"{name} must be {what}")
        return v

    return check


def _ed25519_key(name: str, v: Json) -> str:
    try:
        key = PublicKey.from_multibase(v) if isinstance(v, str) else None
    except KeyFormatError:
        key = None
    if key is None or key.type is not KeyType.ED25519 or key.multibase != v:
        raise OpError("bad-field", f"{name} must be a multibase Ed25519 public key")
    return v


_name = _text(MAX_NAME_BYTES)
_reason = _text(MAX_TEXT_BYTES)
_stamp = _text(MAX_STAMP_BYTES)
_time = _int(0, 2**53 - 1)


def _role(name: str, v: Json) -> Rank:
    if not isinstance(v, str) or v not in ROLES_WITH_OWNER:
        raise OpError("bad-field", f"{name} must be admin, moderator, member or owner")
    return ROLES_WITH_OWNER[v]


def _parse_body(kind: str, f: _Fields, space: OpId | None, author: Did) -> Body:
    body: Body
    if kind == "create":
        body = Create(f.take("publicName", _name), f.take("privateName", _name),
                      f.take("joinPolicy", _policy), f.take("nonce", _token))  # fmt: skip
    elif kind == "invite":
        body = Invite(f.take("key", _ed25519_key), f.maybe("expires", _time),
                      f.maybe("maxUses", _int(1, 1_000_000)))  # fmt: skip
    elif kind == "revoke-invite":
        body = RevokeInvite(f.take("invite", _op_id))
    elif kind == "join":
        body = Join(f.maybe("invite", _op_id), f.maybe("inviteSig", _pattern(_SIG_RE, "128 hex")),
                    f.maybe("stamp", _stamp))  # fmt: skip
        if (body.invite is None) != (body.invite_sig is None):
            raise OpError("bad-field", "invite and inviteSig come together")
    elif kind == "knock":
        body = Knock(f.take("note", _reason), f.maybe("stamp", _stamp))
    elif kind == "approve":
        body = Approve(f.take("request", _op_id), f.take("ticket", _bool))
    elif kind == "deny":
        body = Deny(f.take("request", _op_id), f.take("reason", _reason))
    elif kind == "set-role":
        body = SetRole(f.take("target", _did), f.take("role", _role))
    elif kind == "kick":
        body = Kick(f.take("target", _did), f.take("reason", _reason))
    elif kind == "ban":
        body = Ban(f.take("target", _did), f.take("reason", _reason))
    elif kind == "unban":
        body = Unban(f.take("target", _did))
    elif kind == "redact":
        body = Redact(f.take("channel", _token), f.take("message", _token),
                      f.take("target", _did), f.take("reason", _reason))  # fmt: skip
    elif kind == "purge":
        body = Purge(f.take("channel", _token), f.take("replacement", _token),
                     f.take("reason", _reason))  # fmt: skip
    elif kind == "set-name":
        body = SetName(f.take("publicName", _name), f.take("privateName", _name))
    elif kind == "set-join-policy":
        body = SetJoinPolicy(f.take("joinPolicy", _policy))
    elif kind == "set-stamp-cost":
        bits = _int(0, MAX_STAMP_BITS)
        body = SetStampCost(f.take("join", bits), f.take("firstPost", bits))
    elif kind == "set-description":
        body = SetDescription(f.take("description", _text(MAX_DESCRIPTION_BYTES)))
    elif kind == "leave":
        body = Leave()
    elif kind == "bind-actor":
        body = BindActor(f.take("actor", _pattern(_ACTOR_RE, "32 hex")), f.take("nonce", _token))
        if space is None or actor_for(space, author, body.nonce) != body.actor:
            raise OpError("bad-actor", "actor id is not derived from this space, DID and nonce")
    else:
        raise OpError("unknown-type", f"unknown op type {kind[:40]!r}")
    return body


def op_from_json(obj: Json, max_parents: int = MAX_PARENTS) -> Op:
    """The typed op for a JSON object; raises OpError naming the first bad field."""
    if not isinstance(obj, dict):
        raise OpError("bad-shape", "op must be an object")
    f = _Fields(obj)
    if f.take("v", _int(0, 2**53 - 1)) != VERSION:
        raise OpError("bad-version", f"op version must be {VERSION}")
    kind = f.take("type", _text(64))
    author = f.take("author", _did)
    time = f.take("time", _time)
    raw_parents = f.take("parents", lambda n, v: v)
    if not isinstance(raw_parents, list):
        raise OpError("bad-field", "parents must be a list of op ids")
    parents = tuple(_op_id("parents", p) for p in raw_parents)
    if list(parents) != sorted(set(parents)):
        raise OpError("bad-field", "parents must be sorted and unique")
    if len(parents) > max_parents:
        raise OpError("too-many-parents", f"an op names at most {max_parents} parents")
    space = f.maybe("space", _op_id)
    if kind == "create":
        if space is not None or parents:
            raise OpError("bad-field", "create has no space and no parents")
    elif space is None or not parents:
        raise OpError("bad-field", "every op but create names its space and parents")
    body = _parse_body(kind, f, space, author)
    f.done()
    return Op(space, author, parents, time, body)


def parse_op(
    data: bytes, *, max_bytes: int = MAX_OP_BYTES, max_parents: int = MAX_PARENTS
) -> SignedOp:
    """Parse wire bytes into a `SignedOp` (signature not yet checked); raises OpError."""
    if len(data) > max_bytes:
        raise OpError("too-large", f"op is {len(data)} bytes, limit {max_bytes}")
    wire = parse_canonical(data)
    if not isinstance(wire, dict) or sorted(wire) != ["op", "sig"]:
        raise OpError("bad-shape", 'wire form is {"op": {...}, "sig": "<hex>"}')
    sig = wire["sig"]
    if not isinstance(sig, str) or not _SIG_RE.fullmatch(sig):
        raise OpError("bad-field", "sig must be 128 lowercase hex (64 bytes)")
    op = op_from_json(wire["op"], max_parents)
    return SignedOp(OpId(op_id_of(data[WIRE_OP_START:WIRE_OP_END])), op, bytes.fromhex(sig), data)

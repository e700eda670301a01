"""Typed authority-log operations: one frozen dataclass per op type, the header
every op has (`Op`), an op with its signature as it travels (`SignedOp`), and
their JSON form (`op_to_json`, `op_bytes`, `encode_signed`).

Wire bytes become these types in one place, `wire.parse_op` (docs/spaces.md,
"Encoding"); nothing inside handles raw dicts.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, fields
from typing import ClassVar, NewType, TypeAlias

from hearth.spaces.encoding import Json, canonical
from hearth.types import Did

OpId = NewType("OpId", str)

VERSION = 1


class Rank(enum.IntEnum):
    """Authority inside a space; NONE is anyone who is not a member."""

    NONE = 0
    MEMBER = 1
    MODERATOR = 2
    ADMIN = 3
    OWNER = 4

    @property
    def label(self) -> str:
        return self.name.lower()


ROLES = {"member": Rank.MEMBER, "moderator": Rank.MODERATOR, "admin": Rank.ADMIN}
ROLES_WITH_OWNER = {**ROLES, "owner": Rank.OWNER}


class JoinPolicy(enum.Enum):
    OPEN = "open"
    APPROVAL = "approval"
    INVITE_ONLY = "invite-only"


@dataclass(frozen=True, slots=True)
class Create:
    TYPE: ClassVar[str] = "create"
    public_name: str
    private_name: str
    join_policy: JoinPolicy
    nonce: str


@dataclass(frozen=True, slots=True)
class Invite:
    TYPE: ClassVar[str] = "invite"
    key: str  # multibase Ed25519 public key of the invite (the link carries its seed)
    expires: int | None  # ms since the epoch; a join with a later `time` is refused
    max_uses: int | None


@dataclass(frozen=True, slots=True)
class RevokeInvite:
    TYPE: ClassVar[str] = "revoke-invite"
    invite: OpId


@dataclass(frozen=True, slots=True)
class Join:
    TYPE: ClassVar[str] = "join"
    invite: OpId | None
    invite_sig: str | None  # hex Ed25519 signature by the invite key
    stamp: str | None


@dataclass(frozen=True, slots=True)
class Knock:
    TYPE: ClassVar[str] = "knock"
    note: str
    stamp: str | None


@dataclass(frozen=True, slots=True)
class Approve:
    TYPE: ClassVar[str] = "approve"
    request: OpId
    ticket: bool  # the new member skips the first-post stamp


@dataclass(frozen=True, slots=True)
class Deny:
    TYPE: ClassVar[str] = "deny"
    request: OpId
    reason: str


@dataclass(frozen=True, slots=True)
class SetRole:
    TYPE: ClassVar[str] = "set-role"
    target: Did
    role: Rank  # MEMBER..ADMIN, or OWNER for a transfer by the owner


@dataclass(frozen=True, slots=True)
class Kick:
    TYPE: ClassVar[str] = "kick"
    target: Did
    reason: str


@dataclass(frozen=True, slots=True)
class Ban:
    TYPE: ClassVar[str] = "ban"
    target: Did
    reason: str


@dataclass(frozen=True, slots=True)
class Unban:
    TYPE: ClassVar[str] = "unban"
    target: Did


@dataclass(frozen=True, slots=True)
class Redact:
    TYPE: ClassVar[str] = "redact"
    channel: str
    message: str
    target: Did  # the message's author, as the redactor states it
    reason: str


@dataclass(frozen=True, slots=True)
class Purge:
    TYPE: ClassVar[str] = "purge"
    channel: str
    replacement: str
    reason: str


@dataclass(frozen=True, slots=True)
class SetName:
    TYPE: ClassVar[str] = "set-name"
    public_name: str
    private_name: str


@dataclass(frozen=True, slots=True)
class SetJoinPolicy:
    TYPE: ClassVar[str] = "set-join-policy"
    join_policy: JoinPolicy


@dataclass(frozen=True, slots=True)
class SetStampCost:
    TYPE: ClassVar[str] = "set-stamp-cost"
    join: int  # bits
    first_post: int


@dataclass(frozen=True, slots=True)
class SetDescription:
    TYPE: ClassVar[str] = "set-description"
    description: str


@dataclass(frozen=True, slots=True)
class Leave:
    TYPE: ClassVar[str] = "leave"


@dataclass(frozen=True, slots=True)
class BindActor:
    TYPE: ClassVar[str] = "bind-actor"
    actor: str  # 32 lowercase hex: sha256("hearth-actor-v1\n" space \n did \n nonce)[:16]
    nonce: str


Body: TypeAlias = (
    Create
    | Invite
    | RevokeInvite
    | Join
    | Knock
    | Approve
    | Deny
    | SetRole
    | Kick
    | Ban
    | Unban
    | Redact
    | Purge
    | SetName
    | SetJoinPolicy
    | SetStampCost
    | SetDescription
    | Leave
    | BindActor
)


@dataclass(frozen=True, slots=True)
class Op:
    """An unsigned op: the header every op has, and its type's body."""

    space: OpId | None  # None only for `create`: the space id is the create op's id
    author: Did
    parents: tuple[OpId, ...]
    time: int
    body: Body


@dataclass(frozen=True, slots=True)
class SignedOp:
    id: OpId
    op: Op
    sig: bytes  # 64-byte Ed25519 signature over encoding.signing_input(op bytes)
    wire: bytes  # the exact canonical wire bytes

    @property
    def author(self) -> Did:
        return self.op.author

    @property
    def op_bytes(self) -> bytes:
        """The canonical bytes of the unsigned op (what is hashed and signed)."""
        # The wire form is canonical: `{"op":` + op + `,"sig":"` + 128 hex + `"}`.
        return self.wire[WIRE_OP_START:WIRE_OP_END]


WIRE_OP_START = len(b'{"op":')
WIRE_OP_END = -len(b',"sig":""}') - 128


# --- to JSON -------------------------------------------------------------------


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


def op_to_json(op: Op) -> dict[str, Json]:
    out: dict[str, Json] = {
        "v": VERSION,
        "type": op.body.TYPE,
        "author": op.author,
        "parents": list(op.parents),
        "time": op.time,
    }
    if op.space is not None:
        out["space"] = op.space
    for f in fields(op.body):
        value = getattr(op.body, f.name)
        if value is None:
            continue
        if isinstance(value, Rank):
            value = value.label
        elif isinstance(value, JoinPolicy):
            value = value.value
        out[_camel(f.name)] = value
    return out


def op_bytes(op: Op) -> bytes:
    return canonical(op_to_json(op))


def encode_signed(op: Op, sig: bytes) -> bytes:
    """The wire bytes of `op` with its signature."""
    return canonical({"op": op_to_json(op), "sig": sig.hex()})

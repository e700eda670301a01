"""People with fixed keys and a writer of signed ops, shared by the spaces tests and
the corpus generator (so the corpus is reproducible byte for byte)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from hearth.jwt import Signer
from hearth.spaces import AuthorityLog, OpId, sign_op
from hearth.spaces.ops import Create, JoinPolicy, Op, SignedOp
from hearth.types import Did

T0 = 1_780_000_000_000  # ms; every corpus op's time counts from here


def seed_for(name: str) -> bytes:
    return hashlib.sha256(b"hearth-spaces-test-key\n" + name.encode()).digest()


@dataclass(frozen=True)
class Person:
    name: str
    signer: Signer

    @property
    def did(self) -> Did:
        return Did(self.signer.did_key)


def person(name: str) -> Person:
    return Person(name, Signer.from_ed25519_seed(seed_for(name)))


@dataclass
class Space:
    """Writes signed ops; `parents=None` means the heads of everything written so far."""

    owner: Person
    policy: JoinPolicy = JoinPolicy.OPEN
    public_name: str = "Hearth"
    private_name: str = "Hearth (members)"
    nonce: str = "n0"
    ops: list[SignedOp] = field(default_factory=list)
    wires: list[bytes] = field(default_factory=list)  # every op as sent, bad ones too
    clock: int = T0

    def __post_init__(self) -> None:
        body = Create(self.public_name, self.private_name, self.policy, self.nonce)
        create = sign_op(Op(None, self.owner.did, (), self.clock, body), self.owner.signer)
        self.id = create.id
        self.ops.append(create)
        self.wires.append(create.wire)
        self._log = AuthorityLog(self.id)
        self._log.add_signed(create)

    def write(
        self,
        who: Person,
        body: Any,
        parents: list[OpId] | None = None,
        time: int | None = None,
        sign_as: Person | None = None,
    ) -> SignedOp:
        self.clock += 1000
        if time is not None:
            self.clock = max(self.clock, time)
        if parents is None:
            parents = self.heads()
        op = Op(self.id, who.did, tuple(sorted(set(parents))), time or self.clock, body)
        signed = sign_op(op, (sign_as or who).signer)
        self.ops.append(signed)
        self.wires.append(signed.wire)
        try:
            self._log.add_signed(signed)
        except Exception:  # noqa: BLE001 - a deliberately bad op: written, not kept
            pass
        return signed

    def heads(self) -> list[OpId]:
        return self._log.heads

    def raw(self, data: bytes) -> None:
        """Send bytes that are no good op (malformed, for tests)."""
        self.wires.append(data)

    @property
    def log(self) -> AuthorityLog:
        return self._log

"""One space's authority log as the syncserver holds it: what to keep, what to refuse.

No I/O: `syncserver.spaces` reads stored ops, fetches keys and writes to the
store around it. The rules are the spaces core's (`hearth.spaces`: `parse_op`,
`verify_op`, `Resolver`); what this adds is the server's admission policy
(docs/spaces.md, "At the syncserver"):

- an op is **kept** when it takes effect in the log it arrives in, or waits
  for a parent (`pending`, at most `max_pending` per space);
- an op the rules reject on arrival (`not-member`, `rank`, `rank-not-seen`,
  `target-rank`, `stamp-missing`, ...) is **refused** with that reason and not
  kept, so a member cannot fill the server with ops that do nothing, and a
  forged escalation never reaches the store. Its author's replica still holds
  it and may offer it again (a concurrent op that arrives later can make it
  valid: the server decides on what it has).

Cost: memory as `AuthorityLog` (the wire bytes and parsed form, ~1.5 KB per
op). `admit` of ops that extend the current heads continues the resolution
walk (O(log n) each); a refusal, a concurrent branch or a limit rolls the walk
back by re-resolving the kept ops once (O(n), ~8 us per op, no signature is
checked twice).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from hearth.spaces import OpError, OpId, Resolver, SignedOp, SpaceState, parse_op
from hearth.spaces.ops import Approve, Deny, Knock
from hearth.types import Did

Status = Literal["accepted", "pending", "rejected"]
PENDING = "unknown-parent"


@dataclass(frozen=True, slots=True)
class OpResult:
    """The server's answer for one submitted op."""

    id: OpId | None  # None when the bytes did not parse
    status: Status
    reason: str | None = None  # a docs/spaces.md reason code, for `rejected`
    message: str | None = None

    def to_json(self) -> dict[str, str | None]:
        out: dict[str, str | None] = {"id": self.id, "status": self.status}
        if self.reason is not None:
            out["reason"] = self.reason
            out["message"] = self.message or self.reason
        return out


class LimitExceeded(Exception):
    """The whole batch is refused (nothing kept): an XRPC error with this status and name."""

    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message


class SpaceLog:
    """The ops of one space held by the server, and their resolved state. Not thread-safe.

    Every op here is stored (or being stored) and was verified before it came
    in; `load` trusts the store and checks no signature again.
    """

    def __init__(self, space: OpId) -> None:
        self.space = space
        self.ops: dict[OpId, SignedOp] = {}  # in storage order
        self._resolver = Resolver(space)

    @classmethod
    def load(cls, space: OpId, wires: Iterable[bytes]) -> SpaceLog:
        """A log of stored ops (parsed again, not verified again: the server did that)."""
        log = cls(space)
        for wire in wires:
            signed = parse_op(wire, max_bytes=len(wire), max_parents=1 << 20)
            log.ops[signed.id] = signed
        log._resolver.add_all((i, s.op) for i, s in log.ops.items())
        return log

    def __len__(self) -> int:
        return len(self.ops)

    @property
    def exists(self) -> bool:
        """The space's `create` op is here."""
        return self.space in self.ops

    @property
    def state(self) -> SpaceState:
        return self._resolver.state

    @property
    def heads(self) -> list[OpId]:
        return self._resolver.heads

    def pending(self) -> list[OpId]:
        """Ops kept while one of their parents is missing."""
        return sorted(i for i, why in self.state.rejected.items() if why == PENDING)

    def status(self, op_id: OpId) -> OpResult:
        """What became of an op held here."""
        why = self.state.rejected.get(op_id)
        if why is None:
            return OpResult(op_id, "accepted")
        if why == PENDING:
            return OpResult(op_id, "pending")
        return OpResult(op_id, "rejected", why, "kept, but does not take effect")

    def admit(
        self, batch: Sequence[SignedOp], *, max_ops: int, max_pending: int
    ) -> dict[OpId, OpError]:
        """Add verified ops of this space; returns the ops refused by the rules, with
        their reasons (those are not kept). Raises LimitExceeded, keeping none of
        the batch, when the log would pass `max_ops` or `max_pending`.

        The caller must have checked each op's space and signature, and must store
        `self.ops[i]` for every op of the batch now held before it acknowledges it."""
        new: dict[OpId, SignedOp] = {}
        for signed in batch:
            if signed.id not in self.ops:
                new[signed.id] = signed
        if not new:
            return {}
        if len(self.ops) + len(new) > max_ops:
            raise LimitExceeded(
                413, "LogFull", f"log-full: the space holds its limit of {max_ops} ops"
            )
        self.ops.update(new)
        for op_id, signed in new.items():
            self._resolver.add(op_id, signed.op)
        rejected = self.state.rejected
        refused = {
            i: OpError(rejected[i], _RULE_MESSAGE)
            for i in new
            if i in rejected and rejected[i] != PENDING
        }
        if refused:
            self._drop(refused)
        if len(self.pending()) > max_pending and any(
            self.status(i).status == "pending" for i in new
        ):
            self._drop(new)
            raise LimitExceeded(
                429,
                "TooManyPending",
                f"too-many-pending: {max_pending} ops of this space already wait for parents",
            )
        return refused

    def _drop(self, ids: Iterable[OpId]) -> None:
        """Forget ops just added: re-resolve the others (rejected ops change no state,
        so the rest resolves as before; descendants wait again)."""
        for i in ids:
            self.ops.pop(i, None)
        self._resolver = Resolver(self.space)
        self._resolver.add_all((i, s.op) for i, s in self.ops.items())

    def requests_of(self, did: Did) -> list[dict[str, str]]:
        """Every join request (`knock`) by `did` held here and what became of it:
        `pending`, `approved`, `denied` (with the moderator's reason), `rejected`
        (with the rule's reason) or `closed` (the knocker was banned, or joined
        another way). Cost: one pass over the log."""
        state = self.state
        decisions: dict[OpId, tuple[str, str]] = {}
        for op_id, signed in self.ops.items():
            body = signed.op.body
            if op_id in state.rejected:
                continue
            if isinstance(body, Approve):
                decisions[body.request] = ("approved", "")
            elif isinstance(body, Deny):
                decisions[body.request] = ("denied", body.reason)
        out: list[dict[str, str]] = []
        for op_id, signed in self.ops.items():
            if signed.author != did or not isinstance(signed.op.body, Knock):
                continue
            entry = {"id": op_id, "note": signed.op.body.note}
            why = state.rejected.get(op_id)
            if why == PENDING:
                entry["status"] = "waiting-for-parents"
            elif why is not None:
                entry.update(status="rejected", reason=why)
            elif op_id in state.requests:
                entry["status"] = "pending"
            elif op_id in decisions:
                status, reason = decisions[op_id]
                entry["status"] = status
                if status == "denied":
                    entry["reason"] = reason
            else:
                entry["status"] = "closed"
            out.append(entry)
        return out


_RULE_MESSAGE = "refused by the space's rules on arrival; not stored"

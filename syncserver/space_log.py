"""One space's authority log as the syncserver holds it: what to keep, what to refuse.

No I/O: `syncserver.spaces` reads stored ops, fetches keys and writes to the
store around it. The rules are the spaces core's (`hearth.spaces`: `parse_op`,
`verify_op`, `Resolver`); what this adds is the server's admission policy
(docs/spaces.md, "At the syncserver" and "Plug-in points"):

- every op that verifies is **kept**, also when the rules reject it (it is
  then in `state.rejected` with its reason and takes no effect): writers
  build on all heads, so dropping a rejected op would strand every later op
  that descends from it, its author's and anyone's who received it;
- ops whose parents are missing are kept too (`pending`, at most
  `max_pending` per space) and resolved when the parents come;
- what one DID can make the server keep is bounded by quotas: `max_ops` per
  space, and `max_rejected_per_author` ops of one author that the rules
  reject (a batch that would pass either is refused whole, nothing kept).

Cost: memory as `AuthorityLog` (the wire bytes and parsed form, ~1.5 KB per
op). `admit` of ops that extend the current heads continues the resolution
walk (O(log n) each); a concurrent branch re-runs it once on the next read,
and a refused batch rolls it back by re-resolving the kept ops once (O(n),
~8 us per op, no signature is checked twice).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from hearth.spaces import OpId, Resolver, SignedOp, SpaceState, parse_op
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
    stored: bool = True  # False: refused at the boundary, not kept

    def to_json(self) -> dict[str, str | bool | None]:
        out: dict[str, str | bool | None] = {
            "id": self.id,
            "status": self.status,
            "stored": self.stored,
        }
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
        return OpResult(op_id, "rejected", why, _RULE_MESSAGE)

    def admit(
        self,
        batch: Sequence[SignedOp],
        *,
        max_ops: int,
        max_pending: int,
        max_rejected_per_author: int,
    ) -> list[OpId]:
        """Add verified ops of this space; returns the ids new here (all kept). Raises
        LimitExceeded, keeping none of the batch, when the log would pass `max_ops`,
        `max_pending`, or `max_rejected_per_author` for an author of the batch.

        The caller must have checked each op's space and signature, and must store
        every returned op (`self.ops[i]`) before it acknowledges it."""
        new: dict[OpId, SignedOp] = {}
        for signed in batch:
            if signed.id not in self.ops:
                new[signed.id] = signed
        if not new:
            return []
        if len(self.ops) + len(new) > max_ops:
            raise LimitExceeded(
                413, "LogFull", f"log-full: the space holds its limit of {max_ops} ops"
            )
        self.ops.update(new)
        for op_id, signed in new.items():
            self._resolver.add(op_id, signed.op)
        rejected = self.state.rejected
        if len(self.pending()) > max_pending and any(rejected.get(i) == PENDING for i in new):
            self._drop(new)
            raise LimitExceeded(
                429,
                "TooManyPending",
                f"too-many-pending: {max_pending} ops of this space already wait for parents",
            )
        authors = {s.author for i, s in new.items() if rejected.get(i, PENDING) != PENDING}
        if authors:
            counts: dict[Did, int] = {}
            for i, why in rejected.items():
                author = self.ops[i].author
                if why != PENDING and author in authors:
                    counts[author] = counts.get(author, 0) + 1
            over = sorted(a for a, n in counts.items() if n > max_rejected_per_author)
            if over:
                self._drop(new)
                raise LimitExceeded(
                    429,
                    "TooManyRejectedOps",
                    f"too-many-rejected: {over[0][:80]} has {max_rejected_per_author} ops in"
                    " this space that the rules reject",
                )
        return list(new)

    def _drop(self, ids: Iterable[OpId]) -> None:
        """Forget ops just added: re-resolve the others (rejected ops change no state,
        so the rest resolves as before; descendants wait again)."""
        for i in ids:
            self.ops.pop(i, None)
        self._resolver = Resolver(self.space)
        self._resolver.add_all((i, s.op) for i, s in self.ops.items())

    def since(self, heads: Iterable[str], limit: int) -> tuple[list[SignedOp], bool]:
        """At most `limit` ops held here that are neither one of `heads` nor an ancestor
        of one, parents before children (by causal depth, then id): what a replica with
        those heads lacks. Heads unknown here are ignored. Returns (ops, more).
        Cost: O(n) for n ops held."""
        ops = self.ops
        seen: set[str] = set()
        stack = [h for h in heads if h in ops]
        while stack:
            op_id = stack.pop()
            if op_id not in seen:
                seen.add(op_id)
                stack.extend(p for p in ops[OpId(op_id)].op.parents if p in ops)
        depth: dict[OpId, int] = {}
        for op_id in ops:
            if op_id in depth:
                continue
            todo = [op_id]
            while todo:
                top = todo[-1]
                missing = [p for p in ops[top].op.parents if p in ops and p not in depth]
                if missing:
                    todo.extend(missing)
                    continue
                depth[top] = 1 + max(
                    (depth[p] for p in ops[top].op.parents if p in ops), default=-1
                )
                todo.pop()
        wanted = sorted((i for i in ops if i not in seen), key=lambda i: (depth[i], i))
        return [ops[i] for i in wanted[:limit]], len(wanted) > limit

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


_RULE_MESSAGE = "kept, but the space's rules give it no effect (it may take effect later)"

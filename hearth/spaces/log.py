"""A space's authority log at the wire boundary: bytes in, verified ops kept,
refusals explained, sizes bounded.

`AuthorityLog.add(data)` parses (`ops.parse_op`), checks the space and the
signature (`signing.verify_op`), enforces the limits below and hands the op to
the `Resolver`; it raises `OpError` for every refusal and also remembers the
last `max_refused` of them (`refused`), so a UI can say why. Ops whose parents
have not arrived are kept (up to `max_pending`) and resolved when they do;
until then the state lists them as rejected `unknown-parent`.

Memory: the wire bytes of each op (at most `max_op_bytes`, typically 300-600)
plus its parsed form, about 1.5 KB per op all told; 50,000 ops is ~75 MB.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from hearth.spaces.errors import OpError
from hearth.spaces.ops import Create, Op, OpId, SignedOp
from hearth.spaces.resolve import Resolver
from hearth.spaces.signing import KeyLookup, no_other_keys, verify_op
from hearth.spaces.state import SpaceState
from hearth.spaces.wire import MAX_OP_BYTES, MAX_PARENTS, parse_op


@dataclass(frozen=True, slots=True)
class LogLimits:
    """Bounds on one space's log (docs/spaces.md, "Limits").

    `max_op_bytes` and `max_parents` are part of the format: every replica must use
    the defaults (other values make it keep a different set of ops, for good); they
    are fields so tests can reach the refusals. The others are local memory bounds.
    """

    max_ops: int = 50_000
    max_op_bytes: int = MAX_OP_BYTES
    max_parents: int = MAX_PARENTS
    max_pending: int = 1_000  # ops kept while a parent is missing
    max_refused: int = 1_000  # refusals remembered for `refused`


class AuthorityLog:
    """The verified ops of one space and their resolved state. Not thread-safe."""

    def __init__(
        self,
        space: OpId,
        *,
        lookup: KeyLookup = no_other_keys,
        limits: LogLimits | None = None,
    ) -> None:
        self.space = space
        self.limits = limits or LogLimits()
        self._lookup = lookup
        self._resolver = Resolver(space)
        self._wire: dict[OpId, bytes] = {}
        self._waiting: set[OpId] = set()  # ops with a parent not (yet) here
        self.refused: OrderedDict[str, OpError] = OrderedDict()

    def __len__(self) -> int:
        return len(self._wire)

    def __contains__(self, op_id: object) -> bool:
        return op_id in self._wire

    @property
    def state(self) -> SpaceState:
        """The resolved state (read-only; valid until the next `add`)."""
        return self._resolver.state

    @property
    def heads(self) -> list[OpId]:
        """Parents for the next op written here."""
        return self._resolver.heads

    @property
    def pending(self) -> frozenset[OpId]:
        """Ops kept while one of their parents is missing."""
        return frozenset(self._waiting)

    def missing(self) -> set[OpId]:
        """Op ids named as parents that are not here: ask peers for these."""
        return self._resolver.unknown_parents()

    def wire(self, op_id: OpId) -> bytes:
        return self._wire[op_id]

    def op(self, op_id: OpId) -> Op:
        """The parsed op `op_id` (KeyError if it is not here)."""
        return self._resolver.ops[op_id]

    def __iter__(self) -> Iterator[bytes]:
        """Every op's wire bytes, in arrival order."""
        return iter(self._wire.values())

    def since(self, heads: Iterable[str]) -> list[bytes]:
        """The wire bytes of every op here that is neither one of `heads` nor an ancestor
        of one, parents before children: what a peer whose log has these heads lacks.
        Heads unknown here are ignored (the peer has ops we lack; ask with `heads`).
        Cost: O(n) for n ops."""
        ops = self._resolver.ops
        seen: set[str] = set()
        stack = [h for h in heads if h in ops]
        while stack:
            op_id = stack.pop()
            if op_id in seen:
                continue
            seen.add(op_id)
            stack.extend(p for p in ops[OpId(op_id)].parents if p in ops)
        wanted = [i for i in self._wire if i not in seen]
        # Parents before children: order by depth within what is wanted.
        depth: dict[OpId, int] = {}
        for op_id in wanted:
            _depth(op_id, ops, depth)
        wanted.sort(key=lambda i: (depth[i], i))
        return [self._wire[i] for i in wanted]

    def add(self, data: bytes) -> OpId:
        """Verify and keep one op; returns its id (also for a duplicate). Raises OpError."""
        try:
            signed = parse_op(
                data, max_bytes=self.limits.max_op_bytes, max_parents=self.limits.max_parents
            )
        except OpError as e:
            self._remember("sha256:" + hashlib.sha256(data).hexdigest(), e)
            raise
        return self.add_signed(signed)

    def add_signed(self, signed: SignedOp) -> OpId:
        """As `add`, for an op already parsed."""
        if signed.id in self._wire:
            return signed.id
        try:
            self._check(signed)
        except OpError as e:
            self._remember(signed.id, e)
            raise
        op = signed.op
        self._wire[signed.id] = signed.wire
        if any(p not in self._wire for p in op.parents):
            self._waiting.add(signed.id)
        self._resolver.add(signed.id, op)
        for child in self._resolver.children(signed.id):
            parents = self._resolver.ops[child].parents
            if child in self._waiting and all(p in self._wire for p in parents):
                self._waiting.discard(child)
        return signed.id

    def _check(self, signed: SignedOp) -> None:
        op, limits = signed.op, self.limits
        if isinstance(op.body, Create):
            if signed.id != self.space:
                raise OpError("wrong-space", "a create op of another space")
        elif op.space != self.space:
            raise OpError("wrong-space", "op belongs to another space")
        if len(self._wire) >= limits.max_ops:
            raise OpError("log-full", f"the log holds its limit of {limits.max_ops} ops")
        if len(signed.wire) > limits.max_op_bytes:
            raise OpError("too-large", f"op is over {limits.max_op_bytes} bytes")
        if len(op.parents) > limits.max_parents:
            raise OpError("too-many-parents", f"an op names at most {limits.max_parents} parents")
        if len(self._waiting) >= limits.max_pending and any(
            p not in self._wire for p in op.parents
        ):
            raise OpError(
                "too-many-pending", f"{limits.max_pending} ops already wait for their parents"
            )
        verify_op(signed, self._lookup)

    def _remember(self, key: str, error: OpError) -> None:
        self.refused[key] = error
        self.refused.move_to_end(key)
        while len(self.refused) > self.limits.max_refused:
            self.refused.popitem(last=False)


def _depth(op_id: OpId, ops: Mapping[OpId, Op], memo: dict[OpId, int]) -> int:
    """1 + the largest depth of the parents held here (0 for none), without recursion."""
    stack = [op_id]
    while stack:
        top = stack[-1]
        if top in memo:
            stack.pop()
            continue
        todo = [p for p in ops[top].parents if p in ops and p not in memo]
        if todo:
            stack.extend(todo)
            continue
        memo[top] = 1 + max((memo[p] for p in ops[top].parents if p in ops), default=-1)
        stack.pop()
    return memo[op_id]

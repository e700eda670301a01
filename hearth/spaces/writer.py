"""Writing ops the way docs/spaces.md asks writers to: on top of every head, naming
the ops they refer to, never before a parent's time, signed, and kept in the log.

    log, create = create_space(signer, did, "Garden", "Garden (members)", now_ms)
    write(log, signer, did, SetDescription("Plants"), now_ms)

Pure: the caller passes the time (ms) and the signer; the function only touches
`log`. Cost: one signature plus one `AuthorityLog.add_signed` (which verifies it).
"""

from __future__ import annotations

import secrets

from hearth.spaces.encoding import Signer
from hearth.spaces.log import AuthorityLog, LogLimits
from hearth.spaces.ops import (
    Approve,
    Body,
    Create,
    Deny,
    Join,
    JoinPolicy,
    Op,
    OpId,
    RevokeInvite,
    SignedOp,
)
from hearth.spaces.signing import KeyLookup, no_other_keys, sign_op
from hearth.spaces.wire import MAX_PARENTS
from hearth.types import Did


def references(body: Body) -> set[OpId]:
    """The ops a body refers to, which must be among its op's parents."""
    if isinstance(body, Approve | Deny):
        return {body.request}
    if isinstance(body, RevokeInvite):
        return {body.invite}
    if isinstance(body, Join) and body.invite is not None:
        return {body.invite}
    return set()


def create_space(
    signer: Signer,
    author: Did,
    public_name: str,
    private_name: str,
    now_ms: int,
    *,
    policy: JoinPolicy = JoinPolicy.INVITE_ONLY,
    lookup: KeyLookup = no_other_keys,
    limits: LogLimits | None = None,
) -> tuple[AuthorityLog, SignedOp]:
    """A new space: its `create` op (random nonce) and a log holding it."""
    body = Create(public_name, private_name, policy, secrets.token_hex(16))
    create = sign_op(Op(None, author, (), now_ms, body), signer)
    log = AuthorityLog(create.id, lookup=lookup, limits=limits)
    log.add_signed(create)
    return log, create


def write(log: AuthorityLog, signer: Signer, author: Did, body: Body, now_ms: int) -> SignedOp:
    """Sign `body` as `author`'s next op in `log` and add it; returns it to send on.

    Parents: the ops `body` refers to, then the current heads (all of them when
    they fit; else the first ones by id - the next op picks up the rest). Time: `now_ms`,
    or the latest parent's time if that is later. Raises OpError as `add` does
    (e.g. `unknown-key` when `signer` is not `author`'s key).
    """
    refs = references(body)
    heads = [h for h in log.heads if h not in refs]
    parents = sorted(refs) + heads[: max(0, MAX_PARENTS - len(refs))]
    time = max([now_ms, *(log.op(p).time for p in parents if p in log)])
    op = Op(log.space, author, tuple(sorted(set(parents))), time, body)
    signed = sign_op(op, signer)
    log.add_signed(signed)
    return signed

"""Space authority: signed ops, their resolution into a state, and the log that keeps them.

Ground floor: imports nothing outside `hearth`. See docs/spaces.md.
"""

from hearth.spaces.encoding import actor_for, canonical
from hearth.spaces.errors import OpError
from hearth.spaces.invites import InviteToken, new_invite, parse_invite_token
from hearth.spaces.log import AuthorityLog, LogLimits
from hearth.spaces.ops import JoinPolicy, Op, OpId, Rank, SignedOp
from hearth.spaces.resolve import Resolver
from hearth.spaces.signing import KeyLookup, sign_invite, sign_op, verify_op
from hearth.spaces.state import Access, SpaceState
from hearth.spaces.wire import parse_op
from hearth.spaces.writer import create_space, write

__all__ = [
    "Access",
    "AuthorityLog",
    "InviteToken",
    "JoinPolicy",
    "KeyLookup",
    "LogLimits",
    "Op",
    "OpError",
    "OpId",
    "Rank",
    "Resolver",
    "SignedOp",
    "SpaceState",
    "actor_for",
    "canonical",
    "create_space",
    "new_invite",
    "parse_invite_token",
    "parse_op",
    "sign_invite",
    "sign_op",
    "verify_op",
    "write",
]

"""The authority state of a space: what the resolved log says, and the questions
services ask of it.

A `SpaceState` is built by `resolve.Resolver` (which alone mutates it) and read
by everyone else: the syncserver (`may_read`, `may_write`, `actor_did`), peers
and tools. `to_json` is the state's canonical form, the one the shared corpus
(tests/spaces/corpus/) compares across the Python and TypeScript
implementations; docs/spaces.md specifies it field by field.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hearth.spaces.encoding import Json
from hearth.spaces.ops import JoinPolicy, OpId, Rank
from hearth.types import Did


@dataclass(slots=True)
class Member:
    rank: Rank
    ticket: bool  # skips the first-post stamp (approved with a ticket, or joined by invite)


@dataclass(frozen=True, slots=True)
class BanRecord:
    reason: str
    by: Did
    op: OpId


@dataclass(slots=True)
class InviteRecord:
    by: Did
    key: str
    expires: int | None
    max_uses: int | None
    uses: int = 0
    revoked: bool = False


@dataclass(frozen=True, slots=True)
class JoinRequest:
    did: Did
    note: str
    time: int
    stamp: bool  # whether the knock carried a stamp


@dataclass(frozen=True, slots=True)
class Access:
    """Who may read and write a space at one moment (`SpaceState.access()`), kept to
    compare with a later moment: `lost_read(later)` names the DIDs whose open sessions
    on the space's documents must end. Cost: O(members + bans) to take and compare."""

    members: frozenset[Did]
    banned: frozenset[Did]
    policy: JoinPolicy

    def may_read(self, did: Did | None) -> bool:
        if did is not None and did in self.members:
            return True
        return self.policy is JoinPolicy.OPEN and did not in self.banned

    def lost_read(self, later: Access) -> set[Did]:
        """Members now who may not read `later` (a kick, ban, leave, or a policy change)."""
        return {d for d in self.members if not later.may_read(d)}

    def lost_write(self, later: Access) -> set[Did]:
        return set(self.members - later.members)


@dataclass(slots=True)
class SpaceState:
    """The state of one space. Read-only for callers; valid until the log changes."""

    space: OpId
    owner: Did | None = None
    public_name: str = ""
    private_name: str = ""
    description: str = ""
    policy: JoinPolicy = JoinPolicy.INVITE_ONLY
    stamp_join: int = 0
    stamp_first_post: int = 0
    members: dict[Did, Member] = field(default_factory=dict)
    bans: dict[Did, BanRecord] = field(default_factory=dict)
    invites: dict[OpId, InviteRecord] = field(default_factory=dict)
    requests: dict[OpId, JoinRequest] = field(default_factory=dict)
    redactions: dict[str, dict[str, OpId]] = field(default_factory=dict)  # channel -> msg -> op
    purges: dict[str, str] = field(default_factory=dict)  # channel -> replacement document
    actors: dict[str, Did] = field(default_factory=dict)  # Automerge actor id -> DID
    rejected: dict[OpId, str] = field(default_factory=dict)  # op id -> reason code
    accepted: int = 0  # ops that took effect
    used_stamps: set[str] = field(default_factory=set)  # stamps.log_stamp_reason's replay set

    # --- plug-in points (docs/spaces.md) -----------------------------------

    def rank_of(self, did: Did | None) -> Rank:
        m = self.members.get(did) if did is not None else None
        return m.rank if m is not None else Rank.NONE

    def is_member(self, did: Did | None) -> bool:
        return did is not None and did in self.members

    def is_banned(self, did: Did | None) -> bool:
        return did is not None and did in self.bans

    def may_read(self, did: Did | None) -> bool:
        """Members read; in an `open` space anyone not banned (also anonymous) reads too."""
        if self.is_member(did):
            return True
        return self.policy is JoinPolicy.OPEN and not self.is_banned(did)

    def access(self) -> Access:
        """A snapshot of who may read and write, to compare before and after `add`s."""
        return Access(frozenset(self.members), frozenset(self.bans), self.policy)

    def may_write(self, did: Did | None) -> bool:
        """Only members write to the space's documents."""
        return self.is_member(did)

    def actor_did(self, actor: str) -> Did | None:
        """The DID that bound the Automerge actor id `actor` (hex), or None."""
        return self.actors.get(actor)

    def may_write_as(self, did: Did | None, actor: str) -> bool:
        """A change by `actor` arriving from `did`: the actor is `did`'s and `did` writes."""
        return did is not None and self.actors.get(actor) == did and self.may_write(did)

    def is_redacted(self, channel: str, message: str) -> bool:
        return message in self.redactions.get(channel, {})

    def current_channel(self, channel: str) -> str:
        """The document a channel lives in now, following purges (bounded by their count)."""
        for _ in range(len(self.purges) + 1):
            nxt = self.purges.get(channel)
            if nxt is None:
                return channel
            channel = nxt
        return channel

    def needs_first_post_stamp(self, did: Did) -> bool:
        m = self.members.get(did)
        return self.stamp_first_post > 0 and (m is None or not m.ticket)

    # --- canonical form ----------------------------------------------------

    def to_json(self) -> dict[str, Json]:
        """The state as JSON values (encoding.canonical makes it bytes)."""
        invites: dict[str, Json] = {}
        for iid, inv in self.invites.items():
            rec: dict[str, Json] = {
                "by": inv.by,
                "key": inv.key,
                "uses": inv.uses,
                "revoked": inv.revoked,
            }
            if inv.expires is not None:
                rec["expires"] = inv.expires
            if inv.max_uses is not None:
                rec["maxUses"] = inv.max_uses
            invites[iid] = rec
        return {
            "space": self.space,
            "owner": self.owner or "",
            "publicName": self.public_name,
            "privateName": self.private_name,
            "description": self.description,
            "joinPolicy": self.policy.value,
            "stampCost": {"join": self.stamp_join, "firstPost": self.stamp_first_post},
            "members": {
                d: {"rank": m.rank.label, "ticket": m.ticket} for d, m in self.members.items()
            },
            "bans": {d: {"reason": b.reason, "by": b.by, "op": b.op} for d, b in self.bans.items()},
            "invites": invites,
            "requests": {
                r: {"did": q.did, "note": q.note, "time": q.time, "stamp": q.stamp}
                for r, q in self.requests.items()
            },
            "redactions": {c: list(sorted(msgs)) for c, msgs in self.redactions.items()},
            "purges": {c: r for c, r in self.purges.items()},
            "actors": {a: d for a, d in self.actors.items()},
            "rejected": {i: why for i, why in self.rejected.items()},
        }

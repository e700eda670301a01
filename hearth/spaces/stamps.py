"""Proof-of-work stamps for joining a space and for a member's first post.

A stamp proves that its maker spent about 2**bits evaluations of Argon2id on a
challenge naming one DID, one space, one purpose (`join` or `first-post`) and
one time window; it is useless for any other DID, space, purpose or window.
Pure: no I/O, the clock is passed in. Specification and cost table:
docs/spaces.md, "Stamps".

Wire form (a string, at most 1,024 bytes in an op's `stamp` field)::

    hs1.<purpose>.<window>.<did tag>.<space tag>.<nonce>

`window` is `time // WINDOW_MS` in decimal (no leading zeros), the tags are the
first 8 bytes of SHA-256 of the DID and of the space id (16 lowercase hex: they
only let a verifier say *which* binding is wrong), the nonce is 16 bytes
(32 lowercase hex). One meaning has one encoding: anything else is
`stamp-malformed`.

Work: `Argon2id(password=challenge, salt=nonce, t=1, m=1 MiB, p=1, 32 bytes)`
where `challenge = STAMP_DOMAIN + canonical JSON of {did, purpose, space,
window}`. The stamp is worth the number of leading zero bits of that output;
it is valid for a cost of `bits` when it is worth at least `bits`. Making one
takes 2**bits evaluations on average (a geometric draw: often fewer, sometimes
several times more); verifying takes one, memoised (VERIFY_CACHE entries, ~6.5 MB
when full, shared by every space in the process). Costs: bench/stamps.py.

Time: a stamp for window w is accepted at times `t` (the op's time in the
authority log; the verifier's clock elsewhere) with
`w * WINDOW_MS - SKEW_MS <= t < (w + 1) * WINDOW_MS + GRACE_MS`. These are
fixed by the format, like the field sizes: every replica must agree.
"""

from __future__ import annotations

import enum
import hashlib
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from argon2.low_level import Type, hash_secret_raw

from hearth.spaces.encoding import Json, canonical
from hearth.spaces.errors import OpError
from hearth.spaces.state import SpaceState
from hearth.types import Did

STAMP_DOMAIN = b"hearth-stamp-v1\n"
PREFIX = "hs1"
ARGON2_TIME_COST = 1  # passes over memory
ARGON2_MEMORY_KIB = 1_024  # 1 MiB per evaluation
ARGON2_LANES = 1
ARGON2_HASH_LEN = 32
NONCE_BYTES = 16
WINDOW_MS = 3_600_000  # one hour
GRACE_MS = 3_600_000  # a stamp made at the end of its window still lives an hour
SKEW_MS = 300_000  # clocks ahead of the stamp maker's by up to five minutes
MAX_COST_BITS = 64
MAX_STAMP_CHARS = 160
VERIFY_CACHE = 16_384  # (challenge, nonce) -> worth: a re-walk does no work again; ~400 B each

_STAMP_RE = re.compile(
    r"hs1\.(join|first-post)\.(0|[1-9][0-9]{0,15})\.([0-9a-f]{16})\.([0-9a-f]{16})\.([0-9a-f]{32})"
)


class Purpose(enum.StrEnum):
    JOIN = "join"
    FIRST_POST = "first-post"


class StampError(OpError):
    """A stamp was refused; `reason` is one of the stable codes in docs/spaces.md:
    stamp-missing, stamp-malformed, stamp-wrong-purpose, stamp-wrong-did,
    stamp-wrong-space, stamp-future, stamp-expired, stamp-too-cheap, stamp-replayed."""


@dataclass(frozen=True, slots=True)
class Stamp:
    purpose: Purpose
    window: int
    did_tag: str
    space_tag: str
    nonce: bytes

    def encode(self) -> str:
        return ".".join(
            (PREFIX, self.purpose.value, str(self.window), self.did_tag, self.space_tag,
             self.nonce.hex())
        )  # fmt: skip


def parse_stamp(text: object) -> Stamp:
    """The stamp in `text`, or StampError('stamp-malformed'). Never raises anything else."""
    if not isinstance(text, str) or len(text) > MAX_STAMP_CHARS:
        raise StampError("stamp-malformed", "a stamp is a string of at most 160 characters")
    m = _STAMP_RE.fullmatch(text)
    if m is None:
        raise StampError("stamp-malformed", "not hs1.<purpose>.<window>.<tag>.<tag>.<nonce>")
    window = int(m[2])
    if window > 2**53 - 1:
        raise StampError("stamp-malformed", "window out of range")
    return Stamp(Purpose(m[1]), window, m[3], m[4], bytes.fromhex(m[5]))


def tag(value: str) -> str:
    """The 16-hex tag of a DID or a space id carried in a stamp."""
    return hashlib.sha256(value.encode()).digest()[:8].hex()


def window_of(time_ms: int) -> int:
    return time_ms // WINDOW_MS


def challenge(did: str, space_id: str, purpose: Purpose, window: int) -> bytes:
    """The bytes a stamp's work is done on: domain, then canonical JSON of the binding."""
    binding: dict[str, Json] = {
        "did": did,
        "purpose": purpose.value,
        "space": space_id,
        "window": window,
    }
    return STAMP_DOMAIN + canonical(binding)


def argon2(chal: bytes, nonce: bytes) -> bytes:
    """One evaluation: Argon2id(password=chal, salt=nonce) with the parameters above."""
    return hash_secret_raw(
        chal, nonce, time_cost=ARGON2_TIME_COST, memory_cost=ARGON2_MEMORY_KIB,
        parallelism=ARGON2_LANES, hash_len=ARGON2_HASH_LEN, type=Type.ID,
    )  # fmt: skip


def leading_zero_bits(digest: bytes) -> int:
    return len(digest) * 8 - int.from_bytes(digest, "big").bit_length()


@lru_cache(maxsize=VERIFY_CACHE)
def worth(chal: bytes, nonce: bytes) -> int:
    """Leading zero bits of one evaluation (memoised: ~1 ms per miss)."""
    return leading_zero_bits(argon2(chal, nonce))


def make_stamp(
    did: str,
    space_id: str,
    purpose: Purpose,
    cost_bits: int,
    now: int,
    *,
    seed: bytes | None = None,
    on_attempt: Callable[[int], None] | None = None,
) -> Stamp:
    """Search a stamp worth `cost_bits` for the window of `now` (ms).

    Takes 2**cost_bits evaluations on average, each ~1 ms here (bench/stamps.py),
    and blocks that long: call it off the event loop. `seed` (8 bytes, random by
    default) starts the nonces, so two stamps made in one window differ;
    `on_attempt(n)` is called after each evaluation and may raise to give up.
    """
    if not 0 <= cost_bits <= MAX_COST_BITS:
        raise ValueError(f"cost must be 0..{MAX_COST_BITS} bits")
    seed = secrets.token_bytes(8) if seed is None else seed
    if len(seed) != 8:
        raise ValueError("seed must be 8 bytes")
    window = window_of(now)
    chal = challenge(did, space_id, purpose, window)
    counter = 0
    while True:
        nonce = seed + counter.to_bytes(8, "big")
        if leading_zero_bits(argon2(chal, nonce)) >= cost_bits:
            return Stamp(purpose, window, tag(did), tag(space_id), nonce)
        counter += 1
        if on_attempt is not None:
            on_attempt(counter)


def verify_stamp(
    stamp: Stamp | str | None,
    did: str,
    space_id: str,
    purpose: Purpose,
    required_bits: int,
    now: int,
) -> Stamp | None:
    """Check a stamp for `did` in `space_id` at time `now` (ms); raise StampError if it
    does not do. Returns the parsed stamp (None when no stamp is required: any stamp,
    even a malformed one, does then). Cost: one Argon2id evaluation, memoised.

    Replays are the caller's to refuse (`check_replay` or `ReplayCache`).
    """
    if required_bits <= 0:
        return None
    if stamp is None:
        raise StampError(
            "stamp-missing", f"a {purpose.value} stamp of {required_bits} bits is required"
        )
    if not isinstance(stamp, Stamp):
        stamp = parse_stamp(stamp)
    if stamp.purpose is not purpose:
        raise StampError(
            "stamp-wrong-purpose", f"stamp is for {stamp.purpose.value}, not {purpose.value}"
        )
    if stamp.did_tag != tag(did):
        raise StampError("stamp-wrong-did", f"stamp was made for another DID than {did}")
    if stamp.space_tag != tag(space_id):
        raise StampError("stamp-wrong-space", "stamp was made for another space")
    start = stamp.window * WINDOW_MS
    if now < start - SKEW_MS:
        raise StampError("stamp-future", f"stamp window starts at {start}, after {now}")
    if now >= start + WINDOW_MS + GRACE_MS:
        raise StampError("stamp-expired", f"stamp window ended at {start + WINDOW_MS}")
    got = worth(challenge(did, space_id, purpose, stamp.window), stamp.nonce)
    if got < required_bits:
        raise StampError("stamp-too-cheap", f"stamp is worth {got} bits, {required_bits} required")
    return stamp


def stamp_required(state: SpaceState, did: Did, purpose: Purpose) -> int:
    """Bits a stamp from `did` for `purpose` must be worth in this space (0: none).

    join: the space's join cost (an invite join needs none: the invite is a
    ticket, and the rules do not ask). first-post: the first-post cost, unless
    `did` is a member holding a ticket (approved with `ticket`, invited, owner).
    """
    if purpose is Purpose.JOIN:
        return state.stamp_join
    m = state.members.get(did)
    return 0 if m is not None and m.ticket else state.stamp_first_post


def log_stamp_reason(
    state: SpaceState, did: Did, purpose: Purpose, text: str | None, time: int, used: set[str]
) -> str | None:
    """The authority log's check of a stamp carried by an op of `did` at `time`: None if
    it does (and it is then recorded in `used`), else the reason code. Deterministic:
    a function of the ops only, so every replica rejects the same ops.

    The rules call it last, just before the op takes effect, so only stamps of ops
    that take effect are used up; `used` belongs to the state being resolved.
    """
    try:
        stamp = verify_stamp(
            text, did, state.space, purpose, stamp_required(state, did, purpose), time
        )
    except StampError as e:
        return e.reason
    if stamp is not None:
        key = f"{did} {stamp.encode()}"
        if key in used:
            return "stamp-replayed"
        used.add(key)
    return None


class ReplayCache:
    """Stamps already presented outside the log (e.g. the syncserver's first-post
    check), each kept until its window has expired.

    Bounded: at `capacity` the oldest entry goes (O(1)); an evicted stamp could be
    presented again, but only after `capacity` newer stamps, each of which cost
    its maker the work. Memory: ~250 bytes an entry.
    """

    def __init__(self, capacity: int = 100_000) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._seen: dict[str, int] = {}  # key -> expiry (ms), in insertion order

    def __len__(self) -> int:
        return len(self._seen)

    def use(self, stamp: Stamp, did: str, space_id: str, now: int) -> None:
        """Record `stamp` (already verified) as used; StampError('stamp-replayed') if it was."""
        key = f"{space_id} {did} {stamp.encode()}"
        expiry = self._seen.get(key)
        if expiry is not None and now < expiry:
            raise StampError("stamp-replayed", "this stamp was already used")
        self._seen.pop(key, None)
        while len(self._seen) >= self.capacity:
            del self._seen[next(iter(self._seen))]
        self._seen[key] = (stamp.window + 1) * WINDOW_MS + GRACE_MS


def check_first_post(
    state: SpaceState, did: Did, text: str | None, now: int, cache: ReplayCache
) -> None:
    """The syncserver's (or a peer's) check of a member's first post in the space of
    `state`, carried outside the log: StampError unless `did` needs no stamp (ticket,
    no cost) or `text` is a fresh first-post stamp for `now` (the checker's clock)
    not presented before (then it is recorded in `cache`)."""
    stamp = verify_stamp(
        text,
        did,
        state.space,
        Purpose.FIRST_POST,
        stamp_required(state, did, Purpose.FIRST_POST),
        now,
    )
    if stamp is not None:
        cache.use(stamp, did, state.space, now)

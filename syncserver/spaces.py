"""Space authority logs at the syncserver: the XRPC endpoints that carry signed ops.

    POST chat.hearth.v1.space.submitOps  {"space", "ops": [op wire text, ...]}  (auth)
    GET  chat.hearth.v1.space.getOps?space=&since=&limit=                     (auth)
    GET  chat.hearth.v1.space.getState?space=                                 (auth)

docs/spaces.md, "At the syncserver", is the reference: bodies, errors, limits,
who sees what. The admission policy itself (what is kept, what is refused) is
`syncserver.space_log`, without I/O; this module authenticates, bounds,
fetches keys, serialises submits per space and stores ops durably (the
`AuthorityStore`, on the server's storage thread) before it answers.

Enforcement of the state on the space's documents is not here: it reads
`SpaceService.state_of(space)` and subscribes with `SpaceService.on_change`.

Costs: loaded spaces are kept in memory (least recently used first out, at
most `space_cached_spaces`; ~1.5 KB per op); loading one re-parses its stored
ops (~30 us each) without checking signatures again. A submit verifies each
new op once (~50 us, Ed25519) and resolves incrementally (see space_log).
Rate limiters: one token bucket per caller and per knocker DID and space,
bounded LRU maps (~100 B each); they restart empty with the process.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hearth.config import Option, ServiceConfig, positive_int
from hearth.http import XrpcError, read_json_body
from hearth.keyclient import KeyLookupError, fetch_public_keys
from hearth.keys import PublicKey
from hearth.ratelimit import RateLimiter
from hearth.spaces import OpError, OpId, SignedOp, SpaceState, parse_op, verify_op
from hearth.spaces.ops import Create, Join, Knock
from hearth.spaces.state import Access
from hearth.spaces.wire import MAX_OP_BYTES, MAX_PARENTS
from hearth.storage import StorageHealth
from hearth.types import Did
from syncserver.space_log import LimitExceeded, OpResult, SpaceLog
from syncserver.storage.authority import (
    AuthorityStore,
    MemoryAuthorityStore,
    SqliteAuthorityStore,
    StoredOp,
)

log = logging.getLogger("hearth.syncserver.spaces")

NSID = "chat.hearth.v1.space"
LXM_SUBMIT = f"{NSID}.submitOps"
LXM_GET_OPS = f"{NSID}.getOps"
LXM_GET_STATE = f"{NSID}.getState"

SPACE_OPTIONS = (
    Option("space_max_ops", positive_int, 50_000, "ops kept per space (~1.5 KB each in memory)"),
    Option("space_max_batch", positive_int, 100, "ops in one submitOps request"),
    Option(
        "space_max_pending", positive_int, 1_000, "ops per space kept while a parent is missing"
    ),
    Option(
        "space_join_requests_per_did",
        positive_int,
        10,
        "join requests (knocks) one DID may make per hour, all spaces together",
    ),
    Option(
        "space_join_requests_per_space",
        positive_int,
        100,
        "join requests (knocks) one space takes per hour, all knockers together",
    ),
    Option(
        "space_max_rejected_per_author",
        positive_int,
        100,
        "ops of one author per space that the rules reject and the server still keeps",
    ),
    Option(
        "space_creates_per_did",
        positive_int,
        10,
        "new spaces one DID may found on this server per hour",
    ),
    Option("space_submits_per_minute", positive_int, 60, "submitOps requests per caller a minute"),
    Option("space_page_size", positive_int, 500, "most ops one getOps answer holds"),
    Option("space_cached_spaces", positive_int, 100, "space logs kept in memory"),
    Option(
        "space_max_clock_skew",
        positive_int,
        600,
        "seconds a caller's own fresh knock or join may claim a time away from the server's",
    ),
    Option(
        "space_keyserver_url",
        str,
        "",
        "keyserver whose signing keys verify ops of atproto DIDs (did:plc, did:web);"
        " empty: only did:key authors are verified (others: unknown-key)",
    ),
)

_OP_ID = re.compile(r"[0-9a-f]{64}")
MAX_HEADS = 64  # getOps?heads=: a replica's heads
KEY_TTL = 300.0  # seconds a keyserver answer is trusted (a rotation shows within this)
KEY_NEGATIVE_TTL = 30.0
MAX_CACHED_KEYS = 10_000

# The DID's Ed25519 signing keys (current and previous), or () when none is known.
KeySource = Callable[[Did], Awaitable[Sequence[PublicKey]]]
Authenticate = Callable[[Request, str, bool], Awaitable[Did | None]]


@dataclass(frozen=True, slots=True)
class SpaceLimits:
    max_ops: int = 50_000
    max_op_bytes: int = MAX_OP_BYTES  # a format limit (docs/spaces.md): not a setting
    max_batch: int = 100
    max_pending: int = 1_000
    max_rejected_per_author: int = 100
    join_requests_per_did: int = 10  # per hour
    join_requests_per_space: int = 100  # per hour
    creates_per_did: int = 10  # per hour
    submits_per_minute: int = 60
    page_size: int = 500
    cached_spaces: int = 100
    max_clock_skew: float = 600.0

    @classmethod
    def from_config(cls, config: ServiceConfig) -> SpaceLimits:
        return cls(
            max_ops=config.get_int("space_max_ops"),
            max_batch=config.get_int("space_max_batch"),
            max_pending=config.get_int("space_max_pending"),
            max_rejected_per_author=config.get_int("space_max_rejected_per_author"),
            join_requests_per_did=config.get_int("space_join_requests_per_did"),
            join_requests_per_space=config.get_int("space_join_requests_per_space"),
            creates_per_did=config.get_int("space_creates_per_did"),
            submits_per_minute=config.get_int("space_submits_per_minute"),
            page_size=config.get_int("space_page_size"),
            cached_spaces=config.get_int("space_cached_spaces"),
            max_clock_skew=float(config.get_int("space_max_clock_skew")),
        )


async def no_keys(did: Did) -> Sequence[PublicKey]:
    return ()


class KeyserverKeys:
    """A `KeySource` asking one keyserver (`chat.hearth.v1.key.public`), cached for
    `KEY_TTL` seconds (failures for `KEY_NEGATIVE_TTL`), at most `MAX_CACHED_KEYS` DIDs."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self._http = httpx.AsyncClient(timeout=10.0)
        self._cache: OrderedDict[Did, tuple[float, tuple[PublicKey, ...]]] = OrderedDict()

    async def __call__(self, did: Did) -> Sequence[PublicKey]:
        now = time.monotonic()
        hit = self._cache.get(did)
        if hit is not None and hit[0] > now:
            return hit[1]
        try:
            keys = (await fetch_public_keys(self._http, self.base_url, did)).signing_keys
            until = now + KEY_TTL
        except KeyLookupError as e:
            log.info("no signing key for %s: %s", did[:80], e)
            keys, until = (), now + KEY_NEGATIVE_TTL
        self._cache[did] = (until, keys)
        self._cache.move_to_end(did)
        while len(self._cache) > MAX_CACHED_KEYS:
            self._cache.popitem(last=False)
        return keys

    async def aclose(self) -> None:
        await self._http.aclose()


def _too_many(error: str, message: str, wait: float) -> XrpcError:
    retry = str(max(1, math.ceil(wait)))
    return XrpcError(429, error, message, {"Retry-After": retry})


class SpaceService:
    """Space logs: loaded from the store on demand, changed only through `submit`.

    `run` executes a storage call on the server's storage thread. Call `close`
    after the last request.
    """

    def __init__(
        self,
        store: AuthorityStore,
        run: Callable[[Callable[[], Any]], Awaitable[Any]],
        limits: SpaceLimits,
        keys: KeySource = no_keys,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.limits = limits
        self._run = run
        self._keys = keys
        self._clock = clock
        self._logs: OrderedDict[OpId, SpaceLog] = OrderedDict()
        self._locks: dict[OpId, asyncio.Lock] = {}
        self._submits = RateLimiter(limits.submits_per_minute, limits.submits_per_minute)
        per_did = limits.join_requests_per_did
        per_space = limits.join_requests_per_space
        self._knocks_by_did = RateLimiter(per_did, per_did / 60)
        self._knocks_by_space = RateLimiter(per_space, per_space / 60)
        self._creates = RateLimiter(limits.creates_per_did, limits.creates_per_did / 60)
        # Called with (space, access before, state after) once a submit stored ops:
        # enforcement subscribes here (`before.lost_read(after.access())`: whose
        # sessions to end).
        self.on_change: list[Callable[[OpId, Access, SpaceState], None]] = []

    @property
    def health(self) -> StorageHealth:
        return self.store.health

    async def _load(self, space: OpId) -> SpaceLog | None:
        cached = self._logs.get(space)
        if cached is not None:
            self._logs.move_to_end(space)
            return cached

        def read() -> list[bytes]:
            wires: list[bytes] = []
            since = 0
            while page := self.store.get_ops(space, since, 1000):
                wires += (o.wire for o in page)
                since = page[-1].seq
            return wires

        wires: list[bytes] = await self._run(read)
        if not wires:
            return None
        loaded = SpaceLog.load(space, wires)
        self._remember(space, loaded)
        return loaded

    def _remember(self, space: OpId, space_log: SpaceLog) -> None:
        self._logs[space] = space_log
        self._logs.move_to_end(space)
        while len(self._logs) > self.limits.cached_spaces:
            old, _ = self._logs.popitem(last=False)
            lock = self._locks.get(old)
            if lock is not None and not lock.locked():
                del self._locks[old]

    def _lock(self, space: OpId) -> asyncio.Lock:
        lock = self._locks.get(space)
        if lock is None:
            lock = self._locks[space] = asyncio.Lock()
        return lock

    async def state_of(self, space: OpId) -> SpaceState | None:
        """The space's resolved state, or None if the server holds no op of it."""
        space_log = await self._load(space)
        return None if space_log is None else space_log.state

    async def submit(
        self, caller: Did, space: OpId, raw: Sequence[bytes]
    ) -> tuple[list[OpResult], SpaceLog]:
        """Check, admit and durably store a batch of ops of `space` sent by `caller`.

        Raises XrpcError for whole-batch refusals (nothing stored); per-op refusals
        are `rejected` results."""
        limits = self.limits
        now = self._clock()
        if len(raw) > limits.max_batch:
            raise XrpcError(413, "BatchTooLarge", f"a batch holds at most {limits.max_batch} ops")
        if not raw:
            raise XrpcError(400, "InvalidRequest", "ops must not be empty")
        wait = self._submits.take(caller, now)
        if wait:
            raise _too_many("RateLimitExceeded", "too many submitOps requests; retry later", wait)
        results: list[OpResult | None] = [None] * len(raw)
        parsed: list[tuple[int, SignedOp]] = []
        for i, data in enumerate(raw):
            try:
                signed = parse_op(data, max_bytes=limits.max_op_bytes)
                _check_space(signed, space)
            except OpError as e:
                results[i] = OpResult(None, "rejected", e.reason, e.message, stored=False)
                continue
            parsed.append((i, signed))
        # Keys first (asynchronously), then every signature against them.
        others = sorted({s.author for _, s in parsed if not s.author.startswith("did:key:")})
        found = await asyncio.gather(*(self._keys(did) for did in others))
        known = {did: tuple(keys) for did, keys in zip(others, found, strict=True)}

        def lookup(did: Did) -> Sequence[PublicKey]:
            return known.get(did, ())

        verified: list[tuple[int, SignedOp]] = []
        for i, signed in parsed:
            try:
                verify_op(signed, lookup)
            except OpError as e:
                results[i] = OpResult(signed.id, "rejected", e.reason, e.message, stored=False)
                continue
            verified.append((i, signed))

        async with self._lock(space):
            space_log = await self._load(space) or SpaceLog(space)
            creates = [s for _, s in verified if isinstance(s.op.body, Create)]
            if not space_log.exists and not creates:
                self._locks.pop(space, None)  # waiters hold their own reference
                raise XrpcError(404, "SpaceNotFound", "no such space here; send its create op")
            self._gate(caller, space_log, [s for _, s in verified])
            if not space_log.exists:
                wait = self._creates.take(creates[0].author, now)
                if wait:
                    self._locks.pop(space, None)
                    raise _too_many(
                        "TooManySpaces",
                        f"{creates[0].author[:80]} founded {limits.creates_per_did} spaces here"
                        " this hour; retry later",
                        wait,
                    )
            fresh: list[tuple[int, SignedOp]] = []
            for i, signed in verified:
                if signed.id in space_log.ops:
                    continue
                why = self._stale(caller, signed, now)
                if why is not None:
                    results[i] = OpResult(signed.id, "rejected", "time-skew", why, stored=False)
                    continue
                fresh.append((i, signed))
            self._count_knocks(space, [s for _, s in fresh], now)
            before = space_log.state.access()
            try:
                added = space_log.admit(
                    [s for _, s in fresh],
                    max_ops=limits.max_ops,
                    max_pending=limits.max_pending,
                    max_rejected_per_author=limits.max_rejected_per_author,
                )
            except LimitExceeded as e:
                raise XrpcError(e.status, e.error, e.message) from e
            keep = [(i, space_log.ops[i].wire) for i in added]
            if keep:
                try:
                    await self._run(lambda: self.store.put_ops(space, keep))
                except BaseException:
                    # Memory holds what the store may not: read the store again next time.
                    self._logs.pop(space, None)
                    raise
                self._remember(space, space_log)
            for i, signed in verified:
                if results[i] is None:
                    results[i] = space_log.status(signed.id)
            if keep:
                for listener in self.on_change:
                    listener(space, before, space_log.state)
        done = [r for r in results if r is not None]
        assert len(done) == len(raw)
        return done, space_log

    def _gate(self, caller: Did, space_log: SpaceLog, ops: list[SignedOp]) -> None:
        """A caller who is not a member sends only their own create, knock or join."""
        state = space_log.state
        if state.is_member(caller):
            return
        founding = any(
            isinstance(s.op.body, Create) and s.author == caller and not space_log.exists
            for s in ops
        )
        if founding:
            return
        for signed in ops:
            if signed.id in space_log.ops:
                continue  # already held: sending it again changes nothing
            if signed.author != caller or not isinstance(signed.op.body, Create | Knock | Join):
                raise XrpcError(
                    403,
                    "NotMember",
                    f"not-member: {caller[:80]} is not a member of this space and may send"
                    f" only their own create, knock or join (op {signed.id[:12]} is a"
                    f" {signed.op.body.TYPE} by {signed.author[:80]})",
                )

    def _stale(self, caller: Did, signed: SignedOp, now: float) -> str | None:
        """A fresh knock or join by the caller must claim about the server's time: the
        invite expiry and the stamp window are judged by the op's own time."""
        if signed.author != caller or not isinstance(signed.op.body, Knock | Join):
            return None
        skew = abs(signed.op.time / 1000 - now)
        if skew <= self.limits.max_clock_skew:
            return None
        limit = self.limits.max_clock_skew
        return f"op time is {skew:.0f} s from the server's clock (limit {limit:.0f} s)"

    def _count_knocks(self, space: OpId, ops: list[SignedOp], now: float) -> None:
        for signed in ops:
            if not isinstance(signed.op.body, Knock):
                continue
            wait = self._knocks_by_did.take(signed.author, now)
            if wait:
                raise _too_many(
                    "TooManyJoinRequests",
                    f"{signed.author[:80]} made {self.limits.join_requests_per_did} join"
                    " requests this hour; retry later",
                    wait,
                )
            wait = self._knocks_by_space.take(space, now)
            if wait:
                raise _too_many(
                    "TooManyJoinRequests",
                    f"this space took {self.limits.join_requests_per_space} join requests"
                    " this hour; retry later",
                    wait,
                )

    async def page(self, space: OpId, since: int, limit: int) -> list[StoredOp]:
        """Stored ops of `space` after the cursor `since`, in storage order."""
        page: list[StoredOp] = await self._run(lambda: self.store.get_ops(space, since, limit))
        return page

    async def load_view(self, space: OpId) -> SpaceLog:
        space_log = await self._load(space)
        if space_log is None or not space_log.exists:
            raise XrpcError(404, "SpaceNotFound", "no such space here")
        return space_log

    async def close(self) -> None:
        closer = getattr(self._keys, "aclose", None)
        if closer is not None:
            await closer()


def _check_space(signed: SignedOp, space: OpId) -> None:
    if isinstance(signed.op.body, Create):
        if signed.id != space:
            raise OpError("wrong-space", "a create op of another space")
    elif signed.op.space != space:
        raise OpError("wrong-space", "op belongs to another space")


def parse_space(value: object) -> OpId:
    if not isinstance(value, str) or not _OP_ID.fullmatch(value):
        raise XrpcError(400, "InvalidRequest", "space must be a space id (64 lowercase hex)")
    return OpId(value)


def _int_param(request: Request, name: str, default: int) -> int:
    text = request.query_params.get(name)
    if text is None:
        return default
    if not text.isascii() or not text.isdigit() or len(text) > 18:
        raise XrpcError(400, "InvalidRequest", f"{name} must be a non-negative integer")
    return int(text)


def public_view(state: SpaceState) -> dict[str, Any]:
    """What anyone may know of a space: enough to decide to join and to knock."""
    return {
        "space": state.space,
        "publicName": state.public_name,
        "description": state.description,
        "joinPolicy": state.policy.value,
        "stampCost": {"join": state.stamp_join, "firstPost": state.stamp_first_post},
        "memberCount": len(state.members),
    }


class SpaceEndpoints:
    """The XRPC routes, over a `SpaceService` opened in the app's lifespan.

    `authenticate(request, lxm, optional)` is the app's caller check (service-auth
    JWT or session token); it returns the DID, None only when `optional` and no
    credentials came, or raises XrpcError.
    """

    def __init__(
        self, config: ServiceConfig, authenticate: Authenticate, keys: KeySource | None = None
    ) -> None:
        self.config = config
        self.limits = SpaceLimits.from_config(config)
        self._authenticate = authenticate
        self._keys = keys
        self._service: SpaceService | None = None

    @property
    def service(self) -> SpaceService:
        if self._service is None:
            raise XrpcError(503, "Unavailable", "starting")
        return self._service

    @property
    def health(self) -> StorageHealth | None:
        return None if self._service is None else self._service.health

    def open(self, run: Callable[[Callable[[], Any]], Awaitable[Any]], memory: bool) -> str:
        """Open the store (in memory, or `spaces.sqlite3`); returns where it is."""
        store: AuthorityStore
        if memory:
            store, where = MemoryAuthorityStore(), "memory"
        else:
            path = self.config.service_dir / "spaces.sqlite3"
            store = SqliteAuthorityStore(
                path, busy_timeout=self.config.get_float("storage_busy_timeout")
            )
            where = str(path)
        keys = self._keys
        if keys is None:
            url = self.config.get_str("space_keyserver_url")
            keys = KeyserverKeys(url) if url else no_keys
        self._service = SpaceService(store, run, self.limits, keys)
        return where

    async def close(self) -> None:
        """Stop using the store (after the storage thread is done) and the key client."""
        service, self._service = self._service, None
        if service is not None:
            await service.close()
            service.store.close()

    @property
    def routes(self) -> list[Route]:
        return [
            Route(f"/xrpc/{LXM_SUBMIT}", self.submit_ops, methods=["POST"]),
            Route(f"/xrpc/{LXM_GET_OPS}", self.get_ops, methods=["GET"]),
            Route(f"/xrpc/{LXM_GET_STATE}", self.get_state, methods=["GET"]),
        ]

    async def submit_ops(self, request: Request) -> Response:
        caller = await self._authenticate(request, LXM_SUBMIT, False)
        assert caller is not None
        limits = self.limits
        # Each op is a JSON string; escapes may double a canonical op's length.
        # Lone surrogates allowed: an op's become not-utf8 below, per op.
        body = await read_json_body(
            request,
            limits.max_batch * (2 * limits.max_op_bytes + 8) + 1024,
            max_depth=4,
            allow_lone_surrogates=True,
        )
        space = parse_space(body.get("space"))
        ops = body.get("ops")
        if not isinstance(ops, list) or not all(isinstance(o, str) for o in ops):
            raise XrpcError(400, "InvalidRequest", "ops must be a list of op wire texts")
        # A lone surrogate survives as bytes that are not UTF-8: parse_op says not-utf8.
        raw = [o.encode("utf-8", "surrogatepass") for o in ops]
        results, space_log = await self.service.submit(caller, space, raw)
        answer: dict[str, Any] = {
            "space": space,
            "results": [r.to_json() for r in results],
        }
        if space_log.state.is_member(caller):
            answer["heads"] = space_log.heads
        return JSONResponse(answer)

    async def get_ops(self, request: Request) -> Response:
        caller = await self._authenticate(request, LXM_GET_OPS, False)
        space = parse_space(request.query_params.get("space"))
        since = _int_param(request, "since", 0)
        limit = min(_int_param(request, "limit", self.limits.page_size), self.limits.page_size)
        limit = max(limit, 1)
        service = self.service
        space_log = await service.load_view(space)
        member = space_log.state.is_member(caller)
        heads = request.query_params.get("heads")
        if heads is not None:
            if not member:
                raise XrpcError(403, "NotMember", "not-member: only members read by heads")
            ids = [h for h in heads.split(",") if h]
            if len(ids) > MAX_HEADS or not all(_OP_ID.fullmatch(h) for h in ids):
                raise XrpcError(
                    400, "InvalidRequest", f"heads: at most {MAX_HEADS} comma-separated op ids"
                )
            lacking, more = space_log.since(ids, limit)
            return JSONResponse(
                {
                    "space": space,
                    "view": "member",
                    "ops": [o.wire.decode() for o in lacking],
                    "more": more,
                    "heads": space_log.heads,
                }
            )
        page = await service.page(space, since, limit)
        ops = page if member else [o for o in page if _author(space_log, o.id) == caller]
        answer: dict[str, Any] = {
            "space": space,
            "view": "member" if member else "own",
            "ops": [o.wire.decode() for o in ops],
            "cursor": page[-1].seq if page else since,
            "more": len(page) == limit,
        }
        if member:
            answer["heads"] = space_log.heads
        return JSONResponse(answer)

    async def get_state(self, request: Request) -> Response:
        caller = await self._authenticate(request, LXM_GET_STATE, False)
        space = parse_space(request.query_params.get("space"))
        space_log = await self.service.load_view(space)
        state = space_log.state
        if state.is_member(caller):
            return JSONResponse(
                {
                    "space": space,
                    "view": "member",
                    "state": state.to_json(),
                    "heads": space_log.heads,
                    "pending": space_log.pending(),
                    "ops": len(space_log),
                }
            )
        # The format allows 16 parents: leave one for an invite.
        join_parents = space_log.heads[: MAX_PARENTS - 1]
        you: dict[str, Any] = {"did": caller, "member": False}
        if caller is not None:
            ban = state.bans.get(caller)
            if ban is not None:
                you["banned"] = {"reason": ban.reason, "by": ban.by, "op": ban.op}
            you["requests"] = space_log.requests_of(caller)
        return JSONResponse(
            {
                "space": space,
                "view": "public",
                "state": public_view(state),
                # A newcomer's knock or join names these (and its invite) as parents, with
                # a time not before `notBefore`: so it follows the policy it relies on.
                "joinParents": join_parents,
                "notBefore": max(space_log.ops[h].op.time for h in join_parents),
                "you": you,
            }
        )


def _author(space_log: SpaceLog, op_id: str) -> Did | None:
    signed = space_log.ops.get(OpId(op_id))
    return None if signed is None else signed.author

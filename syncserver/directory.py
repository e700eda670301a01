"""The syncserver's directory of public spaces: which spaces their owners listed.

    POST chat.hearth.v1.directory.setListed  {"space", "listed": bool}        (auth: owner)
    GET  chat.hearth.v1.directory.list?cursor=&limit=                         (anyone)
    GET  chat.hearth.v1.directory.search?q=&cursor=&limit=                    (anyone)

docs/spaces.md, "Directory", is the reference. `Directory` is the listing
itself, without I/O: entries kept fresh from `SpaceService.on_change`, pages
in one deterministic order (member count descending, then space id) with an
opaque cursor. `DirectoryEndpoints` authenticates, rate-limits per client
address, parses the query once and stores the owner's choice durably (the
`AuthorityStore`, on the storage thread) before it answers.

Costs: one entry per listed space (~300 bytes plus ~150 per member DID: the
member set answers "is the caller a member" without loading the space's log),
at most `directory_max_listed`; the sorted order is rebuilt on the first read
after a change (n log n over the listed spaces: ~5 ms at 10,000). A list page
starts by bisection; a search scans every listed space (a case-insensitive
substring match on public name and description: ~2 ms at 10,000), linear in
`directory_max_listed`, fine for a community server. At start each listed
space's log is loaded once to resolve its entry.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import bisect
import itertools
import logging
import math
import re
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hearth.config import Option, ServiceConfig, positive_int
from hearth.http import XrpcError, read_json_body
from hearth.ratelimit import RateLimiter
from hearth.spaces import OpId, SpaceState
from hearth.spaces.ops import JoinPolicy, Rank
from hearth.spaces.state import Access
from hearth.types import Did
from syncserver.spaces import Authenticate, SpaceService, parse_space

NSID = "chat.hearth.v1.directory"
LXM_SET_LISTED = f"{NSID}.setListed"
LXM_LIST = f"{NSID}.list"
LXM_SEARCH = f"{NSID}.search"

DEFAULT_LIMIT = 25
MAX_LIMIT = 100
MAX_QUERY = 100  # characters of a search
MAX_QUERY_STRING = 2048  # bytes of a list/search query string
_CURSOR = re.compile(r"([0-9]{1,9})\.([0-9a-f]{64})")

DIRECTORY_OPTIONS = (
    Option(
        "directory_max_listed",
        positive_int,
        2_000,
        "spaces the directory lists (~300 B each plus ~150 B per member; a search scans all)",
    ),
    Option(
        "directory_requests_per_minute",
        positive_int,
        60,
        "directory list and search requests per client address a minute",
    ),
)

log = logging.getLogger("hearth.syncserver.directory")

Run = Callable[[Callable[[], Any]], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class Listing:
    """What the directory keeps of a listed space: its public face and who is a member."""

    space: OpId
    name: str
    private_name: str
    description: str
    policy: JoinPolicy
    members: frozenset[Did]

    @classmethod
    def of(cls, state: SpaceState) -> Listing:
        return cls(
            state.space,
            state.public_name,
            state.private_name,
            state.description,
            state.policy,
            frozenset(state.members),
        )

    @property
    def listable(self) -> bool:
        return self.policy is not JoinPolicy.INVITE_ONLY

    @property
    def key(self) -> tuple[int, str]:
        return (-len(self.members), self.space)

    def matches(self, folded: str) -> bool:
        return folded in self.name.casefold() or folded in self.description.casefold()

    def to_json(self, caller: Did | None) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "space": self.space,
            "name": self.name,
            "description": self.description,
            "memberCount": len(self.members),
            "joinPolicy": self.policy.value,
        }
        if caller is not None and caller in self.members:
            entry["privateName"] = self.private_name
        return entry


def encode_cursor(listing: Listing) -> str:
    text = f"{len(listing.members)}.{listing.space}"
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def parse_cursor(text: str) -> tuple[int, str]:
    """The sort key a page continues after, or XrpcError 400."""
    bad = XrpcError(400, "InvalidRequest", "cursor: not a cursor this directory gave")
    if len(text) > 120 or not text.isascii():
        raise bad
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("ascii")
    except (binascii.Error, ValueError) as e:
        raise bad from e
    m = _CURSOR.fullmatch(raw)
    if m is None:
        raise bad
    return (-int(m.group(1)), m.group(2))


class Directory:
    """Listed spaces (no I/O). The caller stores a listing choice before `put`/`remove`
    and calls `changed` for every change of a space's state."""

    def __init__(self) -> None:
        self._entries: dict[OpId, Listing] = {}
        self._sorted: list[Listing] | None = []
        self._keys: list[tuple[int, str]] = []

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, space: object) -> bool:
        return space in self._entries

    def put(self, state: SpaceState) -> None:
        self._entries[state.space] = Listing.of(state)
        self._sorted = None

    def remove(self, space: OpId) -> None:
        if self._entries.pop(space, None) is not None:
            self._sorted = None

    def changed(self, space: OpId, state: SpaceState) -> bool:
        """Refresh a listed space's entry (ignored for spaces not listed). Returns True
        when the space just became invite-only: it left the directory, and the caller
        must forget the owner's listing choice in the store too."""
        if space not in self._entries:
            return False
        if state.policy is JoinPolicy.INVITE_ONLY:
            self.remove(space)
            return True
        self.put(state)
        return False

    def _shown(self) -> tuple[list[Listing], list[tuple[int, str]]]:
        if self._sorted is None:
            self._sorted = sorted((e for e in self._entries.values() if e.listable), key=_key)
            self._keys = [e.key for e in self._sorted]
        return self._sorted, self._keys

    def page(
        self, after: tuple[int, str] | None, limit: int, query: str | None = None
    ) -> tuple[list[Listing], str | None]:
        """Up to `limit` shown entries after the cursor key, matching `query` if given;
        and the cursor of the next page (None: this was the last)."""
        folded = None if query is None else query.casefold()
        shown, keys = self._shown()
        start = 0 if after is None else bisect.bisect_right(keys, after)
        out: list[Listing] = []
        for entry in itertools.islice(shown, start, None):
            if folded is not None and not entry.matches(folded):
                continue
            if len(out) == limit:
                return out, encode_cursor(out[-1])
            out.append(entry)
        return out, None


def _key(listing: Listing) -> tuple[int, str]:
    return listing.key


def _query(request: Request) -> dict[str, str]:
    """The query string, strictly: UTF-8 after unescaping (no lone surrogate), each
    name at most once, only the names given."""
    raw = request.scope.get("query_string", b"")
    if len(raw) > MAX_QUERY_STRING:
        raise XrpcError(400, "InvalidRequest", f"query string over {MAX_QUERY_STRING} bytes")
    try:
        pairs = urllib.parse.parse_qsl(
            raw.decode("ascii"), keep_blank_values=True, errors="strict", max_num_fields=8
        )
    except (UnicodeDecodeError, ValueError) as e:
        raise XrpcError(400, "InvalidRequest", "query string: not UTF-8 text") from e
    out: dict[str, str] = {}
    for name, value in pairs:
        if name in out:
            raise XrpcError(400, "InvalidRequest", f"{name[:20]} given twice")
        out[name] = value
    return out


def _limit(params: dict[str, str]) -> int:
    text = params.get("limit")
    if text is None:
        return DEFAULT_LIMIT
    if not text.isascii() or not text.isdigit() or not 1 <= int(text[:4]) <= MAX_LIMIT:
        raise XrpcError(400, "InvalidRequest", f"limit must be an integer from 1 to {MAX_LIMIT}")
    return int(text)


class DirectoryEndpoints:
    """The XRPC routes; `start` (in the app's lifespan, after the space service opened)
    loads the listed spaces and subscribes to their changes."""

    def __init__(self, config: ServiceConfig, authenticate: Authenticate) -> None:
        self.max_listed = config.get_int("directory_max_listed")
        per_minute = config.get_int("directory_requests_per_minute")
        self._limiter = RateLimiter(per_minute, per_minute)
        self._authenticate = authenticate
        self.directory = Directory()
        self._service: SpaceService | None = None
        self._run: Run | None = None
        self._writes: set[asyncio.Task[None]] = set()

    async def start(self, service: SpaceService, run: Run) -> int:
        """Load the listed spaces (each space's log once); returns how many."""
        self._service, self._run = service, run
        spaces: list[str] = await run(service.store.listed)
        for space in spaces:
            state = await service.state_of(OpId(space))
            if state is None or state.policy is JoinPolicy.INVITE_ONLY:
                # Its unlisting did not reach the store before a crash: finish it.
                self._unlist(OpId(space))
            else:
                self.directory.put(state)
        service.on_change.append(self._changed)
        return len(self.directory)

    def _changed(self, space: OpId, _before: Access, after: SpaceState) -> None:
        if self.directory.changed(space, after):
            self._unlist(space)

    def _unlist(self, space: OpId) -> None:
        """Forget a listing in the store, in the background: the directory no longer
        shows it, and `start` skips an invite-only space should this write fail."""
        service, run = self._ready()

        async def write() -> None:
            try:
                await run(lambda: service.store.set_listed(space, False, ""))
            except Exception as e:  # noqa: BLE001 - logged; start() finishes it later
                log.warning("could not unlist invite-only space %s: %s", space[:12], e)

        task = asyncio.get_running_loop().create_task(write())
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def close(self) -> None:
        """Wait for background unlistings; call before the storage thread stops."""
        while self._writes:
            await asyncio.gather(*list(self._writes))

    def _ready(self) -> tuple[SpaceService, Run]:
        if self._service is None or self._run is None:
            raise XrpcError(503, "Unavailable", "starting")
        return self._service, self._run

    @property
    def routes(self) -> list[Route]:
        return [
            Route(f"/xrpc/{LXM_SET_LISTED}", self.set_listed, methods=["POST"]),
            Route(f"/xrpc/{LXM_LIST}", self.list, methods=["GET"]),
            Route(f"/xrpc/{LXM_SEARCH}", self.search, methods=["GET"]),
        ]

    async def set_listed(self, request: Request) -> Response:
        caller = await self._authenticate(request, LXM_SET_LISTED, False)
        assert caller is not None
        service, run = self._ready()
        body = await read_json_body(request, 1024, max_depth=2)
        space = parse_space(body.get("space"))
        listed = body.get("listed")
        if not isinstance(listed, bool):
            raise XrpcError(400, "InvalidRequest", "listed must be true or false")
        state = (await service.load_view(space)).state
        if state.rank_of(caller) is not Rank.OWNER:
            raise XrpcError(
                403, "NotOwner", "not-owner: only the space's owner lists or unlists it"
            )
        if listed:
            if state.policy is JoinPolicy.INVITE_ONLY:
                raise XrpcError(
                    409,
                    "InviteOnly",
                    "an invite-only space cannot be listed; set its join policy to open"
                    " or approval first",
                )
            if space not in self.directory and len(self.directory) >= self.max_listed:
                raise XrpcError(
                    409,
                    "DirectoryFull",
                    f"this directory lists at most {self.max_listed} spaces",
                )
        await run(lambda: service.store.set_listed(space, listed, caller))
        if listed:
            # Read again after the write: a submit may have changed it meanwhile.
            fresh = await service.state_of(space)
            if fresh is not None:
                self.directory.put(fresh)
        else:
            self.directory.remove(space)
        return JSONResponse({"space": space, "listed": listed})

    async def list(self, request: Request) -> Response:
        return await self._page(request, LXM_LIST, search=False)

    async def search(self, request: Request) -> Response:
        return await self._page(request, LXM_SEARCH, search=True)

    async def _page(self, request: Request, lxm: str, *, search: bool) -> Response:
        client = request.client.host if request.client is not None else ""
        wait = self._limiter.take(client, time.monotonic())
        if wait:
            raise XrpcError(
                429,
                "RateLimitExceeded",
                "too many directory requests; retry later",
                {"Retry-After": str(max(1, math.ceil(wait)))},
            )
        self._ready()
        params = _query(request)
        allowed = {"cursor", "limit", "q"} if search else {"cursor", "limit"}
        unknown = sorted(set(params) - allowed)
        if unknown:
            raise XrpcError(400, "InvalidRequest", f"unknown parameter {unknown[0][:20]!r}")
        limit = _limit(params)
        cursor = params.get("cursor")
        after = parse_cursor(cursor) if cursor else None
        query: str | None = None
        if search:
            query = params.get("q", "")
            if not query.strip():
                raise XrpcError(400, "InvalidRequest", "q must not be empty")
            if len(query) > MAX_QUERY:
                raise XrpcError(400, "InvalidRequest", f"q: at most {MAX_QUERY} characters")
        caller = await self._authenticate(request, lxm, True)
        entries, more = self.directory.page(after, limit, query)
        answer: dict[str, Any] = {"spaces": [e.to_json(caller) for e in entries]}
        if more is not None:
            answer["cursor"] = more
        return JSONResponse(answer)

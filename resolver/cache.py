"""A bounded LRU cache with stale-while-revalidate and single-flight lookups.

Entries hold a value or a failure. A fresh entry is returned as is; a stale
one is returned while one background refresh runs; an expired one is
refetched. Concurrent misses on one key share a single upstream call.
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

V = TypeVar("V")


@dataclass(frozen=True, slots=True)
class Lifetimes:
    """Seconds until an entry goes stale / must be refetched."""

    stale: float = 3600.0
    expire: float = 86400.0
    failure: float = 120.0  # upstream failures
    negative: float = 300.0  # not found / invalid


@dataclass(slots=True)
class _Entry(Generic[V]):
    value: V | None
    error: Exception | None
    stale_at: float
    expire_at: float


class SwrCache(Generic[V]):
    """Maps string keys to values fetched by an async `fetch(key)`.

    `fetch` raises to signal failure; `is_negative(exc)` says whether a failure
    is a definitive "no" (cached `negative` seconds) or an upstream fault
    (cached `failure` seconds).
    """

    def __init__(
        self,
        fetch: Callable[[str], Awaitable[V]],
        *,
        max_entries: int = 100_000,
        lifetimes: Lifetimes | None = None,
        is_negative: Callable[[Exception], bool] = lambda _e: False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._entries: OrderedDict[str, _Entry[V]] = OrderedDict()
        self._inflight: dict[str, asyncio.Future[V]] = {}
        self._refreshing: set[asyncio.Task[None]] = set()
        self._max = max_entries
        self._life = lifetimes or Lifetimes()
        self._is_negative = is_negative
        self._clock = clock
        self.hits = 0
        self.misses = 0
        self.upstream_calls = 0

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, key: str, *, fresh: bool = False) -> V:
        """The cached value for `key`, fetching it if needed; re-raises cached failures.

        `fresh=True` ignores the cache (but still shares an in-flight fetch).
        """
        now = self._clock()
        entry = None if fresh else self._entries.get(key)
        if entry is not None and now < entry.expire_at:
            self._entries.move_to_end(key)
            self.hits += 1
            if now >= entry.stale_at and entry.error is None and key not in self._inflight:
                task = asyncio.create_task(self._refresh(key))
                self._refreshing.add(task)
                task.add_done_callback(self._refreshing.discard)
            if entry.error is not None:
                # A copy: re-raising one instance would grow its traceback forever.
                raise copy.copy(entry.error).with_traceback(None)
            assert entry.value is not None
            return entry.value
        self.misses += 1
        return await self._load(key)

    async def _refresh(self, key: str) -> None:
        try:
            await self._load(key)
        except Exception:  # noqa: BLE001 - the failure is cached; the stale value keeps serving
            pass

    async def _load(self, key: str) -> V:
        future = self._inflight.get(key)
        if future is not None:
            return await asyncio.shield(future)
        future = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            self.upstream_calls += 1
            value = await self._fetch(key)
        except Exception as e:
            self._store(key, None, e)
            future.set_exception(e)
            future.exception()  # mark retrieved: waiters may be none
            raise
        except BaseException as e:  # cancelled: let waiters retry rather than hang
            future.cancel()
            raise e
        else:
            self._store(key, value, None)
            future.set_result(value)
            return value
        finally:
            del self._inflight[key]

    def _store(self, key: str, value: V | None, error: Exception | None) -> None:
        now = self._clock()
        if error is None:
            entry = _Entry(value, None, now + self._life.stale, now + self._life.expire)
        else:
            ttl = self._life.negative if self._is_negative(error) else self._life.failure
            # A failure after a good value keeps the good value until it expires.
            old = self._entries.get(key)
            if old is not None and old.error is None and now < old.expire_at:
                old.stale_at = min(old.expire_at, now + ttl)
                return
            entry = _Entry(None, error, now + ttl, now + ttl)
        self._entries[key] = entry
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    async def aclose(self) -> None:
        for task in list(self._refreshing):
            task.cancel()
        for task in list(self._refreshing):
            try:
                await task
            except asyncio.CancelledError:
                pass

"""Logging set-up: one line per record, no secrets (callers never log tokens or keys).

Two filters guard what the libraries log:

- `RepeatFilter` collapses repeated warnings and errors: a client who can
  make a service log (refused connections, `accept()` out of descriptors,
  a crashing request) could otherwise fill the disk; asyncio alone logged
  ~2,000 tracebacks a second while descriptors ran out.
- `RedactUrlQuery` cuts the query string off URLs that httpx logs at INFO
  ("HTTP Request: GET http://…?documentId=…"): the frontend's proxy passes
  tokens and document ids (read capabilities) in query strings.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

_DIGITS = re.compile(r"\d+")


@dataclass
class _Seen:
    start: float
    count: int = 0
    suppressed: int = 0


class RepeatFilter(logging.Filter):
    """Lets at most `burst` records per `window` seconds through for each kind of
    WARNING-or-worse record (logger, level and message template, digits ignored);
    the first one through after a quiet spell says how many were dropped.

    Records below WARNING (access log lines) pass untouched. At most `max_kinds`
    kinds are remembered (the oldest forgotten first). `burst` 0 turns it off.
    """

    def __init__(
        self,
        burst: int = 10,
        window: float = 60.0,
        *,
        max_kinds: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.burst = burst
        self.window = window
        self.max_kinds = max_kinds
        self.clock = clock
        self._seen: dict[tuple[str, int, str], _Seen] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or self.burst <= 0:
            return True
        key = (record.name, record.levelno, _DIGITS.sub("#", str(record.msg)))
        now = self.clock()
        seen = self._seen.get(key)
        if seen is None or now - seen.start >= self.window:
            dropped = seen.suppressed if seen is not None else 0
            self._seen.pop(key, None)
            while len(self._seen) >= self.max_kinds:
                del self._seen[next(iter(self._seen))]
            seen = self._seen[key] = _Seen(now)
            if dropped:
                record.msg = (
                    f"{record.msg} [{dropped} more like this were not logged "
                    f"in the previous {self.window:g}s]"
                )
        seen.count += 1
        if seen.count > self.burst:
            seen.suppressed += 1
            return False
        return True


class RedactUrlQuery(logging.Filter):
    """Replaces the query string of URL arguments of a record by `?…`."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_redact(arg) for arg in record.args)
        return True


def _redact(arg: object) -> object:
    if isinstance(arg, httpx.URL):
        return str(arg.copy_with(query=None, fragment=None)) + ("?…" if arg.query else "")
    if isinstance(arg, str) and "://" in arg and "?" in arg:
        return arg.split("?", 1)[0] + "?…"
    return arg


def configure_logging(level: str, *, repeat_burst: int = 10, repeat_window: float = 60.0) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    repeats = RepeatFilter(repeat_burst, repeat_window)
    for handler in logging.getLogger().handlers:
        handler.addFilter(repeats)
    logging.getLogger("httpx").addFilter(RedactUrlQuery())
    # uvicorn repeats start-up lines once per server under `hearth up`.
    logging.getLogger("uvicorn.error").setLevel(logging.WARNING)

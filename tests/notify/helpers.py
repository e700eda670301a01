"""Shared bits of the notification tests."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")

# Every timeout here is a multiple of MS, scaled by HEARTH_TESTS_TIMEOUT_FACTOR.
MS = 0.001 * float(os.environ.get("HEARTH_TESTS_TIMEOUT_FACTOR", "1"))
WAIT = 5000 * MS


async def within(aw: Awaitable[T], limit: float = WAIT) -> T:
    """Await with the test's timeout so a missing event fails instead of hanging."""
    return await asyncio.wait_for(aw, limit)

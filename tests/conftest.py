"""Fixtures shared by every test package."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from hypothesis import HealthCheck, settings

from tests.world import World, running_world

# Property tests assert behaviour, never speed: no per-example deadline (CI
# machines are small and busy), and no health check failing a slow data strategy.
settings.register_profile(
    "hearth", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.load_profile("hearth")


@pytest.fixture
async def world() -> AsyncIterator[World]:
    """The outside world (DNS, did:web hosts, PLC directory) on loopback."""
    async with running_world() as w:
        yield w

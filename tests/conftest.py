"""Fixtures shared by every test package."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.world import World, running_world


@pytest.fixture
async def world() -> AsyncIterator[World]:
    """The outside world (DNS, did:web hosts, PLC directory) on loopback."""
    async with running_world() as w:
        yield w

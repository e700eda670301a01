"""Fixtures for syncserver tests: a running server (real socket, port 0) and Node clients."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.syncserver.helpers import NodeClients, RunningServer, running_server


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    async with running_server(tmp_path) as srv:
        yield srv


@pytest.fixture
async def node() -> AsyncIterator[NodeClients]:
    async with NodeClients.start() as clients:
        yield clients

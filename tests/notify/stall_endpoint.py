"""A push endpoint that never answers: it accepts TCP, reads, and stalls.

What a dead or hostile push service looks like to the router: connections
open, requests go out, no response ever comes back. `connected` counts the
connections accepted so far; `wait_connections(n)` waits for the n-th.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


class StallEndpoint:
    """Serve with `async with StallEndpoint().running() as ep:`; `ep.url` is its origin."""

    def __init__(self) -> None:
        self.url = ""
        self.connected = 0
        self._changed = asyncio.Condition()
        self._writers: set[asyncio.StreamWriter] = set()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        async with self._changed:
            self.connected += 1
            self._changed.notify_all()
        try:
            while await reader.read(65536):  # swallow the request, never answer
                pass
        except ConnectionError:
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    async def wait_connections(self, n: int) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: self.connected >= n)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[StallEndpoint]:
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        try:
            yield self
        finally:
            server.close()
            for writer in list(self._writers):
                writer.close()
            await server.wait_closed()

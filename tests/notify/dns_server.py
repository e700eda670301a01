"""A DNS server on loopback UDP for push tests: A records it knows, silence for others.

Names in `addresses` get their A record (and an empty AAAA answer); names
ending in one of `stall_suffixes` are never answered (a dead authoritative
server); anything else is NXDOMAIN. `queried` holds every name asked about.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import cast

import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset


class DnsServer(asyncio.DatagramProtocol):
    def __init__(self, addresses: dict[str, str], stall_suffixes: tuple[str, ...] = ()) -> None:
        self.addresses = addresses
        self.stall_suffixes = stall_suffixes
        self.port = 0
        self.queried: set[str] = set()
        self._changed = asyncio.Event()
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)  # not a subclass in 3.11

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        query = dns.message.from_wire(data)
        q = query.question[0]
        name = q.name.to_text(omit_final_dot=True).lower()
        self.queried.add(name)
        self._changed.set()
        if name.endswith(self.stall_suffixes):
            return
        response = dns.message.make_response(query)
        if name not in self.addresses:
            response.set_rcode(dns.rcode.NXDOMAIN)
        elif q.rdtype == dns.rdatatype.A:
            response.answer.append(
                dns.rrset.from_text(q.name, 60, dns.rdataclass.IN, "A", self.addresses[name])
            )
        assert self._transport is not None
        self._transport.sendto(response.to_wire(), addr)

    async def wait_queried(self, n: int, suffix: str) -> None:
        """Wait until `n` distinct names ending in `suffix` were asked about."""
        while sum(1 for name in self.queried if name.endswith(suffix)) < n:
            self._changed.clear()
            await self._changed.wait()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[DnsServer]:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: self, ("127.0.0.1", 0))
        self.port = transport.get_extra_info("sockname")[1]
        try:
            yield self
        finally:
            transport.close()

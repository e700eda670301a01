"""Name resolution for push endpoints, without threads.

aiohttp's default resolver calls `getaddrinfo` on the event loop's default
thread pool (a handful of threads). A push endpoint whose name never resolves
(a hostile DID can register 32 of them, at as many names) keeps a thread
busy for the system resolver's whole timeout, even after our per-attempt
timeout gave up on it; a few such names and nobody's push can resolve
anything any more. `PushResolver` asks DNS itself with dnspython's asyncio
resolver instead: a lookup costs a socket and a task, is cancelled with the
push attempt, and never waits for another one.

It asks the nameservers of `HEARTH_DNS_NAMESERVERS` when set, else those of
`/etc/resolv.conf`; `/etc/hosts` is not read (push services are public
names). IP-address endpoints never reach it (aiohttp connects to them
directly; `router.push.WebPushSender` checks those itself).

Unless `allow_private`, only public addresses (`hearth.netguard`) are
returned: a name that resolves only to loopback, private or other
non-global addresses fails with `HostNotPublic`. aiohttp connects to the
addresses returned here (TLS SNI and Host stay the name), so the address
checked is the address connected to; nothing resolves the name again.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Sequence

import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.resolver
from aiohttp.abc import AbstractResolver, ResolveResult

from hearth.netguard import is_public_address

_FLAGS = socket.AI_NUMERICHOST | socket.AI_NUMERICSERV


class HostNotPublic(OSError):
    """The name resolved, but only to addresses a push may not go to.

    An OSError so that aiohttp passes it on as a connection error's
    `os_error` (`ClientConnectorDNSError`), like any failed lookup.
    """


class PushResolver(AbstractResolver):
    """An aiohttp resolver over dnspython; `timeout` bounds each lookup.

    Public addresses only unless `allow_private` (HEARTH_ALLOW_PRIVATE_HOSTS).
    """

    def __init__(
        self,
        nameservers: Sequence[tuple[str, int]] = (),
        *,
        timeout: float,
        allow_private: bool = False,
    ) -> None:
        self._nameservers = tuple(nameservers)
        self._timeout = timeout
        self._allow_private = allow_private
        self._dns: dns.asyncresolver.Resolver | None = None

    def _resolver(self) -> dns.asyncresolver.Resolver:
        # Made on first use: a host with no /etc/resolv.conf still pushes to
        # IP-address endpoints, and fails (retryably) only for names.
        if self._dns is None:
            if self._nameservers:
                resolver = dns.asyncresolver.Resolver(configure=False)
                resolver.nameservers = [
                    dns.nameserver.Do53Nameserver(h, p) for h, p in self._nameservers
                ]
            else:
                try:
                    resolver = dns.asyncresolver.Resolver(configure=True)
                except dns.resolver.NoResolverConfiguration as e:
                    raise OSError("no DNS nameservers configured") from e
            self._dns = resolver
        return self._dns

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if family == socket.AF_INET:
            families = [socket.AF_INET]
        elif family == socket.AF_INET6:
            families = [socket.AF_INET6]
        else:
            families = [socket.AF_INET6, socket.AF_INET]
        answers = await asyncio.gather(
            *(self._lookup(host, fam) for fam in families), return_exceptions=True
        )
        results: list[ResolveResult] = []
        refused = 0
        for fam, answer in zip(families, answers, strict=True):
            if isinstance(answer, BaseException):
                continue
            if not self._allow_private:
                # A name may mix public and other addresses; only the public
                # ones are ever connected to.
                public = [addr for addr in answer if is_public_address(addr)]
                refused += len(answer) - len(public)
                answer = public
            results.extend(
                {
                    "hostname": host,
                    "host": addr,
                    "port": port,
                    "family": fam,
                    "proto": 0,
                    "flags": _FLAGS,
                }
                for addr in answer
            )
        if not results:
            if refused:
                raise HostNotPublic("push endpoint host name resolves to no public address")
            errors = [a for a in answers if isinstance(a, BaseException)]
            for error in errors:
                if not isinstance(error, dns.exception.DNSException | OSError):
                    raise error  # cancellation, bugs
            raise OSError("push endpoint host name did not resolve")
        return results

    async def _lookup(self, host: str, family: socket.AddressFamily) -> list[str]:
        rdtype = "AAAA" if family == socket.AF_INET6 else "A"
        resolver = self._resolver()
        try:
            answer = await resolver.resolve(host, rdtype, lifetime=self._timeout, search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        return [rr.address for rr in answer]

    async def close(self) -> None:
        pass

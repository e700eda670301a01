"""The outside world: DNS TXT queries and HTTP(S) fetches, with size limits and timeouts.

Hosts named by callers (a did:web host, a handle's `/.well-known/atproto-did`)
are fetched over https only, and never at a loopback, private, link-local or
otherwise non-global address, whether the host is an IP literal or a name
that resolves to one (checked on the address actually connected to, so DNS
rebinding does not get around it). `allow_private` (HEARTH_ALLOW_PRIVATE_HOSTS)
lifts that for LAN installs.

`HEARTH_HTTP_HOSTS` maps hostnames to local addresses for tests and
air-gapped installs: a request to a mapped hostname goes to that address over
plain http, with the original Host header. Mapped hosts and the PLC directory
are the operator's own configuration and are fetched wherever they point.
"""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import anyio
import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.resolver
import httpcore
import httpx

import hearth
from hearth.netguard import NonPublicAddress, is_public_address
from resolver.errors import NotFound, UpstreamError

log = logging.getLogger("resolver.upstream")

MAX_WELL_KNOWN_BYTES = 2048
MAX_DOCUMENT_BYTES = 64 * 1024
USER_AGENT = f"hearth-resolver/{hearth.__version__}"


class Upstream:
    def __init__(
        self,
        *,
        nameservers: Sequence[tuple[str, int]] = (),
        http_hosts: Mapping[str, tuple[str, int]] | None = None,
        timeout: float = 5.0,
        allow_private: bool = False,
    ) -> None:
        self.timeout = timeout
        self.http_hosts = dict(http_hosts or {})
        self.allow_private = allow_private
        if nameservers:
            self._dns = dns.asyncresolver.Resolver(configure=False)
            self._dns.nameservers = [dns.nameserver.Do53Nameserver(h, p) for h, p in nameservers]
        else:
            self._dns = dns.asyncresolver.Resolver(configure=True)
        self._dns.cache = None  # we cache ourselves, with atproto's lifetimes
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
        common: dict[str, Any] = {
            "timeout": httpx.Timeout(timeout),
            "follow_redirects": False,
            "headers": {"user-agent": USER_AGENT},
            "limits": limits,
        }
        # Targets the operator configured (mapped hosts, the PLC directory).
        self._trusted = httpx.AsyncClient(**common)
        # Hosts named by callers: public addresses only, unless allowed.
        transport = None if allow_private else _PublicOnlyTransport(limits)
        self._public = httpx.AsyncClient(transport=transport, **common)
        self.dns_queries = 0
        self.http_requests = 0

    async def aclose(self) -> None:
        await self._trusted.aclose()
        await self._public.aclose()

    async def txt(self, name: str) -> list[str]:
        """TXT strings at `name`; [] when the name or record does not exist."""
        self.dns_queries += 1
        try:
            answer = await self._dns.resolve(name, "TXT", lifetime=self.timeout, search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except dns.exception.Timeout as e:
            raise UpstreamError("DNS query timed out") from e
        except dns.exception.DNSException as e:
            raise UpstreamError(f"DNS query failed: {type(e).__name__}") from e
        out = []
        for rdata in answer:
            out.append(b"".join(rdata.strings).decode("utf-8", "replace"))
        return out

    def url_for(self, host: str, path: str) -> tuple[str, dict[str, str]]:
        """The URL to fetch `https://<host><path>` at, and extra headers.

        `host` may carry a port (`example.com:8443`). Only hosts mapped in
        HEARTH_HTTP_HOSTS are fetched over plain http (at their mapped address).
        """
        mapped = self._mapped(host)
        if mapped is not None:
            addr, port = mapped
            addr = f"[{addr}]" if ":" in addr else addr
            return f"http://{addr}:{port}{path}", {"host": host}
        return f"https://{host}{path}", {}

    def _mapped(self, host: str) -> tuple[str, int] | None:
        """Exact `host[:port]`, then the bare hostname, then `*.suffix` wildcards."""
        hostname = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
        for key in (host, hostname):
            if key in self.http_hosts:
                return self.http_hosts[key]
        labels = hostname.split(".")
        for i in range(1, len(labels)):
            wildcard = "*." + ".".join(labels[i:])
            if wildcard in self.http_hosts:
                return self.http_hosts[wildcard]
        return None

    async def fetch(self, host: str, path: str, limit: int) -> tuple[int, bytes]:
        """GET `https://<host><path>` -> (status, body of at most `limit` bytes)."""
        url, headers = self.url_for(host, path)
        return await self.fetch_url(
            url, headers, limit, host, trusted=self._mapped(host) is not None
        )

    async def fetch_host_json(self, host: str, path: str, what: str) -> dict[str, Any]:
        """GET a JSON object at `https://<host><path>` (a did:web document)."""
        url, headers = self.url_for(host, path)
        return await self.fetch_json(url, headers, what, trusted=self._mapped(host) is not None)

    async def fetch_url(
        self,
        url: str,
        headers: Mapping[str, str],
        limit: int,
        host: str,
        *,
        trusted: bool = False,
    ) -> tuple[int, bytes]:
        """GET `url` -> (status, body of at most `limit` bytes).

        `trusted=True` only for URLs from the operator's configuration; other
        URLs may reach public addresses only (unless `allow_private`).
        """
        self.http_requests += 1
        client = self._trusted if trusted else self._public
        try:
            async with client.stream("GET", url, headers=headers) as response:
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > limit:
                        raise UpstreamError(f"response from {host} larger than {limit} bytes")
                return response.status_code, bytes(body)
        except NonPublicAddress as e:
            raise NotFound(
                f"{host} is not at a public address; not fetched (HEARTH_ALLOW_PRIVATE_HOSTS)"
            ) from e
        except httpx.TimeoutException as e:
            raise UpstreamError(f"request to {host} timed out") from e
        except (httpx.ConnectError, httpx.UnsupportedProtocol) as e:
            # The host does not exist or refuses connections: nothing is published there.
            raise NotFound(f"{host} is not reachable") from e
        except httpx.HTTPError as e:
            raise UpstreamError(f"request to {host} failed: {type(e).__name__}") from e
        except (httpx.InvalidURL, httpx.StreamError, httpx.CookieConflict) as e:
            # httpx raises these outside its HTTPError hierarchy.
            raise UpstreamError(f"request to {host} failed: {type(e).__name__}") from e

    async def fetch_json(
        self, url: str, headers: Mapping[str, str], what: str, *, trusted: bool = False
    ) -> dict[str, Any]:
        """GET a JSON object (a DID document). NotFound on 404/410, UpstreamError otherwise."""
        status, body = await self.fetch_url(url, headers, MAX_DOCUMENT_BYTES, what, trusted=trusted)
        if status in (404, 410):
            raise NotFound(f"{what} not found", "DidNotFound")
        if status != 200:
            raise UpstreamError(f"{what} answered HTTP {status}")
        try:
            doc = json.loads(body)
        except (UnicodeDecodeError, ValueError, RecursionError) as e:
            raise UpstreamError(f"{what} is not JSON") from e
        if not isinstance(doc, dict):
            raise UpstreamError(f"{what} is not a JSON object")
        return doc


class _PublicOnlyBackend(httpcore.AsyncNetworkBackend):
    """Resolves the host itself, refuses any non-public address, connects to the checked one.

    TLS still verifies (and sends SNI for) the original hostname: httpcore takes
    it from the request, not from the address connected to.
    """

    def __init__(self) -> None:
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore backend interface
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            with anyio.fail_after(timeout):
                infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except TimeoutError as e:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from e
        except OSError as e:
            raise httpcore.ConnectError(f"cannot resolve {host}") from e
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        # Refuse if any address is private: a name must not mix public and private.
        if not addresses or not all(is_public_address(a) for a in addresses):
            raise NonPublicAddress(host)
        error: httpcore.ConnectError | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except httpcore.ConnectError as e:
                error = e
        assert error is not None
        raise error

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore backend interface
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise NonPublicAddress(path)

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _PublicOnlyTransport(httpx.AsyncHTTPTransport):
    def __init__(self, limits: httpx.Limits) -> None:
        super().__init__(limits=limits)
        # httpx has no public hook for the network backend; the pool it would
        # have built is replaced by the same pool over the guarded backend.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_PublicOnlyBackend(),
        )

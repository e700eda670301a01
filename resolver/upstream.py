"""The outside world: DNS TXT queries and HTTP(S) fetches, with size limits and timeouts.

`HEARTH_HTTP_HOSTS` maps hostnames to loopback addresses for tests and
air-gapped installs: a request to a mapped hostname goes to that address over
plain http, with the original Host header.
"""

from __future__ import annotations

import ipaddress
import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.resolver
import httpx

import hearth
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
    ) -> None:
        self.timeout = timeout
        self.http_hosts = dict(http_hosts or {})
        if nameservers:
            self._dns = dns.asyncresolver.Resolver(configure=False)
            self._dns.nameservers = [dns.nameserver.Do53Nameserver(h, p) for h, p in nameservers]
        else:
            self._dns = dns.asyncresolver.Resolver(configure=True)
        self._dns.cache = None  # we cache ourselves, with atproto's lifetimes
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout),
            follow_redirects=False,
            headers={"user-agent": USER_AGENT},
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
        )
        self.dns_queries = 0
        self.http_requests = 0

    async def aclose(self) -> None:
        await self._http.aclose()

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

        `host` may carry a port (`example.com:8443`). Mapped hosts and loopback
        hosts are fetched over plain http.
        """
        mapped = self._mapped(host)
        if mapped is not None:
            addr, port = mapped
            addr = f"[{addr}]" if ":" in addr else addr
            return f"http://{addr}:{port}{path}", {"host": host}
        hostname = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
        scheme = "http" if _is_loopback(hostname) else "https"
        return f"{scheme}://{host}{path}", {}

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
        return await self.fetch_url(url, headers, limit, host)

    async def fetch_url(
        self, url: str, headers: Mapping[str, str], limit: int, host: str
    ) -> tuple[int, bytes]:
        self.http_requests += 1
        try:
            async with self._http.stream("GET", url, headers=headers) as response:
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > limit:
                        raise UpstreamError(f"response from {host} larger than {limit} bytes")
                return response.status_code, bytes(body)
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

    async def fetch_json(self, url: str, headers: Mapping[str, str], what: str) -> dict[str, Any]:
        """GET a JSON object (a DID document). NotFound on 404/410, UpstreamError otherwise."""
        status, body = await self.fetch_url(url, headers, MAX_DOCUMENT_BYTES, what)
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


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False

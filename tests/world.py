"""The outside world on loopback, for offline tests.

`World` runs a real DNS server (UDP and TCP, dnspython message handling) that
serves `_atproto.<handle>` TXT records, and a real HTTP server that serves
`/.well-known/atproto-did`, did:web documents (host-based and path-based) and a
PLC directory (`GET /plc/<did>`). Identities carry real P-256 / secp256k1 /
Ed25519 `#atproto` keys, so tests mint service-auth JWTs exactly as a PDS would.

Every hostname under `.test`, and the port-encoded did:web host
`127.0.0.1:PORT` of the HTTP server itself, is routed to the HTTP server
through HEARTH_HTTP_HOSTS (`*.test=127.0.0.1:PORT`; unmapped private addresses
are never fetched); `world.env` and `world.settings()` carry the configuration
services need.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import secrets
import struct
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from hearth.config import Settings
from hearth.jwt import Signer, mint_service_jwt
from hearth.keys import KeyType
from tests.servers import bound_socket, serve_app

B32 = "abcdefghijklmnopqrstuvwxyz234567"


@dataclass
class Identity:
    did: str
    signer: Signer
    handle: str | None
    doc: dict[str, Any]

    def jwt(self, aud: str, lxm: str | None, ttl: int = 60, **kw: Any) -> str:
        """A service-auth JWT signed with this identity's #atproto key (as its PDS would)."""
        return mint_service_jwt(self.signer, iss=self.did, aud=aud, lxm=lxm, ttl=ttl, **kw)


@dataclass
class World:
    dns_port: int = 0
    http_port: int = 0
    txt: dict[str, list[str]] = field(default_factory=dict)  # name -> TXT strings
    well_known: dict[str, str] = field(default_factory=dict)  # host -> body
    web_docs: dict[str, dict[str, Any]] = field(default_factory=dict)  # host or host/path -> doc
    plc_docs: dict[str, dict[str, Any]] = field(default_factory=dict)
    slow_dns: set[str] = field(default_factory=set)  # names whose queries are never answered
    slow_http: set[str] = field(default_factory=set)  # hosts whose requests hang
    dns_queries: Counter[str] = field(default_factory=Counter)
    http_requests: Counter[str] = field(default_factory=Counter)

    # -- configuration for services under test ------------------------------

    @property
    def http_base(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def env(self) -> dict[str, str]:
        return {
            "HEARTH_DNS_NAMESERVERS": f"127.0.0.1:{self.dns_port}",
            "HEARTH_PLC_URL": f"{self.http_base}/plc",
            "HEARTH_HTTP_HOSTS": ",".join(f"{k}={h}:{p}" for k, (h, p) in self.http_hosts.items()),
        }

    @property
    def http_hosts(self) -> dict[str, tuple[str, int]]:
        here = ("127.0.0.1", self.http_port)
        return {"*.test": here, f"127.0.0.1:{self.http_port}": here}

    def settings(self, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "dns_nameservers": (("127.0.0.1", self.dns_port),),
            "plc_url": f"{self.http_base}/plc",
            "http_hosts": self.http_hosts,
            "resolver_timeout": 2.0,
            "data_dir": Path("data"),
        }
        values.update(overrides)
        return Settings(**values)

    # -- identities -----------------------------------------------------------

    @staticmethod
    def _doc(did: str, signer: Signer, handle: str | None) -> dict[str, Any]:
        return {
            "@context": [
                "https://www.w3.org/ns/did/v1",
                "https://w3id.org/security/multikey/v1",
            ],
            "id": did,
            "alsoKnownAs": [f"at://{handle}"] if handle else [],
            "verificationMethod": [
                {
                    "id": f"{did}#atproto",
                    "type": "Multikey",
                    "controller": did,
                    "publicKeyMultibase": signer.public_key.multibase,
                }
            ],
            "service": [
                {
                    "id": "#atproto_pds",
                    "type": "AtprotoPersonalDataServer",
                    "serviceEndpoint": "https://pds.test",
                }
            ],
        }

    def new_handle(self) -> str:
        return f"u{secrets.token_hex(5)}.test"

    def new_plc_identity(
        self, key_type: KeyType = KeyType.P256, handle: str | None = None, *, publish: bool = True
    ) -> Identity:
        """A did:plc in the PLC directory; with a handle published over DNS when `publish`."""
        did = "did:plc:" + "".join(secrets.choice(B32) for _ in range(24))
        signer = Signer.generate(key_type)
        handle = handle or self.new_handle()
        doc = self._doc(did, signer, handle)
        self.plc_docs[did] = doc
        if publish:
            self.publish_dns(handle, did)
        return Identity(did, signer, handle, doc)

    def new_web_identity(
        self, key_type: KeyType = KeyType.SECP256K1, host: str | None = None
    ) -> Identity:
        """A did:web whose document is served at https://<host>/.well-known/did.json."""
        host = host or f"w{secrets.token_hex(5)}.test"
        did = "did:web:" + host.replace(":", "%3A")
        signer = Signer.generate(key_type)
        doc = self._doc(did, signer, host)
        self.web_docs[host] = doc
        self.well_known[host] = did
        return Identity(did, signer, host, doc)

    def new_port_web_identity(self, key_type: KeyType = KeyType.P256) -> Identity:
        """did:web:127.0.0.1%3A<port>: a port-encoded host, served by this world."""
        return self.new_web_identity(key_type, host=f"127.0.0.1:{self.http_port}")

    def rotate_key(self, ident: Identity, key_type: KeyType | None = None) -> Signer:
        """Give the identity a new #atproto key (as a PLC operation would)."""
        signer = Signer.generate(key_type or ident.signer.key_type)
        ident.signer = signer
        ident.doc["verificationMethod"][0]["publicKeyMultibase"] = signer.public_key.multibase
        return signer

    def publish_dns(self, handle: str, did: str) -> None:
        self.txt.setdefault(f"_atproto.{handle}", []).append(f"did={did}")

    def publish_https(self, handle: str, did: str) -> None:
        self.well_known[handle] = did

    # -- servers --------------------------------------------------------------

    def _answer(self, wire: bytes) -> bytes | None:
        try:
            query = dns.message.from_wire(wire)
        except Exception:  # noqa: BLE001 - a fixture answers garbage with silence
            return None
        response = dns.message.make_response(query)
        if not query.question:
            response.set_rcode(dns.rcode.FORMERR)
            return response.to_wire()
        q = query.question[0]
        name = q.name.to_text(omit_final_dot=True).lower()
        self.dns_queries[name] += 1
        if name in self.slow_dns:
            return None
        records = self.txt.get(name)
        if records is None:
            response.set_rcode(dns.rcode.NXDOMAIN)
        elif q.rdtype == dns.rdatatype.TXT:
            rrset = dns.rrset.from_text_list(
                q.name, 60, dns.rdataclass.IN, dns.rdatatype.TXT, [f'"{r}"' for r in records]
            )
            response.answer.append(rrset)
        return response.to_wire()

    def http_app(self) -> Starlette:
        async def handle(request: Request) -> Response:
            host = request.headers.get("host", "").lower()
            path = request.url.path
            self.http_requests[f"{host}{path}"] += 1
            if host in self.slow_http:
                await asyncio.Event().wait()
            if path.startswith("/plc/"):
                doc = self.plc_docs.get(path[len("/plc/") :])
                return JSONResponse(doc) if doc else PlainTextResponse("not found", 404)
            if path == "/.well-known/atproto-did" and host in self.well_known:
                return PlainTextResponse(self.well_known[host])
            if path == "/.well-known/did.json" and host in self.web_docs:
                return JSONResponse(self.web_docs[host])
            if path.endswith("/did.json"):
                key = host + path[: -len("/did.json")]
                if key in self.web_docs:
                    return JSONResponse(self.web_docs[key])
            return PlainTextResponse("not found", 404)

        return Starlette(routes=[Route("/{path:path}", handle)])


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, world: World) -> None:
        self.world = world
        self.transport: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        answer = self.world._answer(data)
        if answer is not None and self.transport is not None:
            self.transport.sendto(answer, addr)


@contextlib.asynccontextmanager
async def running_world() -> AsyncIterator[World]:
    world = World()
    loop = asyncio.get_running_loop()

    async def tcp_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                (size,) = struct.unpack("!H", await reader.readexactly(2))
                answer = world._answer(await reader.readexactly(size))
                if answer is None:
                    continue
                writer.write(struct.pack("!H", len(answer)) + answer)
                await writer.drain()
        writer.close()

    # DNS listens on UDP and TCP on one port: pick a UDP port, and try again
    # when its TCP twin is already taken (any loopback socket may hold it).
    for attempt in range(50):
        udp, _ = await loop.create_datagram_endpoint(
            lambda: _Udp(world), local_addr=("127.0.0.1", 0)
        )
        world.dns_port = udp.get_extra_info("sockname")[1]
        try:
            tcp = await asyncio.start_server(tcp_client, "127.0.0.1", world.dns_port)
        except OSError as e:
            udp.close()
            if e.errno != errno.EADDRINUSE or attempt == 49:
                raise
            continue
        break
    try:
        sock = bound_socket()
        world.http_port = sock.getsockname()[1]
        async with serve_app(world.http_app(), sock):
            yield world
    finally:
        udp.close()
        tcp.close()
        await tcp.wait_closed()

"""A local RFC 8030 push service for tests: checks VAPID, decrypts every push.

It plays the part of a browser vendor's push service *and* the browser: each
subscription it hands out has a P-256 key pair and an auth secret, so it can
decrypt what the router sends (RFC 8291 + RFC 8188 aes128gcm) and compare the
plaintext with what the test expects. It verifies the RFC 8292 VAPID JWT
(ES256 against the router's VAPID public key, `aud` = this endpoint's origin,
`exp` within 24 h, a `sub` contact) and refuses anything else with 401/403.
A test can script answers per subscription (410, 503, 429 ...).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import socket
import struct
import time
from collections import defaultdict, deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import uvicorn
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64u(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _hkdf(salt: bytes, ikm: bytes, info: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


def decrypt_aes128gcm(body: bytes, ua_private: ec.EllipticCurvePrivateKey, auth: bytes) -> bytes:
    """RFC 8291 section 3.4 / RFC 8188 section 2: the user agent's side."""
    salt = body[:16]
    (rs,) = struct.unpack(">I", body[16:20])
    idlen = body[20]
    as_public = body[21 : 21 + idlen]
    ciphertext = body[21 + idlen :]
    if idlen != 65 or rs < 18:
        raise ValueError("bad aes128gcm header")
    peer = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), as_public)
    ecdh_secret = ua_private.exchange(ec.ECDH(), peer)
    ua_public = ua_private.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    ikm = _hkdf(auth, ecdh_secret, b"WebPush: info\x00" + ua_public + as_public, 32)
    cek = _hkdf(salt, ikm, b"Content-Encoding: aes128gcm\x00", 16)
    nonce = _hkdf(salt, ikm, b"Content-Encoding: nonce\x00", 12)
    aead = AESGCM(cek)
    out = bytearray()
    records = [ciphertext[i : i + rs] for i in range(0, len(ciphertext), rs)]
    for seq, record in enumerate(records):
        iv = (int.from_bytes(nonce, "big") ^ seq).to_bytes(12, "big")
        plain = aead.decrypt(iv, record, None).rstrip(b"\x00")
        last = seq == len(records) - 1
        if not plain or plain[-1] != (2 if last else 1):
            raise ValueError("bad record padding delimiter")
        out += plain[:-1]
    return bytes(out)


@dataclass
class FakeDevice:
    """A browser's push subscription whose private half the test holds."""

    sub_id: str
    private_key: ec.EllipticCurvePrivateKey
    auth: bytes
    subscription: dict[str, Any]


@dataclass
class ReceivedPush:
    sub_id: str
    plaintext: bytes
    ttl: int
    urgency: str | None
    topic: str | None
    claims: dict[str, Any]


class PushEndpoint:
    """Serve with `async with endpoint.running():`; then `device()` and `received`."""

    def __init__(self, vapid_public_key: str) -> None:
        self.vapid_public_key = vapid_public_key
        self.url = ""
        self.devices: dict[str, FakeDevice] = {}
        self.scripts: dict[str, deque[int]] = defaultdict(deque)
        self.gone: set[str] = set()
        self.received: asyncio.Queue[ReceivedPush] = asyncio.Queue()
        self.attempts: dict[str, int] = defaultdict(int)
        self.refused: list[str] = []
        self.app = Starlette(routes=[Route("/push/{sub_id}", self._push, methods=["POST"])])

    def device(self) -> FakeDevice:
        sub_id = b64u(os.urandom(12))
        key = ec.generate_private_key(ec.SECP256R1())
        auth = os.urandom(16)
        public = key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        sub = {
            "endpoint": f"{self.url}/push/{sub_id}",
            "keys": {"p256dh": b64u(public), "auth": b64u(auth)},
        }
        dev = FakeDevice(sub_id, key, auth, sub)
        self.devices[sub_id] = dev
        return dev

    def answer(self, dev: FakeDevice, *statuses: int) -> None:
        """The next pushes to `dev` are answered with these statuses, then 201."""
        self.scripts[dev.sub_id].extend(statuses)

    def _check_vapid(self, header: str | None) -> dict[str, Any]:
        if not header or not header.startswith("vapid "):
            raise PermissionError("no vapid authorization")
        params = dict(p.strip().split("=", 1) for p in header[6:].split(","))
        if params.get("k") != self.vapid_public_key:
            raise PermissionError("k is not the router's VAPID key")
        head, payload, sig = params["t"].split(".")
        if json.loads(unb64u(head)) != {"typ": "JWT", "alg": "ES256"}:
            raise PermissionError("JWT header must say ES256")
        key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), unb64u(params["k"]))
        raw = unb64u(sig)
        der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
        try:
            key.verify(der, f"{head}.{payload}".encode(), ec.ECDSA(hashes.SHA256()))
        except InvalidSignature as e:
            raise PermissionError("bad VAPID signature") from e
        claims: dict[str, Any] = json.loads(unb64u(payload))
        if claims.get("aud") != self.url:
            raise PermissionError("aud is not this push service's origin")
        if not time.time() < claims["exp"] <= time.time() + 24 * 3600:
            raise PermissionError("exp out of range")
        if not str(claims.get("sub", "")).startswith(("mailto:", "https:")):
            raise PermissionError("sub must be a contact URI")
        return claims

    async def _push(self, request: Request) -> Response:
        sub_id = request.path_params["sub_id"]
        dev = self.devices.get(sub_id)
        if dev is None or sub_id in self.gone:
            return Response(status_code=410)
        self.attempts[sub_id] += 1
        try:
            claims = self._check_vapid(request.headers.get("authorization"))
        except (PermissionError, ValueError, KeyError) as e:
            self.refused.append(str(e))
            return Response(str(e), status_code=403)
        script = self.scripts[sub_id]
        if script:
            status = script.popleft()
            if status == 410:
                self.gone.add(sub_id)
            return Response(status_code=status)
        if request.headers.get("content-encoding") != "aes128gcm":
            self.refused.append("content-encoding")
            return Response(status_code=400)
        body = await request.body()
        plaintext = decrypt_aes128gcm(body, dev.private_key, dev.auth)
        self.received.put_nowait(
            ReceivedPush(
                sub_id,
                plaintext,
                int(request.headers["ttl"]),
                request.headers.get("urgency"),
                request.headers.get("topic"),
                claims,
            )
        )
        return Response(
            status_code=201, headers={"Location": f"{self.url}/m/{os.urandom(4).hex()}"}
        )

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[PushEndpoint]:
        async with serve(self.app) as url:
            self.url = url
            yield self


class _QuietServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Any:
        yield


@contextlib.asynccontextmanager
async def serve(app: Any, lifespan: str = "off") -> AsyncIterator[str]:
    """Serve an ASGI app on 127.0.0.1 port 0 until the block ends; yields its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sock.setblocking(False)
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, log_config=None, access_log=False, lifespan=lifespan, timeout_graceful_shutdown=1
    )
    server = _QuietServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:  # uvicorn exposes no start-up event
        if task.done():
            task.result()
            raise RuntimeError("server stopped during start-up")
        await asyncio.sleep(0.002)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()

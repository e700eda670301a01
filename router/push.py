"""Web Push: RFC 8291 payload encryption and RFC 8292 VAPID, sent with pywebpush.

Pieces, from the inside out:

- `PushSubscription`: a browser `PushSubscription` JSON, validated once.
- `VapidKey`: the router's P-256 VAPID key pair, created on first start under
  the data directory (mode 0600) and kept; the public half is what browsers
  pass as `applicationServerKey`.
- `PushSender` (Protocol) and `WebPushSender`: encrypt one message
  (pywebpush `WebPusher.encode`, aes128gcm), sign the VAPID JWT for the
  endpoint's origin (py_vapid `Vapid02`, cached per origin until near expiry)
  and POST it (httpx) with `TTL`, `Urgency` and `Topic`. The answer is
  classified: sent, gone (404/410: drop the subscription), retry (429/5xx,
  network errors) or failed.
- `PushQueue`: a bounded queue and a few workers. Retries wait on timers
  outside the queue, so one slow or failing push service never blocks other
  deliveries. When the queue is full, new pushes are dropped and counted;
  memory never grows with a backlog.

Nothing here logs payloads, keys or endpoint URLs (an endpoint URL is a
bearer capability for the device).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import enum
import hashlib
import hmac
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiohttp
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid02
from pywebpush import WebPusher

from router.urgency import PushUrgency

log = logging.getLogger("hearth.router.push")

# RFC 8292: the JWT's exp must be at most 24 h ahead; we sign for 12 h and
# re-sign an hour before that runs out.
VAPID_TTL_SECONDS = 12 * 3600
VAPID_REFRESH_SECONDS = 3600
MAX_TOPIC_LEN = 32  # RFC 8030 section 5.4
MAX_PUSH_TTL = 28 * 24 * 3600


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    if not isinstance(text, str) or not text.isascii():
        raise ValueError("base64url must be ASCII text")
    try:
        return base64.urlsafe_b64decode(text.rstrip("=") + "=" * (-len(text.rstrip("=")) % 4))
    except (binascii.Error, ValueError) as e:
        raise ValueError("invalid base64url") from e


class SubscriptionError(ValueError):
    """A PushSubscription JSON that cannot be used."""


@dataclass(frozen=True, slots=True)
class PushSubscription:
    """A validated browser PushSubscription (`endpoint`, `keys.p256dh`, `keys.auth`)."""

    endpoint: str
    p256dh: str  # base64url of the uncompressed P-256 point (65 bytes)
    auth: str  # base64url of the 16-byte auth secret

    MAX_ENDPOINT_LEN = 2048

    @classmethod
    def from_json(cls, obj: object, *, allow_insecure: bool = False) -> PushSubscription:
        """Parse and check; raises SubscriptionError with a message safe to return.

        Endpoints must be https unless `allow_insecure` (local development
        and tests), since the router POSTs to whatever is registered here.
        """
        if not isinstance(obj, Mapping):
            raise SubscriptionError("subscription must be a JSON object")
        endpoint = obj.get("endpoint")
        keys = obj.get("keys")
        if not isinstance(endpoint, str) or len(endpoint) > cls.MAX_ENDPOINT_LEN:
            raise SubscriptionError("subscription.endpoint must be a URL")
        parts = urlsplit(endpoint)
        schemes = ("https", "http") if allow_insecure else ("https",)
        if parts.scheme not in schemes or not parts.hostname:
            raise SubscriptionError(f"subscription.endpoint must be an {schemes[0]} URL")
        if not isinstance(keys, Mapping):
            raise SubscriptionError("subscription.keys must be an object")
        p256dh, auth = keys.get("p256dh"), keys.get("auth")
        try:
            if not isinstance(p256dh, str) or not isinstance(auth, str):
                raise ValueError("keys must be strings")
            point = b64url_decode(p256dh)
            secret = b64url_decode(auth)
            if len(point) != 65 or point[0] != 4 or len(secret) != 16:
                raise ValueError("wrong key length")
            ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
        except ValueError as e:
            raise SubscriptionError(
                "subscription.keys must hold a P-256 p256dh point and a 16-byte auth secret"
            ) from e
        return cls(endpoint, b64url(point), b64url(secret))

    def to_json(self) -> dict[str, Any]:
        return {"endpoint": self.endpoint, "keys": {"p256dh": self.p256dh, "auth": self.auth}}

    @property
    def origin(self) -> str:
        """The VAPID `aud`: scheme://host[:port] of the endpoint."""
        parts = urlsplit(self.endpoint)
        return f"{parts.scheme}://{parts.netloc}"


@dataclass(frozen=True, slots=True)
class PushMessage:
    subscription: PushSubscription
    payload: bytes
    ttl: int
    urgency: PushUrgency
    topic: str | None = None


def topic_for(secret: bytes, sender: str) -> str:
    """A `Topic` that collapses pushes per sender, unlinkable to the DID without `secret`."""
    digest = hmac.new(secret, sender.encode(), hashlib.sha256).digest()
    return b64url(digest)[:MAX_TOPIC_LEN]


class PushOutcome(enum.Enum):
    SENT = "sent"
    GONE = "gone"  # 404/410: the subscription is dead, remove it
    RETRY = "retry"  # 429/5xx/network: try again later
    FAILED = "failed"  # other 4xx: our request is wrong, do not retry


@dataclass(frozen=True, slots=True)
class PushResult:
    outcome: PushOutcome
    status: int | None = None
    retry_after: float | None = None


def classify(status: int, retry_after: str | None = None) -> PushResult:
    """Map a push service's HTTP status to what the queue must do."""
    if 200 <= status < 300:
        return PushResult(PushOutcome.SENT, status)
    if status in (404, 410):
        return PushResult(PushOutcome.GONE, status)
    if status == 429 or status >= 500:
        delay: float | None = None
        if retry_after is not None and retry_after.strip().isdigit():
            delay = float(retry_after.strip())
        return PushResult(PushOutcome.RETRY, status, delay)
    return PushResult(PushOutcome.FAILED, status)


class PushSender(Protocol):
    """Delivers one push. Implementations never raise for the push service's answers."""

    async def send(self, message: PushMessage) -> PushResult: ...

    async def aclose(self) -> None: ...


class VapidKey:
    """The router's VAPID key pair: `load_or_create` it once, keep it across restarts."""

    def __init__(self, private_key: ec.EllipticCurvePrivateKey, subject: str) -> None:
        self._vapid = Vapid02(private_key)
        self.subject = subject
        raw = private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        self.public_key = b64url(raw)  # applicationServerKey
        self._secret = hashlib.sha256(
            b"hearth.push.topic\0" + private_key.private_numbers().private_value.to_bytes(32, "big")
        ).digest()
        self._headers: dict[str, tuple[float, str]] = {}

    @classmethod
    def load_or_create(cls, path: Path, subject: str) -> VapidKey:
        """Read the PEM at `path`, or create it (0600, written atomically) on first start."""
        if path.exists():
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
            if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(
                key.curve, ec.SECP256R1
            ):
                raise ValueError(f"{path} is not a P-256 private key")
            return cls(key, subject)
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, pem)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        log.info("created a new VAPID key pair")
        return cls(key, subject)

    def topic(self, sender: str) -> str:
        return topic_for(self._secret, sender)

    def authorization(self, origin: str, now: float | None = None) -> str:
        """`Authorization: vapid t=<JWT>,k=<public key>` for `origin`, cached until near exp."""
        now = time.time() if now is None else now
        cached = self._headers.get(origin)
        if cached is not None and cached[0] - VAPID_REFRESH_SECONDS > now:
            return cached[1]
        exp = int(now) + VAPID_TTL_SECONDS
        headers = self._vapid.sign({"aud": origin, "exp": exp, "sub": self.subject})
        value = str(headers["Authorization"])
        if len(self._headers) > 1024:
            self._headers.clear()
        self._headers[origin] = (float(exp), value)
        return value


class WebPushSender:
    """`PushSender` over HTTP: pywebpush encryption, VAPID, an aiohttp keep-alive pool.

    aiohttp is pywebpush's own async transport. It was chosen over httpx
    because it scales with concurrent pushes here (httpx's pool got slower
    with more workers) and logs no request URLs: a push endpoint URL is a
    capability that must not reach the logs. The session is created on the
    first send, inside the running loop; call `aclose()` when done.
    """

    def __init__(self, vapid: VapidKey, *, timeout: float = 10.0) -> None:
        self.vapid = vapid
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    def build_request(self, message: PushMessage) -> tuple[str, dict[str, str], bytes]:
        """Encrypt and sign: (url, headers, body). Exposed for benchmarks and tests."""
        sub = message.subscription
        encoded = WebPusher(sub.to_json()).encode(message.payload, "aes128gcm")
        headers = {
            "TTL": str(max(0, min(message.ttl, MAX_PUSH_TTL))),
            "Urgency": message.urgency.value,
            "Content-Encoding": "aes128gcm",
            "Content-Type": "application/octet-stream",
            "Authorization": self.vapid.authorization(sub.origin),
        }
        if message.topic:
            headers["Topic"] = message.topic
        return sub.endpoint, headers, bytes(encoded["body"])

    async def send(self, message: PushMessage) -> PushResult:
        url, headers, body = self.build_request(message)
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        try:
            async with self._session.post(
                url, data=body, headers=headers, allow_redirects=False
            ) as response:
                await response.read()
                return classify(response.status, response.headers.get("retry-after"))
        except (aiohttp.ClientError, TimeoutError) as e:
            log.info("push transport error: %s", type(e).__name__)
            return PushResult(PushOutcome.RETRY)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


@dataclass
class PushStats:
    submitted: int = 0
    sent: int = 0
    gone: int = 0
    retried: int = 0
    failed: int = 0
    dropped: int = 0  # queue full, or out of attempts


@dataclass(slots=True)
class _Job:
    message: PushMessage
    attempt: int = 0


class PushQueue:
    """Bounded queue of pushes with workers and off-queue retry timers.

    Call `start()` inside the event loop, `submit()` from anywhere in it,
    `stop()` on shutdown. `on_gone(subscription)` is awaited for 404/410.
    """

    def __init__(
        self,
        sender: PushSender,
        *,
        maxsize: int = 10_000,
        workers: int = 4,
        max_attempts: int = 5,
        base_delay: float = 1.0,
        max_delay: float = 60.0,
        on_gone: Callable[[PushSubscription], Awaitable[None]] | None = None,
    ) -> None:
        self.sender = sender
        self.stats = PushStats()
        self._queue: asyncio.Queue[_Job] = asyncio.Queue(maxsize)
        self._workers_n = workers
        self._max_attempts = max_attempts
        self._base_delay = base_delay
        self._max_delay = max_delay
        self._on_gone = on_gone
        self._workers: list[asyncio.Task[None]] = []
        self._timers: set[asyncio.TimerHandle] = set()
        self._pending = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def start(self) -> None:
        for i in range(self._workers_n):
            self._workers.append(asyncio.create_task(self._work(), name=f"push-worker-{i}"))

    async def stop(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        for task in self._workers:
            task.cancel()
        for task in self._workers:
            try:
                await task
            except asyncio.CancelledError:
                pass
        self._workers.clear()

    @property
    def pending(self) -> int:
        """Pushes queued, being sent, or waiting for a retry."""
        return self._pending

    async def idle(self) -> None:
        """Wait until nothing is queued, in flight or waiting for a retry."""
        await self._idle.wait()

    def submit(self, message: PushMessage) -> bool:
        """Queue a push; False (and counted as dropped) when the queue is full."""
        self.stats.submitted += 1
        return self._put(_Job(message))

    def _put(self, job: _Job) -> bool:
        try:
            self._queue.put_nowait(job)
        except asyncio.QueueFull:
            self.stats.dropped += 1
            return False
        self._pending += 1
        self._idle.clear()
        return True

    def _finish(self) -> None:
        self._pending -= 1
        if self._pending == 0:
            self._idle.set()

    async def _work(self) -> None:
        while True:
            job = await self._queue.get()
            try:
                await self._deliver(job)
            except Exception:  # a bug in a callback must not kill the worker
                log.exception("push delivery failed")
            finally:
                self._queue.task_done()
                self._finish()

    async def _deliver(self, job: _Job) -> None:
        try:
            result = await self.sender.send(job.message)
        except Exception as e:  # encryption errors etc.: never retried
            log.warning("push could not be built: %s", type(e).__name__)
            self.stats.failed += 1
            return
        if result.outcome is PushOutcome.SENT:
            self.stats.sent += 1
        elif result.outcome is PushOutcome.GONE:
            self.stats.gone += 1
            if self._on_gone is not None:
                await self._on_gone(job.message.subscription)
        elif result.outcome is PushOutcome.FAILED:
            self.stats.failed += 1
            log.info("push refused with status %s", result.status)
        else:
            self._retry_later(job, result)

    def backoff(self, attempt: int, retry_after: float | None) -> float:
        """Seconds before retry number `attempt + 1`: exponential, jittered, capped."""
        if retry_after is not None:
            return min(self._max_delay, max(0.0, retry_after))
        base = min(self._max_delay, self._base_delay * float(2**attempt))
        return base * random.uniform(0.5, 1.0)

    def _retry_later(self, job: _Job, result: PushResult) -> None:
        if job.attempt + 1 >= self._max_attempts:
            self.stats.dropped += 1
            log.info("push given up after %d attempts (status %s)", job.attempt + 1, result.status)
            return
        self.stats.retried += 1
        delay = self.backoff(job.attempt, result.retry_after)
        retry = _Job(job.message, job.attempt + 1)
        # Counted as pending while the timer runs, so idle() waits for retries.
        self._pending += 1
        loop = asyncio.get_running_loop()

        def fire() -> None:
            self._timers.discard(handle)
            self._pending -= 1
            if not self._put(retry) and self._pending == 0:
                self._idle.set()

        handle = loop.call_later(delay, fire)
        self._timers.add(handle)

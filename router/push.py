"""Web Push: RFC 8291 payload encryption and RFC 8292 VAPID, sent with pywebpush.

Pieces, from the inside out:

- `PushSubscription`: a browser `PushSubscription` JSON, validated once.
- `VapidKey`: the router's P-256 VAPID key pair, created on first start under
  the data directory (mode 0600) and kept; the public half is what browsers
  pass as `applicationServerKey`.
- `PushSender` (Protocol) and `WebPushSender`: encrypt one message
  (pywebpush `WebPusher.encode`, aes128gcm), sign the VAPID JWT for the
  endpoint's origin (py_vapid `Vapid02`, cached per origin until near expiry)
  and POST it (aiohttp) with `TTL`, `Urgency` and `Topic`. The answer is
  classified: sent, gone (404/410: drop the subscription), retry (429/5xx,
  network errors) or failed. An endpoint whose host is not at a public
  address is refused without a request (see "Private addresses" below).
- `PushQueue`: sends what `router.push_queue.PushScheduler` picks, one task
  per push in flight. The scheduler is fair between push service origins and
  between recipient DIDs (round-robin), caps pushes in flight in all, per
  origin and per DID, opens a circuit on an origin that stops answering, and
  bounds pushes held in all and per DID; retries wait on timers outside the
  queues. So one DID's dead or slow endpoints never hold up anyone else's
  pushes, and memory never grows with a backlog (see docs/notifications.md
  for what a held push costs).

Private addresses: whoever registers a subscription chooses its endpoint,
so the router must not be made to POST into its operator's network (SSRF).
Unless `allow_private` (HEARTH_ALLOW_PRIVATE_HOSTS, for tests and LAN
installs), `PushSubscription.from_json` refuses hosts that are literal
non-public addresses, and `WebPushSender` refuses them again at send time
(registrations made before, or while the switch was on) and connects to a
host name only at the public addresses it resolved to (`router.push_dns`).
Such a push is `REFUSED`: dropped (`not_public`), never retried.

Nothing here logs payloads, keys or endpoint URLs (an endpoint URL is a
bearer capability for the device).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import enum
import hashlib
import hmac
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiohttp
import yarl
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from py_vapid import Vapid02
from pywebpush import WebPusher

from hearth.config import Option
from hearth.netguard import literal_refusal
from router.push_dns import HostNotPublic, PushResolver
from router.push_queue import Drop, Finish, PushLimits, PushScheduler, Ticket
from router.urgency import PushUrgency

log = logging.getLogger("hearth.router.push")

# RFC 8292: the JWT's exp must be at most 24 h ahead; we sign for 12 h and
# re-sign an hour before that runs out.
VAPID_TTL_SECONDS = 12 * 3600
VAPID_REFRESH_SECONDS = 3600
MAX_TOPIC_LEN = 32  # RFC 8030 section 5.4
MAX_PUSH_TTL = 28 * 24 * 3600
MAX_ANSWER_BYTES = 4096  # of a push service's response body, read and ignored


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
    def from_json(
        cls, obj: object, *, allow_insecure: bool = False, allow_private: bool = False
    ) -> PushSubscription:
        """Parse and check; raises SubscriptionError with a message safe to return.

        Endpoints must be https unless `allow_insecure` (local development
        and tests), and their host must not be a loopback, private or other
        non-public IP address unless `allow_private` (HEARTH_ALLOW_PRIVATE_HOSTS),
        since the router POSTs to whatever is registered here. Host names
        are checked when a push is sent, against what they resolve to then.
        """
        if not isinstance(obj, Mapping):
            raise SubscriptionError("subscription must be a JSON object")
        endpoint = obj.get("endpoint")
        keys = obj.get("keys")
        if not isinstance(endpoint, str) or len(endpoint) > cls.MAX_ENDPOINT_LEN:
            raise SubscriptionError("subscription.endpoint must be a URL")
        try:
            parts = urlsplit(endpoint)
        except ValueError:  # e.g. an unclosed `[`
            raise SubscriptionError("subscription.endpoint must be a URL") from None
        schemes = ("https", "http") if allow_insecure else ("https",)
        if parts.scheme not in schemes or not parts.hostname:
            raise SubscriptionError(f"subscription.endpoint must be an {schemes[0]} URL")
        if not allow_private and (refusal := literal_refusal(parts.hostname)) is not None:
            raise SubscriptionError(
                f"subscription.endpoint host {refusal}; push endpoints must be at public"
                " addresses (HEARTH_ALLOW_PRIVATE_HOSTS)"
            )
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

    @property
    def server(self) -> str:
        """scheme://host:port, normalised: what pushes are queued and cut off by.

        Without user info, host in lower case, the default port spelt out, so
        one server cannot pass for many (`HOST`, `host:443`, `a@host` ...).
        """
        parts = urlsplit(self.endpoint)
        host = (parts.hostname or "").lower()
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            port = 0
        if ":" in host:
            host = f"[{host}]"
        return f"{parts.scheme}://{host}:{port}"


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
    REFUSED = "refused"  # not sent: the endpoint is not at a public address


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
    capability that must not reach the logs. Host names are resolved by
    `router.push_dns.PushResolver` (asking `nameservers`, default the
    system's). Unless `allow_private`, a push goes to public addresses only:
    an IP-address host that is not public, or a name that resolves to no
    public address, is `REFUSED` without a connection. The session is
    created on the first send, inside the running loop; call `aclose()`
    when done.
    """

    def __init__(
        self,
        vapid: VapidKey,
        *,
        timeout: float = 10.0,
        nameservers: Sequence[tuple[str, int]] = (),
        allow_private: bool = False,
    ) -> None:
        self.vapid = vapid
        self.allow_private = allow_private
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._nameservers = tuple(nameservers)  # empty: /etc/resolv.conf's
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
        # Parsed as aiohttp parses it: the host checked is the host connected to.
        url = yarl.URL(message.subscription.endpoint)
        if not self.allow_private and literal_refusal(url.raw_host or "") is not None:
            log.info("push not sent: its endpoint is not at a public address")
            return PushResult(PushOutcome.REFUSED)
        _, headers, body = self.build_request(message)
        if self._session is None:
            # No pool limit of its own: the caller (PushQueue) caps pushes in
            # flight, in all and per origin; a second, shared limit here would
            # let a dead origin's requests queue in front of everyone else's.
            # Host names are looked up without threads (see router.push_dns),
            # and connected to only at the (public) addresses found.
            resolver = PushResolver(
                self._nameservers,
                timeout=self._timeout.total or 10.0,
                allow_private=self.allow_private,
            )
            connector = aiohttp.TCPConnector(limit=0, resolver=resolver)
            self._session = aiohttp.ClientSession(timeout=self._timeout, connector=connector)
        try:
            async with self._session.post(
                url, data=body, headers=headers, allow_redirects=False
            ) as response:
                # Only the status matters. Read a little so that the connection
                # can be reused; a longer body is not read (the connection is
                # closed instead): a push service must not fill our memory.
                await response.content.read(MAX_ANSWER_BYTES)
                return classify(response.status, response.headers.get("retry-after"))
        except aiohttp.ClientConnectorError as e:
            if isinstance(e.os_error, HostNotPublic):
                log.info("push not sent: its endpoint's name resolves to no public address")
                return PushResult(PushOutcome.REFUSED)
            log.info("push transport error: %s", type(e).__name__)
            return PushResult(PushOutcome.RETRY)
        except (aiohttp.ClientError, TimeoutError) as e:
            log.info("push transport error: %s", type(e).__name__)
            return PushResult(PushOutcome.RETRY)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


PUSH_QUEUE_OPTIONS = (
    Option("push_workers", int, 64, "pushes in flight at once, in all"),
    Option("push_per_origin", int, 16, "pushes in flight at once to one push service origin"),
    Option("push_per_did", int, 4, "pushes in flight at once for one recipient DID"),
    Option("push_failing_workers", int, 16, "pushes in flight at once to failing origins"),
    Option("push_queue", int, 10_000, "pushes held (queued/in flight/retrying) in all"),
    Option("push_queue_per_did", int, 500, "pushes held for one recipient DID"),
    Option("push_max_attempts", int, 5, "tries per push on 429/5xx/network errors"),
    Option("push_retry_base", float, 1.0, "first retry delay (seconds), doubling"),
    Option("push_timeout", float, 10.0, "time per push attempt (seconds)"),
    Option("push_breaker_failures", int, 5, "consecutive failures that open an origin's circuit"),
    Option("push_breaker_open", float, 30.0, "seconds a circuit first stays open, doubling"),
    Option("push_breaker_open_max", float, 600.0, "longest a circuit stays open (seconds)"),
)


def push_limits(options: Mapping[str, object]) -> PushLimits:
    """`PushLimits` from parsed `PUSH_QUEUE_OPTIONS` values (missing ones: their default)."""

    def get(name: str) -> float:
        value = options.get(name, defaults[name])
        if not isinstance(value, int | float):
            raise TypeError(f"push option {name} must be a number")
        return value

    defaults = {opt.name: opt.default for opt in PUSH_QUEUE_OPTIONS}
    return PushLimits(
        max_held=int(get("push_queue")),
        max_held_per_owner=int(get("push_queue_per_did")),
        concurrency=int(get("push_workers")),
        per_origin=int(get("push_per_origin")),
        per_owner=int(get("push_per_did")),
        failing_concurrency=int(get("push_failing_workers")),
        timeout=get("push_timeout"),
        max_attempts=int(get("push_max_attempts")),
        retry_base=get("push_retry_base"),
        breaker_failures=int(get("push_breaker_failures")),
        breaker_open=get("push_breaker_open"),
        breaker_open_max=get("push_breaker_open_max"),
    )


@dataclass
class PushStats:
    submitted: int = 0
    sent: int = 0
    gone: int = 0
    retried: int = 0
    failed: int = 0
    dropped: int = 0  # any reason: see `PushQueue.stats_dropped`
    collapsed: int = 0  # replaced by a newer push with the same Topic before it was sent


def _merge(queued: PushMessage, new: PushMessage) -> PushMessage:
    """The newer push replaces a queued one, at the more urgent of their urgencies."""
    order = list(PushUrgency)
    if order.index(queued.urgency) > order.index(new.urgency):
        return dataclasses.replace(new, urgency=queued.urgency)
    return new


class PushQueue:
    """Sends pushes as `router.push_queue.PushScheduler` decides, one task per push in flight.

    Call `start()` inside the event loop, `submit(message, owner)` from
    anywhere in it (`owner`: the DID whose registration it is), `stop()` on
    shutdown. `on_gone(subscription)` is awaited for 404/410. Each attempt
    is bounded by `limits.timeout`, whatever the sender does.
    """

    def __init__(
        self,
        sender: PushSender,
        limits: PushLimits | None = None,
        *,
        on_gone: Callable[[PushSubscription], Awaitable[None]] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sender = sender
        self.scheduler: PushScheduler[PushMessage] = PushScheduler(limits, merge=_merge)
        self.limits = self.scheduler.limits
        self._stats = PushStats()
        self._on_gone = on_gone
        self._clock = clock
        self._dispatcher: asyncio.Task[None] | None = None
        self._sending: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()

    def start(self) -> None:
        self._dispatcher = asyncio.create_task(self._dispatch(), name="push-dispatcher")

    async def stop(self) -> None:
        tasks = list(self._sending)
        if self._dispatcher is not None:
            tasks.append(self._dispatcher)
            self._dispatcher = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._sending.clear()

    @property
    def stats(self) -> PushStats:
        """Counters so far (`retried` and `dropped` come from the scheduler)."""
        self._stats.retried = self.scheduler.stats.retried
        self._stats.collapsed = self.scheduler.stats.collapsed
        self._stats.dropped = sum(self.scheduler.stats.dropped.values())
        return self._stats

    @property
    def pending(self) -> int:
        """Pushes queued, being sent, or waiting for a retry."""
        return self.scheduler.held

    @property
    def stats_dropped(self) -> dict[str, int]:
        """Dropped pushes by reason (`router.push_queue.Drop` values)."""
        counts = self.scheduler.stats.dropped
        return {reason.value: counts[reason] for reason in Drop}

    async def idle(self) -> None:
        """Wait until nothing is queued, in flight or waiting for a retry."""
        await self._idle.wait()

    def submit(self, message: PushMessage, owner: str) -> bool:
        """Hold a push for `owner`'s device; False (counted as dropped) when it is refused."""
        self._stats.submitted += 1
        sub = message.subscription
        # A newer push with the same Topic to the same device replaces a queued one,
        # as the push service itself would replace an undelivered one.
        collapse = (sub.endpoint, message.topic) if message.topic else None
        if self.scheduler.submit(message, sub.server, owner, self._clock(), collapse) is not None:
            return False
        self._idle.clear()
        self._wake.set()
        return True

    def _check_idle(self) -> None:
        if self.scheduler.held == 0 and not self._sending:
            self._idle.set()

    async def _dispatch(self) -> None:
        scheduler = self.scheduler
        while True:
            now = self._clock()
            try:
                while (ticket := scheduler.next(now)) is not None:
                    task = asyncio.create_task(self._send(ticket))
                    self._sending.add(task)
                    task.add_done_callback(self._sent)
            except Exception:  # a bug must not stop every push for good: log, go on
                log.exception("push scheduling failed")
            self._check_idle()  # retries fallen due for an open circuit are dropped
            self._wake.clear()
            deadline = scheduler.next_deadline()
            try:
                async with asyncio.timeout(None if deadline is None else max(0.0, deadline - now)):
                    await self._wake.wait()
            except TimeoutError:
                pass

    async def _send(self, ticket: Ticket[PushMessage]) -> None:
        try:
            await self._attempt(ticket)
        except Exception:  # a bug in a callback must not stop the queue
            log.exception("push delivery failed")

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._sending.discard(task)
        self._wake.set()
        self._check_idle()

    async def _attempt(self, ticket: Ticket[PushMessage]) -> None:
        message = ticket.item
        try:
            async with asyncio.timeout(self.limits.timeout):
                result = await self.sender.send(message)
        except TimeoutError:
            result = PushResult(PushOutcome.RETRY)
        except Exception as e:  # encryption errors etc.: never retried
            log.warning("push could not be built: %s", type(e).__name__)
            result = PushResult(PushOutcome.FAILED)
        outcome = result.outcome
        if outcome is PushOutcome.RETRY:
            finish = Finish.UNREACHABLE if result.status is None else Finish.RETRY
        elif outcome is PushOutcome.REFUSED:
            finish = Finish.REFUSED
        else:
            finish = Finish.DONE
        drop = self.scheduler.finish(ticket, finish, self._clock(), result.retry_after)
        if drop is not None:
            log.info("push given up: %s (status %s)", drop.value, result.status)
        if outcome is PushOutcome.SENT:
            self._stats.sent += 1
        elif outcome is PushOutcome.GONE:
            self._stats.gone += 1
            if self._on_gone is not None:
                await self._on_gone(message.subscription)
        elif outcome is PushOutcome.FAILED:
            self._stats.failed += 1
            log.info("push refused with status %s", result.status)

    def metrics(self, prefix: str = "hearth_router_push") -> Iterable[Metric]:
        """Prometheus families: outcomes, drops by reason, pending, in flight, circuits."""
        pushes = CounterMetricFamily(prefix + "es", "Web Push outcomes", labels=["outcome"])
        stats = self.stats
        for outcome in ("submitted", "sent", "gone", "retried", "failed", "dropped", "collapsed"):
            pushes.add_metric([outcome], getattr(stats, outcome))
        yield pushes
        dropped = CounterMetricFamily(
            prefix + "_dropped", "pushes dropped undelivered, by reason", labels=["reason"]
        )
        for reason, count in self.stats_dropped.items():
            dropped.add_metric([reason], count)
        yield dropped
        yield GaugeMetricFamily(
            prefix + "_pending", "pushes queued, in flight or waiting to retry", self.pending
        )
        yield GaugeMetricFamily(
            prefix + "_in_flight", "pushes being sent", self.scheduler.in_flight
        )
        yield CounterMetricFamily(
            prefix + "_circuit_trips",
            "times a push service origin's circuit opened",
            self.scheduler.stats.circuit_trips,
        )
        yield GaugeMetricFamily(
            prefix + "_circuits_open",
            "push service origins whose circuit is open",
            self.scheduler.circuits_open(self._clock()),
        )

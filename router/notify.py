"""Notifications: the mailbox and Web Push wired into the router.

`Notifications` owns the mailbox, the push registry, the VAPID key and the
push queue. `install()` registers the `mail`, `ack`, `device` and `notify`
handlers with `router.core.Router`; the router engineer's code does not
change per verb. Handlers run synchronously in the router's dispatch, so each
one copies what it needs and continues in a task; storage calls are queued
to the stores' threads in arrival order.

Devices: a connection says which device it is with `["device", deviceId]`
(see docs/notifications.md). A device is "online" for a DID while one of its
connections is open; mail for an offline device is pushed. Connections that
never say which device they are still get mail live, but stored mail only
waits for them if the recipient had no known device at all.

Receipts go to the sender's live connections; final receipts for a sender
with none are kept in the mailbox and sent after its next `device` frame.

Who may `notify` a document: when a membership check is installed
(`may_notify`, the space authority's readers/writers), whoever it says.
Without one, a DID related to the document as far as the router can tell:
one of its connections listens to the document (its presence is visible to
every other listener) or one of its devices is subscribed to the document's
pushes. Knowing an unguessable document id is what those prove, not
membership: see docs/notifications.md.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from hearth.config import Option, ServiceConfig, parse_bool
from hearth.storage import StorageHealth, StorageUnavailable
from hearth.types import ConnId, Did, DocumentId
from router.core import Connection, Router
from router.frames import encode_frame
from router.mailbox import (
    ANY_DEVICE,
    Mail,
    Mailbox,
    MsgIdConflict,
    PutResult,
    QuotaExceeded,
    Quotas,
    SqliteMailbox,
)
from router.notify_messages import Ack, DeviceHello, MailSend, Notify
from router.push import (
    PUSH_QUEUE_OPTIONS,
    PushMessage,
    PushQueue,
    PushSender,
    PushSubscription,
    VapidKey,
    WebPushSender,
    push_limits,
)
from router.push_queue import PushLimits
from router.push_store import PushRegistry, Registration, SqlitePushRegistry
from router.urgency import MailUrgency, push_urgency

log = logging.getLogger("hearth.router.notify")

# A sealed mail up to this size travels inside the push itself (RFC 8291
# leaves room for ~3,990 bytes in one 4096-byte record; keep a margin).
MAX_PUSH_PAYLOAD = 3000
# Push payloads that are not a sealed mail start with this, so a service
# worker can tell them apart (a sealed mail starting so has odds 2^-88).
HINT_PREFIX = '{"hearth":'


def _share(text: str) -> float:
    value = float(text)
    if not 0 < value <= 1:
        raise ValueError("must be more than 0 and at most 1")
    return value


OPTIONS = (
    Option("mail_max_ttl", int, 7 * 86400, "longest mail TTL accepted (seconds)"),
    Option("mail_max_bytes", int, 64 * 1024, "largest mail body (bytes)"),
    Option("mailbox_per_recipient", int, 1000, "undelivered mails kept per recipient DID"),
    Option("mailbox_per_sender", int, 1000, "undelivered mails kept per sender DID"),
    Option(
        "mailbox_recipient_bytes", int, 16 * 1024 * 1024, "undelivered body bytes per recipient"
    ),
    Option("mailbox_sender_bytes", int, 16 * 1024 * 1024, "undelivered body bytes per sender"),
    Option(
        "mailbox_share",
        _share,
        0.25,
        "fraction of one recipient's mails and bytes a single sender may hold",
    ),
    Option(
        "storage_busy_timeout",
        float,
        5.0,
        "seconds a mailbox/push write waits for a lock held by another process before failing",
    ),
    Option(
        "storage_probe_interval",
        float,
        5.0,
        "seconds between checks, while idle, that the mailbox/push files can be written"
        " (a lock held by another process shows in /xrpc/_health); 0: off",
    ),
    Option("mail_sweep_interval", float, 5.0, "seconds between mailbox expiry sweeps"),
    Option("mail_rate", float, 50.0, "mail/notify frames per second per connection"),
    Option("mail_burst", float, 200.0, "mail/notify frame burst per connection"),
    Option("push_subject", str, "mailto:admin@hearth.invalid", "VAPID contact (mailto: or https:)"),
    Option("push_allow_http", parse_bool, False, "accept http:// push endpoints (dev/tests only)"),
    *PUSH_QUEUE_OPTIONS,
)


# May `did` notify `doc`'s subscribers (is it one of the document's readers or
# writers)? When installed it decides alone, instead of the router's own rule
# (listening or subscribed); False refuses with `not_member`.
MayNotify = Callable[[Did, DocumentId], Awaitable[bool]]


@dataclass(frozen=True, slots=True)
class NotifySettings:
    mail_max_ttl: int = 7 * 86400
    mail_max_bytes: int = 64 * 1024
    quotas: Quotas = Quotas()
    sweep_interval: float = 5.0
    mail_rate: tuple[float, float] = (50.0, 200.0)
    push_subject: str = "mailto:admin@hearth.invalid"
    push_allow_http: bool = False
    # HEARTH_ALLOW_PRIVATE_HOSTS: push endpoints at loopback/private addresses (tests, LANs)
    allow_private_hosts: bool = False
    push: PushLimits = PushLimits()
    storage_busy_timeout: float = 5.0
    storage_probe_interval: float = 5.0

    @classmethod
    def from_config(cls, config: ServiceConfig) -> NotifySettings:
        opts = {opt.name: config.options.get(opt.name, opt.default) for opt in OPTIONS}

        def num(name: str) -> float:
            value = opts[name]
            if not isinstance(value, int | float):
                raise TypeError(f"router option {name} must be a number")
            return value

        return cls(
            mail_max_ttl=int(num("mail_max_ttl")),
            mail_max_bytes=int(num("mail_max_bytes")),
            quotas=Quotas(
                int(num("mailbox_per_recipient")),
                int(num("mailbox_per_sender")),
                int(num("mailbox_recipient_bytes")),
                int(num("mailbox_sender_bytes")),
                num("mailbox_share"),
            ),
            sweep_interval=num("mail_sweep_interval"),
            mail_rate=(num("mail_rate"), num("mail_burst")),
            push_subject=str(opts["push_subject"]),
            push_allow_http=bool(opts["push_allow_http"]),
            allow_private_hosts=config.settings.allow_private_hosts,
            push=push_limits(opts),
            storage_busy_timeout=num("storage_busy_timeout"),
            storage_probe_interval=num("storage_probe_interval"),
        )


@dataclass
class MailStats:
    stored: int = 0
    duplicates: int = 0
    delivered: int = 0
    expired: int = 0
    refused: int = 0  # quota or msgId conflict
    notifies: int = 0  # `notify` frames accepted (the sender may notify the document)


class NotifyMetrics(Collector):
    """Prometheus collector; `get()` gives the running `Notifications` (None: nothing yet)."""

    def __init__(self, get: Callable[[], Notifications | None]) -> None:
        self._get = get

    def collect(self) -> Iterable[Metric]:
        n = self._get()
        if n is None:
            return
        mail = n.stats
        yield CounterMetricFamily("hearth_router_mail_stored", "mails stored", mail.stored)
        yield CounterMetricFamily(
            "hearth_router_mail_duplicates", "resent mails recognised", mail.duplicates
        )
        yield CounterMetricFamily(
            "hearth_router_mail_delivered", "mails acked by every device", mail.delivered
        )
        yield CounterMetricFamily(
            "hearth_router_mail_expired", "mails expired undelivered", mail.expired
        )
        yield CounterMetricFamily(
            "hearth_router_mail_refused", "mails refused (quota, msgId conflict)", mail.refused
        )
        yield CounterMetricFamily("hearth_router_notifies", "notify frames accepted", mail.notifies)
        yield from n.push.metrics("hearth_router_push")
        yield GaugeMetricFamily(
            "hearth_router_device_connections",
            "connections that said which device they are",
            n.tracked_connections(),
        )


def _hint(kind: str, **fields: Any) -> bytes:
    return json.dumps({"hearth": kind, **fields}, separators=(",", ":")).encode()


class Notifications:
    """Mailbox + push behind the router's verbs. `open`, `install`, later `aclose`."""

    def __init__(
        self,
        router: Router,
        mailbox: Mailbox,
        registry: PushRegistry,
        vapid: VapidKey,
        sender: PushSender,
        settings: NotifySettings,
        *,
        clock: Callable[[], float] = time.time,
        may_notify: MayNotify | None = None,
    ) -> None:
        self.router = router
        # The membership check of whoever knows (e.g. the space authority);
        # None: the router's own rule (listening or subscribed) decides.
        self.may_notify = may_notify
        self.mailbox = mailbox
        self.registry = registry
        self.vapid = vapid
        self.settings = settings
        self.clock = clock
        self.push = PushQueue(sender, settings.push, on_gone=self._gone)
        self._sender = sender
        self.stats = MailStats()
        self.metrics = NotifyMetrics(lambda: self)
        self._conn_device: dict[ConnId, tuple[Did, str]] = {}
        self._online: dict[tuple[Did, str], set[ConnId]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._sweeper: asyncio.Task[None] | None = None

    @classmethod
    async def open(
        cls, config: ServiceConfig, router: Router, *, clock: Callable[[], float] = time.time
    ) -> Notifications:
        """Open the stores under `<data-dir>/router/` and create (once) the VAPID key."""
        settings = NotifySettings.from_config(config)
        base: Path = config.service_dir
        vapid = await asyncio.to_thread(
            VapidKey.load_or_create, base / "vapid_private.pem", settings.push_subject
        )
        busy, probe = settings.storage_busy_timeout, settings.storage_probe_interval
        mailbox = await SqliteMailbox.open(
            base / "mailbox.sqlite3",
            settings.quotas,
            clock,
            busy_timeout=busy,
            probe_interval=probe,
        )
        registry = await SqlitePushRegistry.open(
            base / "push.sqlite3", clock=clock, busy_timeout=busy, probe_interval=probe
        )
        sender = WebPushSender(
            vapid,
            timeout=settings.push.timeout,
            nameservers=config.settings.dns_nameservers,
            allow_private=settings.allow_private_hosts,
        )
        return cls(router, mailbox, registry, vapid, sender, settings, clock=clock)

    def install(self) -> None:
        """Register the verb handlers and start the push workers and the expiry sweeper."""
        rate = self.settings.mail_rate
        self.router.register(MailSend, self._on_mail, rate=rate)
        self.router.register(Notify, self._on_notify, rate=rate)
        self.router.register(Ack, self._on_ack)
        self.router.register(DeviceHello, self._on_device)
        self.push.start()
        self._sweeper = asyncio.create_task(self._sweep_loop(), name="mailbox-sweeper")

    async def aclose(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        await self.push.stop()
        await self._sender.aclose()
        await self.mailbox.close()
        await self.registry.close()

    async def idle(self) -> None:
        """Wait until no frame is being processed and no push is queued or retrying."""
        while True:
            await self._idle.wait()
            await self.push.idle()
            if self._idle.is_set() and self.push.pending == 0:
                return

    # ------------------------------------------------------------ bookkeeping

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        self._idle.clear()
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        error = None if task.cancelled() else task.exception()
        if isinstance(error, StorageUnavailable):  # health says so; no traceback per mail
            log.warning("notification task failed: %s", error)
        elif error is not None:
            log.error("notification task failed", exc_info=error)
        if not self._tasks:
            self._idle.set()

    def storage_healths(self) -> list[StorageHealth]:
        """The mailbox's and the push registry's state, for `/xrpc/_health`."""
        return [self.mailbox.health, self.registry.health]

    def device_of(self, conn: Connection) -> str | None:
        entry = self._conn_device.get(conn.conn_id)
        return entry[1] if entry is not None else None

    def is_online(self, did: Did, device: str) -> bool:
        conns = self._online.get((did, device))
        if not conns:
            return False
        live = self.router.connections
        for conn_id in list(conns):
            if conn_id not in live:
                conns.discard(conn_id)
                self._conn_device.pop(conn_id, None)
        if not conns:
            del self._online[(did, device)]
            return False
        return True

    def prune(self) -> None:
        """Forget connections the router has closed (called by the sweeper)."""
        for key in list(self._online):
            self.is_online(*key)
        live = self.router.connections
        for conn_id in [c for c in self._conn_device if c not in live]:
            del self._conn_device[conn_id]

    def listens(self, did: Did, doc: DocumentId) -> bool:
        """True if one of `did`'s live connections listens to `doc`."""
        return any(doc in c.interests for c in self.router.by_did.get(did, {}).values())

    def tracked_connections(self) -> int:
        return len(self._conn_device)

    def _receipt(self, did: Did, msg_id: str, status: str, only: Connection | None = None) -> None:
        """Send a receipt to `only`, or to every live connection of `did`.

        A final receipt (delivered, expired) for a sender with no live
        connection is kept and sent when one of its devices next says `device`.
        """
        frame = encode_frame(["receipt", msg_id, status])
        if only is not None:
            self.router.write(only, frame)
            return
        conns = list(self.router.by_did.get(did, {}).values())
        for conn in conns:
            self.router.write(conn, frame)
        if not conns:
            keep_until = int(self.clock() * 1000) + self.settings.mail_max_ttl * 1000
            self._spawn(self.mailbox.put_receipt(did, msg_id, status, keep_until))

    # ------------------------------------------------------------ verbs

    def _on_device(self, conn: Connection, msg: DeviceHello, _body: memoryview) -> None:
        known = self._conn_device.get(conn.conn_id)
        if known is not None:
            if known[1] != msg.device:
                self.router.error(conn, "bad_device", "device already set", "device")
            return
        self._conn_device[conn.conn_id] = (conn.did, msg.device)
        self._online.setdefault((conn.did, msg.device), set()).add(conn.conn_id)
        self._spawn(self._device(conn, msg.device))

    async def _device(self, conn: Connection, device: str) -> None:
        # pending() first: it is queued to the store before anything this
        # connection sends next, so waiting mail precedes later answers.
        limit = self.settings.quotas.per_recipient
        try:
            waiting = await self.mailbox.pending(conn.did, device, limit)
        except StorageUnavailable as e:
            # Forget the device so that the client may say `device` again later.
            self._conn_device.pop(conn.conn_id, None)
            self._online.get((conn.did, device), set()).discard(conn.conn_id)
            self.router.error(conn, "storage_unavailable", str(e), "device", abuse=False)
            return
        for mail in waiting:
            self.router.write(conn, _delivery(mail))
        await self.mailbox.add_device(conn.did, device)
        for msg_id, status in await self.mailbox.take_receipts(conn.did):
            self.router.write(conn, encode_frame(["receipt", msg_id, status]))

    def _on_mail(self, conn: Connection, msg: MailSend, body: memoryview) -> None:
        s = self.settings
        if not 0 < msg.ttl <= s.mail_max_ttl:
            self.router.error(
                conn, "bad_ttl", f"ttlSeconds must be 1..{s.mail_max_ttl}", "mail", abuse=False
            )
            return
        if len(body) > s.mail_max_bytes:
            self.router.error(
                conn, "too_large", f"mail body over {s.mail_max_bytes} bytes", "mail", abuse=False
            )
            return
        now = int(self.clock() * 1000)
        mail = Mail(
            conn.did, msg.to_did, msg.msg_id, now, now + msg.ttl * 1000, msg.urgency, bytes(body)
        )
        self._spawn(self._mail(conn, mail))

    async def _mail(self, conn: Connection, mail: Mail) -> None:
        try:
            result = await self.mailbox.put(mail)
        except QuotaExceeded as e:
            self.stats.refused += 1
            self.router.error(conn, "quota_exceeded", str(e), "mail", abuse=False)
            return
        except MsgIdConflict as e:
            self.stats.refused += 1
            self.router.error(conn, "msg_id_conflict", str(e), "mail", abuse=False)
            return
        except StorageUnavailable as e:
            self.router.error(conn, "storage_unavailable", str(e), "mail", abuse=False)
            return
        if result is not PutResult.STORED:
            self.stats.duplicates += 1
        if result is PutResult.ALREADY_DELIVERED:
            self._receipt(mail.sender, mail.msg_id, "delivered", only=conn)
            return
        self._receipt(mail.sender, mail.msg_id, "stored", only=conn)
        if result is PutResult.DUPLICATE:
            return
        self.stats.stored += 1
        frame = _delivery(mail)
        for target in list(self.router.by_did.get(mail.recipient, {}).values()):
            if target is not conn:
                self.router.write(target, frame)
        own_device = self.device_of(conn)
        if mail.sender == mail.recipient and own_device is not None:
            # Mail to one's own other devices: the sending device already has it.
            await self._ack(mail.sender, own_device, mail.msg_id)
        await self._push_mail(mail)

    async def _push_mail(self, mail: Mail) -> None:
        registrations = await self.registry.registrations(mail.recipient)
        if not registrations:
            return
        waiting = await self.mailbox.waiting_devices(mail)
        if len(mail.body) <= MAX_PUSH_PAYLOAD:
            payload = mail.body
        else:
            payload = _hint("mail", **{"from": mail.sender, "msgId": mail.msg_id})
        ttl = mail.ttl_left(int(self.clock() * 1000))
        topic = self.vapid.topic(mail.sender)
        anyone = ANY_DEVICE in waiting
        for reg in registrations:
            if not (anyone or reg.device in waiting) or self.is_online(reg.did, reg.device):
                continue
            self._submit(reg, mail.urgency, payload, ttl, topic)

    def _submit(
        self, reg: Registration, urgency: MailUrgency, payload: bytes, ttl: int, topic: str
    ) -> None:
        header = push_urgency(reg.level, urgency)
        if header is None or ttl <= 0:
            return
        self.push.submit(PushMessage(reg.subscription, payload, ttl, header, topic), reg.did)

    def _on_ack(self, conn: Connection, msg: Ack, _body: memoryview) -> None:
        self._spawn(self._client_ack(conn, msg.msg_id))

    async def _client_ack(self, conn: Connection, msg_id: str) -> None:
        try:
            await self._ack(conn.did, self.device_of(conn), msg_id)
        except StorageUnavailable as e:  # the mail stays pending: the client may ack again
            self.router.error(conn, "storage_unavailable", str(e), "ack", abuse=False)

    async def _ack(self, did: Did, device: str | None, msg_id: str) -> None:
        for mail in await self.mailbox.ack(did, device, msg_id):
            self.stats.delivered += 1
            self._receipt(mail.sender, mail.msg_id, "delivered")

    def _on_notify(self, conn: Connection, msg: Notify, body: memoryview) -> None:
        if len(body) > MAX_PUSH_PAYLOAD // 2:
            self.router.error(
                conn, "too_large", f"notify body over {MAX_PUSH_PAYLOAD // 2} bytes", "notify",
                abuse=False,
            )  # fmt: skip
            return
        fields: dict[str, Any] = {"doc": msg.doc, "from": conn.did, "urgency": msg.urgency.value}
        if body:
            fields["body"] = base64.b64encode(body).decode()
        self._spawn(self._notify(conn, msg, _hint("notify", **fields)))

    async def _notify(self, conn: Connection, msg: Notify, payload: bytes) -> None:
        sender_device = self.device_of(conn)
        try:
            subscribers = await self.registry.doc_subscribers(msg.doc)
        except StorageUnavailable as e:
            self.router.error(conn, "storage_unavailable", str(e), "notify", abuse=False)
            return
        if self.may_notify is not None:
            allowed = await self.may_notify(conn.did, msg.doc)
        else:
            allowed = self.listens(conn.did, msg.doc) or any(r.did == conn.did for r in subscribers)
        if not allowed:
            self.router.error(
                conn, "not_member",
                "notify needs a connection of yours listening to the document or a push "
                "subscription of yours to it", "notify", abuse=False,
            )  # fmt: skip
            return
        self.stats.notifies += 1
        seen: set[str] = set()
        topic = self.vapid.topic("doc\0" + msg.doc)
        for reg in subscribers:
            if reg.did == conn.did or reg.device == sender_device:
                continue
            endpoint = reg.subscription.endpoint
            if endpoint in seen or self.is_online(reg.did, reg.device):
                continue
            seen.add(endpoint)
            self._submit(reg, msg.urgency, payload, 86400, topic)

    # ------------------------------------------------------------ background

    async def _gone(self, subscription: PushSubscription) -> None:
        removed = await self.registry.remove_endpoint(subscription.endpoint)
        log.info("push subscription gone; removed %d registration(s)", removed)

    async def sweep(self) -> None:
        """Expire mail (telling senders) and forget closed connections."""
        for mail in await self.mailbox.expire(int(self.clock() * 1000)):
            self.stats.expired += 1
            self._receipt(mail.sender, mail.msg_id, "expired")
        self.prune()

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.sweep_interval)
            try:
                await self.sweep()
            except StorageUnavailable as e:  # health says so; the store retries by itself
                log.warning("mailbox sweep skipped: %s", e)
            except Exception:
                log.exception("mailbox sweep failed")


def _delivery(mail: Mail) -> bytes:
    return encode_frame(
        ["mail", mail.sender, mail.msg_id, mail.sent_at, mail.urgency.value], mail.body
    )

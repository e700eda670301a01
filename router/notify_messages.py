"""Typed frames of the notification verbs (see docs/notifications.md).

client -> router:
  `["mail", toDid, msgId, ttlSeconds, urgency]` + sealed body
  `["ack", msgId]`
  `["device", deviceId]` (once per connection: which device this is)
  `["notify", docId, urgency]` + optional opaque body
router -> client:
  `["mail", fromDid, msgId, sentAt, urgency]` + sealed body
  `["receipt", msgId, "stored" | "delivered" | "expired"]`

Importing this module registers the parsers with `router.messages`; the
handlers come from `router.notify.Notifications.install`. A router without
them answers these verbs with `unknown_verb`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar

from hearth.types import Did, DocumentId
from router.messages import CLIENT_MESSAGES, SERVER_MESSAGES, MessageError
from router.urgency import MailUrgency

MAX_MSG_ID_LENGTH = 128
MAX_DEVICE_LENGTH = 128
DEVICE_RE = re.compile(r"[A-Za-z0-9._~-]+")
RECEIPT_STATUSES = ("stored", "delivered", "expired")


def _arity(header: list[Any], verb: str, n: int) -> None:
    if len(header) != n:
        raise MessageError(
            "bad_arity", f"{verb} takes {n - 1} arguments, got {len(header) - 1}", verb
        )


def _text(value: Any, verb: str, what: str, limit: int) -> str:
    if type(value) is not str or not value or len(value) > limit:
        raise MessageError("bad_type", f"{verb}: {what} must be a string of 1..{limit}", verb)
    return value


def _urgency(value: Any, verb: str) -> MailUrgency:
    try:
        return MailUrgency(value)
    except ValueError:
        raise MessageError(
            "bad_type", f"{verb}: urgency must be one of quiet, normal, ping, urgent", verb
        ) from None


def _int(value: Any, verb: str, what: str) -> int:
    if type(value) is not int:
        raise MessageError("bad_type", f"{verb}: {what} must be an integer", verb)
    return value


def device_id(value: Any, verb: str = "device") -> str:
    text = _text(value, verb, "deviceId", MAX_DEVICE_LENGTH)
    if not DEVICE_RE.fullmatch(text):
        raise MessageError("bad_type", f"{verb}: deviceId must match [A-Za-z0-9._~-]+", verb)
    return text


@dataclass(frozen=True, slots=True)
class MailSend:
    """`["mail", toDid, msgId, ttlSeconds, urgency]` + body, client -> router."""

    VERB: ClassVar[str] = "mail"
    to_did: Did
    msg_id: str
    ttl: int
    urgency: MailUrgency

    @classmethod
    def from_header(cls, header: list[Any]) -> MailSend:
        _arity(header, "mail", 5)
        return cls(
            Did(_text(header[1], "mail", "toDid", 2048)),
            _text(header[2], "mail", "msgId", MAX_MSG_ID_LENGTH),
            _int(header[3], "mail", "ttlSeconds"),
            _urgency(header[4], "mail"),
        )

    def to_header(self) -> list[Any]:
        return ["mail", self.to_did, self.msg_id, self.ttl, self.urgency.value]


@dataclass(frozen=True, slots=True)
class Ack:
    """`["ack", msgId]`: this connection's device has the mail."""

    VERB: ClassVar[str] = "ack"
    msg_id: str

    @classmethod
    def from_header(cls, header: list[Any]) -> Ack:
        _arity(header, "ack", 2)
        return cls(_text(header[1], "ack", "msgId", MAX_MSG_ID_LENGTH))

    def to_header(self) -> list[Any]:
        return ["ack", self.msg_id]


@dataclass(frozen=True, slots=True)
class DeviceHello:
    """`["device", deviceId]`: names this connection's device; waiting mail follows."""

    VERB: ClassVar[str] = "device"
    device: str

    @classmethod
    def from_header(cls, header: list[Any]) -> DeviceHello:
        _arity(header, "device", 2)
        return cls(device_id(header[1]))

    def to_header(self) -> list[Any]:
        return ["device", self.device]


@dataclass(frozen=True, slots=True)
class Notify:
    """`["notify", docId, urgency]` + optional body: push the document's offline subscribers."""

    VERB: ClassVar[str] = "notify"
    doc: DocumentId
    urgency: MailUrgency

    @classmethod
    def from_header(cls, header: list[Any]) -> Notify:
        _arity(header, "notify", 3)
        return cls(
            DocumentId(_text(header[1], "notify", "docId", 2048)), _urgency(header[2], "notify")
        )

    def to_header(self) -> list[Any]:
        return ["notify", self.doc, self.urgency.value]


@dataclass(frozen=True, slots=True)
class MailDelivery:
    """`["mail", fromDid, msgId, sentAt, urgency]` + body, router -> client (sentAt in ms)."""

    VERB: ClassVar[str] = "mail"
    from_did: Did
    msg_id: str
    sent_at: int
    urgency: MailUrgency
    body: bytes = b""

    @classmethod
    def from_header(cls, header: list[Any], body: bytes = b"") -> MailDelivery:
        _arity(header, "mail", 5)
        return cls(
            Did(_text(header[1], "mail", "fromDid", 2048)),
            _text(header[2], "mail", "msgId", MAX_MSG_ID_LENGTH),
            _int(header[3], "mail", "sentAt"),
            _urgency(header[4], "mail"),
            body,
        )

    def to_header(self) -> list[Any]:
        return ["mail", self.from_did, self.msg_id, self.sent_at, self.urgency.value]


@dataclass(frozen=True, slots=True)
class Receipt:
    """`["receipt", msgId, status]`, router -> the sender's connections."""

    VERB: ClassVar[str] = "receipt"
    msg_id: str
    status: str

    @classmethod
    def from_header(cls, header: list[Any]) -> Receipt:
        _arity(header, "receipt", 3)
        status = header[2]
        if status not in RECEIPT_STATUSES:
            raise MessageError("bad_type", "receipt: unknown status", "receipt")
        return cls(_text(header[1], "receipt", "msgId", MAX_MSG_ID_LENGTH), status)

    def to_header(self) -> list[Any]:
        return ["receipt", self.msg_id, self.status]


CLIENT_MESSAGES.update(
    {
        MailSend.VERB: MailSend.from_header,
        Ack.VERB: Ack.from_header,
        DeviceHello.VERB: DeviceHello.from_header,
        Notify.VERB: Notify.from_header,
    }
)
# `mail` deliveries carry a body, so `parse_server_message` would drop it;
# clients decode them with `parse_mail_delivery`. Receipts have no body.
SERVER_MESSAGES[Receipt.VERB] = Receipt.from_header


def parse_mail_delivery(header: list[Any], body: bytes) -> MailDelivery:
    return MailDelivery.from_header(header, body)

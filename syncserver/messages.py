"""The automerge-repo WebSocket messages as types, and their CBOR codec.

Every binary frame is one CBOR map with a `type` field, exactly what
`@automerge/automerge-repo-network-websocket` sends. `decode_message` turns a
frame into one of the frozen dataclasses below or raises `MessageError`; it is
the only place that sees raw CBOR, so the rest of the server never handles
dicts. CBOR `undefined` (cbor-x writes it for absent optional fields) is read as
"absent". Unknown message types decode to `UnknownMessage` so a newer client's
extensions are ignored rather than refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cbor2

from hearth.base58 import Base58Error, b58check_decode
from hearth.types import DocumentId

PROTOCOL_VERSION = "1"

# Longest peer, session and storage id we accept; JS ids are ~20-40 characters.
MAX_ID_LENGTH = 256
MAX_LIST_LENGTH = 1024
# Most CBOR items (every map, array, key and value counts one) and nesting depth a
# frame may hold. A real message has a few dozen items; each decoded item costs
# 30-70 bytes of Python objects however small its encoding, so the item count, not
# the frame length, is what bounds decoding memory.
MAX_CBOR_ITEMS = 16_384
MAX_CBOR_DEPTH = 16


class MessageError(ValueError):
    """A frame that is not a well-formed automerge-repo message."""


@dataclass(frozen=True, slots=True)
class PeerMetadata:
    storage_id: str | None = None
    is_ephemeral: bool = True


@dataclass(frozen=True, slots=True)
class JoinMessage:
    sender_id: str
    peer_metadata: PeerMetadata
    supported_protocol_versions: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PeerMessage:
    sender_id: str
    target_id: str
    peer_metadata: PeerMetadata
    selected_protocol_version: str = PROTOCOL_VERSION


@dataclass(frozen=True, slots=True)
class ErrorMessage:
    sender_id: str
    target_id: str
    message: str
    document_id: DocumentId | None = None


@dataclass(frozen=True, slots=True)
class SyncMessage:
    """`sync`, or `request` (sent by a peer with no copy of the document)."""

    sender_id: str
    target_id: str
    document_id: DocumentId
    data: bytes
    is_request: bool = False


@dataclass(frozen=True, slots=True)
class DocUnavailableMessage:
    sender_id: str
    target_id: str
    document_id: DocumentId


@dataclass(frozen=True, slots=True)
class EphemeralMessage:
    sender_id: str
    target_id: str
    document_id: DocumentId
    session_id: str
    count: int
    data: bytes


@dataclass(frozen=True, slots=True)
class RemoteSubscriptionChange:
    sender_id: str
    target_id: str
    add: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RemoteHeads:
    heads: tuple[str, ...]
    timestamp: int


@dataclass(frozen=True, slots=True)
class RemoteHeadsChanged:
    sender_id: str
    target_id: str
    document_id: DocumentId
    new_heads: dict[str, RemoteHeads]


@dataclass(frozen=True, slots=True)
class UnknownMessage:
    """A message type this server does not know; ignored."""

    type: str


Message = (
    JoinMessage
    | PeerMessage
    | ErrorMessage
    | SyncMessage
    | DocUnavailableMessage
    | EphemeralMessage
    | RemoteSubscriptionChange
    | RemoteHeadsChanged
    | UnknownMessage
)


def parse_document_id(value: object) -> DocumentId:
    """A bs58check-encoded 16-byte document id, or MessageError."""
    if not isinstance(value, str) or not 0 < len(value) <= 64:
        raise MessageError("documentId must be a short string")
    try:
        raw = b58check_decode(value)
    except Base58Error as e:
        raise MessageError(f"documentId is not bs58check: {e}") from e
    if len(raw) != 16:
        raise MessageError("documentId must encode 16 bytes")
    return DocumentId(value)


class _Fields:
    """Typed access to the fields of one decoded map; `undefined` counts as absent."""

    def __init__(self, raw: dict[Any, Any]) -> None:
        self.raw = raw

    def get(self, name: str) -> object:
        value = self.raw.get(name)
        return None if value is cbor2.undefined else value

    def text(self, name: str, *, optional: bool = False) -> str | None:
        value = self.get(name)
        if value is None and optional:
            return None
        if not isinstance(value, str) or not value or len(value) > MAX_ID_LENGTH:
            raise MessageError(f"{name} must be a non-empty string")
        return value

    def req_text(self, name: str) -> str:
        value = self.text(name)
        assert value is not None
        return value

    def blob(self, name: str) -> bytes:
        value = self.get(name)
        if not isinstance(value, bytes):
            raise MessageError(f"{name} must be a byte string")
        return value

    def integer(self, name: str) -> int:
        value = self.get(name)
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**53:
            raise MessageError(f"{name} must be a non-negative integer")
        return value

    def texts(self, name: str) -> tuple[str, ...]:
        value = self.get(name)
        if value is None:
            return ()
        if not isinstance(value, list) or len(value) > MAX_LIST_LENGTH:
            raise MessageError(f"{name} must be a list of strings")
        for item in value:
            if not isinstance(item, str) or not item or len(item) > MAX_ID_LENGTH:
                raise MessageError(f"{name} must be a list of strings")
        return tuple(value)

    def document_id(self) -> DocumentId:
        return parse_document_id(self.get("documentId"))


def _peer_metadata(value: object) -> PeerMetadata:
    if value is None or value is cbor2.undefined:
        return PeerMetadata()
    if not isinstance(value, dict):
        raise MessageError("peerMetadata must be a map")
    fields = _Fields(value)
    storage_id = fields.text("storageId", optional=True)
    ephemeral = fields.get("isEphemeral")
    if ephemeral is not None and not isinstance(ephemeral, bool):
        raise MessageError("peerMetadata.isEphemeral must be a boolean")
    return PeerMetadata(storage_id, True if ephemeral is None else ephemeral)


def _remote_heads(value: object) -> dict[str, RemoteHeads]:
    if not isinstance(value, dict) or len(value) > MAX_LIST_LENGTH:
        raise MessageError("newHeads must be a map")
    out: dict[str, RemoteHeads] = {}
    for storage_id, entry in value.items():
        if not isinstance(storage_id, str) or not storage_id or len(storage_id) > MAX_ID_LENGTH:
            raise MessageError("newHeads keys must be storage ids")
        if not isinstance(entry, dict):
            raise MessageError("newHeads entries must be maps")
        fields = _Fields(entry)
        out[storage_id] = RemoteHeads(fields.texts("heads"), fields.integer("timestamp"))
    return out


def check_cbor_shape(frame: bytes) -> None:
    """Walk the CBOR item headers of ``frame`` without decoding anything.

    Raises MessageError unless the frame is exactly one well-formed item whose
    top level is a map, with at most MAX_CBOR_ITEMS items, at most
    MAX_CBOR_DEPTH levels of nesting, and no tags (automerge-repo writes none).
    Costs one step per item header; string bodies are skipped, not copied.
    """
    n = len(frame)
    if not n or frame[0] >> 5 != 5:
        raise MessageError("a message must be a CBOR map")
    pos = 0
    items = 0
    # Items still expected in each open container; -1 for indefinite length.
    open_: list[int] = [1]
    while open_:
        left = open_[-1]
        if left == 0:
            open_.pop()
            continue
        if pos >= n:
            raise MessageError("not CBOR: truncated")
        initial = frame[pos]
        pos += 1
        if initial == 0xFF:
            if left != -1:
                raise MessageError("not CBOR: unexpected break")
            open_.pop()
            continue
        if left > 0:
            open_[-1] = left - 1
        items += 1
        if items > MAX_CBOR_ITEMS:
            raise MessageError(f"too many CBOR items (more than {MAX_CBOR_ITEMS})")
        major, info = initial >> 5, initial & 0x1F
        value = -1  # indefinite
        if info < 24:
            value = info
        elif info < 28:
            size = 1 << (info - 24)
            if pos + size > n:
                raise MessageError("not CBOR: truncated")
            value = int.from_bytes(frame[pos : pos + size], "big")
            pos += size
        elif info != 31 or major in (0, 1, 6):
            raise MessageError("not CBOR: reserved additional information")
        if major in (0, 1, 7):
            if major == 7 and info == 31:
                raise MessageError("not CBOR: unexpected break")
            continue
        if major == 6:
            raise MessageError("CBOR tags are not accepted")
        if major in (2, 3) and value >= 0:
            if value > n - pos:
                raise MessageError("not CBOR: string longer than the frame")
            pos += value
            continue
        # An array, a map, or an indefinite-length string (its chunks follow).
        if value >= 0:
            value = value * 2 if major == 5 else value
            if value > n - pos:
                raise MessageError("not CBOR: container longer than the frame")
        if len(open_) > MAX_CBOR_DEPTH:
            raise MessageError(f"CBOR nested deeper than {MAX_CBOR_DEPTH}")
        open_.append(value)
    if pos != n:
        raise MessageError("not CBOR: bytes after the message")


def decode_message(frame: bytes) -> Message:
    """Parse one binary frame. Raises MessageError (and nothing else) for bad input.

    The frame's shape is checked first (:func:`check_cbor_shape`), so a hostile
    frame cannot make the decoder build more than MAX_CBOR_ITEMS objects.
    """
    check_cbor_shape(frame)
    try:
        raw = cbor2.loads(frame)
    except Exception as e:  # cbor2 raises several types, incl. RecursionError on deep nesting
        raise MessageError(f"not CBOR: {type(e).__name__}") from e
    if not isinstance(raw, dict):
        raise MessageError("a message must be a CBOR map")
    f = _Fields(raw)
    kind = f.get("type")
    if not isinstance(kind, str):
        raise MessageError("type must be a string")
    if kind == "join":
        versions = f.get("supportedProtocolVersions")
        return JoinMessage(
            f.req_text("senderId"),
            _peer_metadata(f.get("peerMetadata")),
            (PROTOCOL_VERSION,) if versions is None else f.texts("supportedProtocolVersions"),
        )
    if kind in ("sync", "request"):
        return SyncMessage(
            f.req_text("senderId"),
            f.req_text("targetId"),
            f.document_id(),
            f.blob("data"),
            is_request=kind == "request",
        )
    if kind == "ephemeral":
        return EphemeralMessage(
            f.req_text("senderId"),
            f.req_text("targetId"),
            f.document_id(),
            f.req_text("sessionId"),
            f.integer("count"),
            f.blob("data"),
        )
    if kind == "doc-unavailable":
        return DocUnavailableMessage(
            f.req_text("senderId"), f.req_text("targetId"), f.document_id()
        )
    if kind == "remote-subscription-change":
        return RemoteSubscriptionChange(
            f.req_text("senderId"), f.req_text("targetId"), f.texts("add"), f.texts("remove")
        )
    if kind == "remote-heads-changed":
        return RemoteHeadsChanged(
            f.req_text("senderId"),
            f.req_text("targetId"),
            f.document_id(),
            _remote_heads(f.get("newHeads")),
        )
    if kind == "peer":
        return PeerMessage(
            f.req_text("senderId"),
            f.req_text("targetId"),
            _peer_metadata(f.get("peerMetadata")),
            f.req_text("selectedProtocolVersion"),
        )
    if kind == "error":
        message = f.get("message")
        return ErrorMessage(
            f.text("senderId", optional=True) or "",
            f.text("targetId", optional=True) or "",
            message if isinstance(message, str) else "",
        )
    return UnknownMessage(kind[:64])


def _metadata_map(meta: PeerMetadata) -> dict[str, object]:
    out: dict[str, object] = {"isEphemeral": meta.is_ephemeral}
    if meta.storage_id is not None:
        out["storageId"] = meta.storage_id
    return out


def to_wire(message: Message) -> dict[str, object]:
    """The CBOR map for a message, with automerge-repo's field names."""
    match message:
        case PeerMessage():
            return {
                "type": "peer",
                "senderId": message.sender_id,
                "targetId": message.target_id,
                "peerMetadata": _metadata_map(message.peer_metadata),
                "selectedProtocolVersion": message.selected_protocol_version,
            }
        case SyncMessage():
            return {
                "type": "request" if message.is_request else "sync",
                "senderId": message.sender_id,
                "targetId": message.target_id,
                "documentId": message.document_id,
                "data": message.data,
            }
        case DocUnavailableMessage():
            return {
                "type": "doc-unavailable",
                "senderId": message.sender_id,
                "targetId": message.target_id,
                "documentId": message.document_id,
            }
        case EphemeralMessage():
            return {
                "type": "ephemeral",
                "senderId": message.sender_id,
                "targetId": message.target_id,
                "documentId": message.document_id,
                "sessionId": message.session_id,
                "count": message.count,
                "data": message.data,
            }
        case ErrorMessage():
            out: dict[str, object] = {
                "type": "error",
                "senderId": message.sender_id,
                "targetId": message.target_id,
                "message": message.message,
            }
            if message.document_id is not None:
                out["documentId"] = message.document_id
            return out
        case RemoteHeadsChanged():
            return {
                "type": "remote-heads-changed",
                "senderId": message.sender_id,
                "targetId": message.target_id,
                "documentId": message.document_id,
                "newHeads": {
                    sid: {"heads": list(h.heads), "timestamp": h.timestamp}
                    for sid, h in message.new_heads.items()
                },
            }
        case RemoteSubscriptionChange():
            return {
                "type": "remote-subscription-change",
                "senderId": message.sender_id,
                "targetId": message.target_id,
                "add": list(message.add),
                "remove": list(message.remove),
            }
        case JoinMessage():
            return {
                "type": "join",
                "senderId": message.sender_id,
                "peerMetadata": _metadata_map(message.peer_metadata),
                "supportedProtocolVersions": list(message.supported_protocol_versions),
            }
        case UnknownMessage():
            return {"type": message.type}


def encode_message(message: Message) -> bytes:
    """One binary frame for `message`."""
    return bytes(cbor2.dumps(to_wire(message)))

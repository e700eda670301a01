"""Server side of RFC 6455 framing and the upgrade handshake, without I/O.

The router parses WebSocket frames itself rather than through `websockets`'
protocol object: on the relay hot path that object costs ~15 µs per frame on a
small machine, more than the rest of the router together (see docs/router.md).
Only what a server needs is here: masked client frames, fragmentation, control
frames, close; no extensions (permessage-deflate is never negotiated). Unmasking
uses `websockets.speedups` (C) when available.

`FrameParser.feed(data)` returns the events found in `data`; the caller must
act on them in order. Protocol violations raise `ProtocolError` carrying the
close code to send.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from dataclasses import dataclass

try:
    from websockets.speedups import apply_mask as _apply_mask
except ImportError:  # pragma: no cover - the C extension ships with websockets wheels
    from websockets.utils import apply_mask as _apply_mask

OP_CONT = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

# Event kinds returned by FrameParser.feed, as (kind, payload) pairs.
EV_BINARY = OP_BINARY  # payload: the whole message
EV_TEXT = OP_TEXT  # payload: the whole message, valid UTF-8
EV_PING = OP_PING
EV_PONG = OP_PONG
EV_CLOSE = OP_CLOSE  # payload: the raw close frame body
EV_OVERSIZE = -1  # payload: b""; the message was skipped without buffering it

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_INVALID_DATA = 1007
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL = 1011
CLOSE_TRY_AGAIN = 1013

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_H16 = struct.Struct("!H")
_Q64 = struct.Struct("!Q")


class ProtocolError(Exception):
    """The peer broke RFC 6455; close the connection with `code`."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


Event = tuple[int, bytes]


class FrameParser:
    """Incremental parser for masked client frames.

    Messages longer than `max_size` (whole message, across fragments) are
    skipped as they arrive and reported once as EV_OVERSIZE, so the connection
    stays usable and memory stays bounded.
    """

    __slots__ = ("max_size", "_buf", "_need", "_skip", "_frag", "_frag_op", "_frag_size")

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self._buf: bytearray | None = None  # unparsed bytes carried between feeds
        self._need = 0  # bytes _buf must hold before parsing can make progress
        self._skip = 0  # payload bytes of an oversize frame still to discard
        self._frag: list[bytes] | None = None  # fragments of a message in progress
        self._frag_op = 0  # opcode of that message; -1 once it is being discarded
        self._frag_size = 0

    @property
    def buffered(self) -> int:
        """Bytes held for incomplete frames and messages."""
        return (len(self._buf) if self._buf else 0) + self._frag_size

    def feed(self, data: bytes) -> list[Event]:
        """Parse `data`; return complete events. Raises ProtocolError."""
        events: list[Event] = []
        if self._skip:
            if len(data) <= self._skip:
                self._skip -= len(data)
                return events
            data = data[self._skip :]
            self._skip = 0
        buf = self._buf
        if buf is not None:
            buf += data
            if len(buf) < self._need:
                return events
            data = bytes(buf)
            self._buf = None
        size = len(data)
        pos = 0
        max_size = self.max_size
        while True:
            avail = size - pos
            if avail < 2:
                need = 2
                break
            b0 = data[pos]
            b1 = data[pos + 1]
            if b0 & 0x70:
                raise ProtocolError(CLOSE_PROTOCOL_ERROR, "reserved bits set")
            if not b1 & 0x80:
                raise ProtocolError(CLOSE_PROTOCOL_ERROR, "client frames must be masked")
            opcode = b0 & 0x0F
            fin = b0 & 0x80
            length = b1 & 0x7F
            head = 6
            if length == 126:
                head = 8
                if avail < 4:
                    need = 4
                    break
                (length,) = _H16.unpack_from(data, pos + 2)
            elif length == 127:
                head = 14
                if avail < 10:
                    need = 10
                    break
                (length,) = _Q64.unpack_from(data, pos + 2)
                if length >> 63:
                    raise ProtocolError(CLOSE_PROTOCOL_ERROR, "invalid frame length")
            if opcode >= OP_CLOSE:
                if opcode > OP_PONG:
                    raise ProtocolError(CLOSE_PROTOCOL_ERROR, f"reserved opcode {opcode}")
                if not fin or length > 125:
                    raise ProtocolError(CLOSE_PROTOCOL_ERROR, "invalid control frame")
            elif opcode > OP_BINARY:
                raise ProtocolError(CLOSE_PROTOCOL_ERROR, f"reserved opcode {opcode}")
            if opcode < OP_CLOSE:
                if self._frag_op == -1:  # discarding the rest of an oversize message
                    if opcode != OP_CONT:
                        raise ProtocolError(CLOSE_PROTOCOL_ERROR, "expected a continuation frame")
                    discard = True
                    report = False
                else:
                    if opcode == OP_CONT:
                        if self._frag is None:
                            raise ProtocolError(
                                CLOSE_PROTOCOL_ERROR, "unexpected continuation frame"
                            )
                        total = self._frag_size + length
                    else:
                        if self._frag is not None:
                            raise ProtocolError(
                                CLOSE_PROTOCOL_ERROR, "expected a continuation frame"
                            )
                        total = length
                    discard = report = total > max_size
                if discard:
                    # Skip the payload as it arrives, never buffering it.
                    if avail < head:
                        need = head
                        break
                    self._frag = None
                    self._frag_size = 0
                    self._frag_op = 0 if fin else -1
                    if report:
                        events.append((EV_OVERSIZE, b""))
                    skip = length - (avail - head)
                    if skip > 0:
                        self._skip = skip
                        return events
                    pos += head + length
                    continue
            end = pos + head + length
            if end > size:
                need = head + length
                break
            payload = data[pos + head : end]
            if length:
                payload = _apply_mask(payload, data[pos + head - 4 : pos + head])
            pos = end
            if opcode == OP_BINARY or opcode == OP_TEXT:
                if fin:
                    if opcode == OP_TEXT:
                        _check_utf8(payload)
                    events.append((opcode, payload))
                else:
                    self._frag = [payload]
                    self._frag_op = opcode
                    self._frag_size = length
            elif opcode == OP_CONT:
                frag = self._frag
                assert frag is not None  # checked above
                frag.append(payload)
                self._frag_size += length
                if fin:
                    message = b"".join(frag)
                    op = self._frag_op
                    self._frag = None
                    self._frag_size = 0
                    self._frag_op = 0
                    if op == OP_TEXT:
                        _check_utf8(message)
                    events.append((op, message))
            else:
                events.append((opcode, payload))
        if pos < size:
            self._buf = bytearray(data[pos:])
            self._need = need
        return events


def _check_utf8(payload: bytes) -> None:
    try:
        payload.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ProtocolError(CLOSE_INVALID_DATA, "text message is not valid UTF-8") from e


def encode_frame_header(opcode: int, length: int) -> bytes:
    """The header of an unmasked, final server frame carrying `length` payload bytes."""
    if length < 126:
        return bytes((0x80 | opcode, length))
    if length < 65536:
        return bytes((0x80 | opcode, 126)) + _H16.pack(length)
    return bytes((0x80 | opcode, 127)) + _Q64.pack(length)


def encode_close(code: int, reason: str) -> bytes:
    """A complete close frame; `reason` is truncated to fit a control frame."""
    body = _H16.pack(code) + reason.encode()[:123]
    return encode_frame_header(OP_CLOSE, len(body)) + body


def parse_close(payload: bytes) -> tuple[int, str]:
    """Code and reason of a received close frame body; raises ProtocolError if invalid."""
    if not payload:
        return 1005, ""
    if len(payload) == 1:
        raise ProtocolError(CLOSE_PROTOCOL_ERROR, "close frame too short")
    (code,) = _H16.unpack_from(payload)
    if not (1000 <= code < 5000) or code in (1004, 1005, 1006, 1015) or 1016 <= code < 3000:
        raise ProtocolError(CLOSE_PROTOCOL_ERROR, f"invalid close code {code}")
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError as e:
        raise ProtocolError(CLOSE_INVALID_DATA, "close reason is not valid UTF-8") from e
    return code, reason


# ------------------------------------------------------------------ handshake


@dataclass(frozen=True, slots=True)
class UpgradeRequest:
    """The parts of an HTTP upgrade request the router uses."""

    method: str
    target: str  # raw request target, as written (never percent-decoded)
    headers: dict[str, list[str]]  # lower-case names

    def header(self, name: str) -> str | None:
        values = self.headers.get(name)
        return ", ".join(values) if values else None


class HandshakeError(Exception):
    """An upgrade request that must be refused with `status`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def parse_request_head(head: bytes) -> UpgradeRequest:
    """Parse an HTTP/1.1 request head (up to and including the blank line)."""
    try:
        text = head.decode("latin-1")
        lines = text.split("\r\n")
        method, target, _version = lines[0].split(" ", 2)
    except ValueError as e:
        raise HandshakeError(400, "malformed request line") from e
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, colon, value = line.partition(":")
        if not colon:
            raise HandshakeError(400, "malformed header line")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    return UpgradeRequest(method, target, headers)


def check_upgrade(request: UpgradeRequest) -> str:
    """Validate the RFC 6455 opening handshake; return the Sec-WebSocket-Accept value."""
    if request.method != "GET":
        raise HandshakeError(405, "WebSocket upgrade must be a GET")
    upgrade = (request.header("upgrade") or "").lower()
    if "websocket" not in [u.strip() for u in upgrade.split(",")]:
        raise HandshakeError(400, "Upgrade: websocket required")
    connection = (request.header("connection") or "").lower()
    if "upgrade" not in [c.strip() for c in connection.split(",")]:
        raise HandshakeError(400, "Connection: Upgrade required")
    if request.header("sec-websocket-version") != "13":
        raise HandshakeError(426, "Sec-WebSocket-Version: 13 required")
    key = request.header("sec-websocket-key") or ""
    try:
        raw = base64.b64decode(key, validate=True)
    except ValueError as e:
        raise HandshakeError(400, "invalid Sec-WebSocket-Key") from e
    if len(raw) != 16:
        raise HandshakeError(400, "invalid Sec-WebSocket-Key")
    return base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest()).decode()


def offered_subprotocols(request: UpgradeRequest) -> list[str]:
    """Subprotocols offered, accepting both `a, b` (browsers) and `a,b` (`ws`)."""
    out: list[str] = []
    for value in request.headers.get("sec-websocket-protocol", ()):
        out.extend(item.strip() for item in value.split(",") if item.strip())
    return out


def accept_response(accept: str, subprotocol: str | None) -> bytes:
    lines = [
        "HTTP/1.1 101 Switching Protocols",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Accept: {accept}",
    ]
    if subprotocol is not None:
        lines.append(f"Sec-WebSocket-Protocol: {subprotocol}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


_REASONS = {
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    426: "Upgrade Required",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def reject_response(status: int, message: str, retry_after: int | None = None) -> bytes:
    """A complete plain-text HTTP response that ends the connection; with
    `retry_after`, a `Retry-After` header of that many seconds."""
    body = (message + "\n").encode()
    head = (
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n"
        + ("" if retry_after is None else f"Retry-After: {int(retry_after)}\r\n")
        + "Connection: close\r\n\r\n"
    )
    if status == 426:
        head = head[:-2] + "Sec-WebSocket-Version: 13\r\n\r\n"
    return head.encode() + body

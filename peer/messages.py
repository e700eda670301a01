"""What peers say to each other: signal bodies and the application envelope.

Signal bodies (JSON objects carried by the router's `signal` verb), parsed once
at the boundary by `parse_signal_body`:

    {"type": "offer",     "gen": n, "sdp": "..."}   offerer -> answerer
    {"type": "answer",    "gen": n, "sdp": "..."}   answerer -> offerer
    {"type": "candidate", "gen": n, "candidate": "candidate:...", "sdpMid": "0",
     "sdpMLineIndex": 0}                            trickled ICE (browsers); either way
    {"type": "restart",   "gen": n}                 answerer -> offerer: attempt n failed

`gen` numbers the offerer's connection attempts: a higher one replaces the
peer connection, a lower one is stale and ignored.

Application messages travel inside the sequenced stream as an envelope:
`u16 BE length of docId | docId UTF-8 | data`.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

from hearth.types import DocumentId

_U16 = struct.Struct(">H")


class PeerMessageError(ValueError):
    """A signal body or envelope that does not parse."""


@dataclass(frozen=True, slots=True)
class Offer:
    gen: int
    sdp: str


@dataclass(frozen=True, slots=True)
class Answer:
    gen: int
    sdp: str


@dataclass(frozen=True, slots=True)
class Candidate:
    gen: int
    candidate: str
    sdp_mid: str | None
    sdp_mline_index: int | None


@dataclass(frozen=True, slots=True)
class Restart:
    gen: int


SignalBody = Offer | Answer | Candidate | Restart


def _gen(value: dict[str, Any]) -> int:
    gen = value.get("gen")
    if type(gen) is not int or gen < 0:
        raise PeerMessageError("signal: gen must be a non-negative integer")
    return gen


def _text(value: dict[str, Any], key: str) -> str:
    text = value.get(key)
    if type(text) is not str:
        raise PeerMessageError(f"signal: {key} must be a string")
    return text


def parse_signal_body(body: bytes) -> SignalBody:
    """The typed signal message in `body`; raises PeerMessageError."""
    try:
        value = json.loads(body)
    except (ValueError, RecursionError) as e:
        raise PeerMessageError("signal body is not JSON") from e
    if not isinstance(value, dict):
        raise PeerMessageError("signal body is not a JSON object")
    kind = value.get("type")
    if kind == "offer":
        return Offer(_gen(value), _text(value, "sdp"))
    if kind == "answer":
        return Answer(_gen(value), _text(value, "sdp"))
    if kind == "candidate":
        mid = value.get("sdpMid")
        index = value.get("sdpMLineIndex")
        if mid is not None and type(mid) is not str:
            raise PeerMessageError("signal: sdpMid must be a string")
        if index is not None and type(index) is not int:
            raise PeerMessageError("signal: sdpMLineIndex must be an integer")
        return Candidate(_gen(value), _text(value, "candidate"), mid, index)
    if kind == "restart":
        return Restart(_gen(value))
    raise PeerMessageError(f"unknown signal type {str(kind)[:32]!r}")


def encode_signal_body(msg: SignalBody) -> bytes:
    """The JSON body for `msg`."""
    value: dict[str, Any]
    if isinstance(msg, Offer):
        value = {"type": "offer", "gen": msg.gen, "sdp": msg.sdp}
    elif isinstance(msg, Answer):
        value = {"type": "answer", "gen": msg.gen, "sdp": msg.sdp}
    elif isinstance(msg, Candidate):
        value = {
            "type": "candidate",
            "gen": msg.gen,
            "candidate": msg.candidate,
            "sdpMid": msg.sdp_mid,
            "sdpMLineIndex": msg.sdp_mline_index,
        }
    else:
        value = {"type": "restart", "gen": msg.gen}
    return json.dumps(value, separators=(",", ":")).encode()


def encode_envelope(doc: str, data: bytes) -> bytes:
    raw = doc.encode()
    if len(raw) > 0xFFFF:
        raise ValueError("docId too long")
    return _U16.pack(len(raw)) + raw + data


def decode_envelope(message: bytes) -> tuple[DocumentId, bytes]:
    """(docId, data) of an application message; raises PeerMessageError."""
    if len(message) < 2:
        raise PeerMessageError("envelope shorter than 2 bytes")
    (n,) = _U16.unpack_from(message)
    if 2 + n > len(message):
        raise PeerMessageError("envelope docId runs past the end")
    try:
        doc = message[2 : 2 + n].decode()
    except UnicodeDecodeError as e:
        raise PeerMessageError("envelope docId is not UTF-8") from e
    return DocumentId(doc), message[2 + n :]

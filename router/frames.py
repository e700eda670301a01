"""The Roomy v0 frame codec: `[u32 LE N][N bytes UTF-8 JSON array header][body]`.

Plain functions on bytes, no I/O. The body is returned as a memoryview of the
input and never parsed, so relaying it costs one copy into the outgoing frame.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence

from hearth.jsontext import decoded_encodable, encodable

try:  # the C helper is ~10x faster than json.dumps for one string
    from json.encoder import c_encode_basestring as _c_quote  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - CPython always has it
    _c_quote = None

_U32 = struct.Struct("<I")
_DECODER = json.JSONDecoder()
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
_WHITESPACE = " \t\n\r"

HEADER_PREFIX_SIZE = 4
# How the frames a Roomy v0 client understands begin after the length prefix
# (headers are encoded compactly, so these bytes are exact).
_V0_PREFIXES = (b'["join",', b'["leave",', b'["send",')


class FrameError(ValueError):
    """A frame that cannot be decoded. `code` is the stable `error` frame code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def quote(text: str) -> bytes:
    """`text` as a JSON string literal, UTF-8 encoded (for pre-encoded header prefixes)."""
    if _c_quote is not None:
        return _c_quote(text).encode()  # type: ignore[no-any-return]
    return json.dumps(text, ensure_ascii=False).encode()  # pragma: no cover


def encode_header(items: Sequence[object]) -> bytes:
    """The compact UTF-8 JSON array for a header. Raises ValueError for non-JSON values."""
    return _ENCODER.encode(list(items)).encode()


def encode_frame(header: Sequence[object], body: bytes | memoryview = b"") -> bytes:
    """One complete frame: length prefix, JSON array header, body."""
    head = encode_header(header)
    return b"".join((_U32.pack(len(head)), head, body))


def frame_from_header_bytes(head: bytes, body: bytes | memoryview = b"") -> bytes:
    """A frame from an already-encoded header (the caller guarantees it is a JSON array)."""
    return b"".join((_U32.pack(len(head)), head, body))


def is_v0_frame(frame: bytes) -> bool:
    """True for `join`, `leave` and `send` frames, the only verbs Roomy v0 clients know."""
    return frame.startswith(_V0_PREFIXES, HEADER_PREFIX_SIZE)


def decode_frame(data: bytes) -> tuple[list[object], memoryview]:
    """Split a frame into its header (a non-empty JSON array) and its body.

    Raises FrameError with code `short_frame`, `bad_length` or `bad_header`.
    """
    size = len(data)
    if size < HEADER_PREFIX_SIZE:
        raise FrameError("short_frame", f"frame of {size} bytes has no 4-byte header length")
    (length,) = _U32.unpack_from(data)
    end = HEADER_PREFIX_SIZE + length
    if end > size:
        raise FrameError(
            "bad_length", f"header length {length} exceeds the {size - 4} bytes that follow it"
        )
    try:
        text = data[HEADER_PREFIX_SIZE:end].decode("utf-8")
    except UnicodeDecodeError as e:
        raise FrameError("bad_header", "header is not valid UTF-8") from e
    try:
        start = 0
        if text[:1] in _WHITESPACE and text:
            start = len(text) - len(text.lstrip(_WHITESPACE))
        header, stop = _DECODER.raw_decode(text, start)
    except (ValueError, RecursionError) as e:
        raise FrameError("bad_header", "header is not valid JSON") from e
    if stop != len(text) and text[stop:].strip(_WHITESPACE):
        raise FrameError("bad_header", "trailing data after the JSON header")
    if type(header) is not list or not header:
        raise FrameError("bad_header", "header must be a non-empty JSON array")
    if not decoded_encodable(text, header):
        # Such a string can be neither encoded again (every frame that would
        # echo it fails) nor stored: refuse it here, once, for every verb.
        raise FrameError("bad_type", "header strings must not contain lone surrogates")
    return header, memoryview(data)[end:]


def is_encodable(text: str) -> bool:
    """True if `text` can be encoded as UTF-8 (it holds no lone surrogate)."""
    return encodable(text)

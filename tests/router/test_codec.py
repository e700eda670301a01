"""Property tests for the Roomy frame codec and the WebSocket frame parser."""

from __future__ import annotations

import json
import os
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router.frames import FrameError, decode_frame, encode_frame, encode_header, is_encodable, quote
from router.messages import MessageError, parse_client_message
from router.websocket import (
    EV_BINARY,
    EV_CLOSE,
    EV_OVERSIZE,
    EV_PING,
    EV_TEXT,
    OP_BINARY,
    OP_CONT,
    OP_PING,
    OP_TEXT,
    FrameParser,
    ProtocolError,
    encode_close,
    parse_close,
)

json_scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=30)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=10,
)
headers = st.lists(json_values, min_size=1, max_size=6)


@given(headers, st.binary(max_size=300))
def test_encode_decode_round_trip(header: list[object], body: bytes) -> None:
    frame = encode_frame(header, body)
    (n,) = struct.unpack_from("<I", frame)
    assert json.loads(frame[4 : 4 + n]) == header
    decoded, rest = decode_frame(frame)
    assert decoded == header
    assert bytes(rest) == body


@given(st.binary(max_size=200))
def test_decode_arbitrary_bytes_only_raises_frame_error(data: bytes) -> None:
    try:
        header, body = decode_frame(data)
    except FrameError as e:
        assert e.code in {"short_frame", "bad_length", "bad_header"}
    else:
        assert isinstance(header, list) and header
        assert len(body) <= len(data) - 4


@given(st.binary(max_size=60), st.binary(max_size=60))
def test_header_bytes_never_crash_the_message_parser(head: bytes, body: bytes) -> None:
    data = struct.pack("<I", len(head)) + head + body
    try:
        header, _ = decode_frame(data)
        parse_client_message(header)
    except (FrameError, MessageError):
        pass


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", "short_frame"),
        (b"\x01\x00\x00", "short_frame"),
        (b"\x09\x00\x00\x00[]", "bad_length"),
        (b"\x02\x00\x00\x00\xff\xfe", "bad_header"),
        (b"\x02\x00\x00\x00{}", "bad_header"),
        (b"\x02\x00\x00\x00[]", "bad_header"),
        (b"\x03\x00\x00\x00[1,", "bad_header"),
        (b"\x04\x00\x00\x00[1]x", "bad_header"),
        (struct.pack("<I", 200_000) + b"[" * 200_000, "bad_header"),  # deep nesting
    ],
)
def test_decode_errors(data: bytes, code: str) -> None:
    with pytest.raises(FrameError) as info:
        decode_frame(data)
    assert info.value.code == code


def test_whitespace_around_header_is_json() -> None:
    head = b' ["listen"] '
    header, body = decode_frame(struct.pack("<I", len(head)) + head + b"B")
    assert header == ["listen"] and bytes(body) == b"B"


@given(st.text(max_size=50))
def test_quote_is_json(text: str) -> None:
    assert json.loads(quote(text)) == text


# ------------------------------------------------------------------ WebSocket frames


def client_frame(
    opcode: int, payload: bytes, *, fin: bool = True, mask: bytes | None = None
) -> bytes:
    mask = os.urandom(4) if mask is None else mask
    n = len(payload)
    b0 = (0x80 if fin else 0) | opcode
    if n < 126:
        head = bytes((b0, 0x80 | n))
    elif n < 65536:
        head = bytes((b0, 0x80 | 126)) + struct.pack("!H", n)
    else:
        head = bytes((b0, 0x80 | 127)) + struct.pack("!Q", n)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + masked


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    out, last = [], 0
    for p in points:
        out.append(data[last:p])
        last = p
    out.append(data[last:])
    return out


messages = st.lists(
    st.tuples(st.sampled_from([OP_BINARY, OP_TEXT]), st.binary(max_size=300), st.integers(1, 3)),
    max_size=6,
)


@given(messages, st.lists(st.integers(0, 5000), max_size=8))
@settings(max_examples=200)
def test_parser_reassembles_any_chunking(
    msgs: list[tuple[int, bytes, int]], cuts: list[int]
) -> None:
    wire = b""
    expected = []
    for opcode, payload, parts in msgs:
        if opcode == OP_TEXT:
            payload = payload.decode("latin-1").encode("utf-8")
        expected.append((opcode, payload))
        size = max(1, len(payload) // parts + 1)
        pieces = [payload[i : i + size] for i in range(0, len(payload), size)] or [b""]
        for i, piece in enumerate(pieces):
            wire += client_frame(opcode if i == 0 else OP_CONT, piece, fin=i == len(pieces) - 1)
            if i == 0:
                wire += client_frame(OP_PING, b"p")  # control frames may interleave
    parser = FrameParser(max_size=10_000)
    events = []
    for chunk in split(wire, cuts):
        events.extend(parser.feed(chunk))
    assert [e for e in events if e[0] in (EV_BINARY, EV_TEXT)] == expected
    assert sum(1 for e in events if e[0] == EV_PING) == len(msgs)
    assert parser.buffered == 0


@given(st.integers(101, 70_000), st.lists(st.integers(0, 80_000), max_size=6), st.integers(1, 4))
@settings(max_examples=60)
def test_oversize_messages_are_skipped_and_reported_once(
    size: int, cuts: list[int], parts: int
) -> None:
    big = os.urandom(size)
    step = size // parts + 1
    wire = b""
    pieces = [big[i : i + step] for i in range(0, size, step)]
    for i, piece in enumerate(pieces):
        wire += client_frame(OP_BINARY if i == 0 else OP_CONT, piece, fin=i == len(pieces) - 1)
    wire += client_frame(OP_BINARY, b"after")
    parser = FrameParser(max_size=100)
    events = []
    for chunk in split(wire, cuts):
        events.extend(parser.feed(chunk))
        assert parser.buffered <= 100 + 14  # never holds the oversize payload
    assert events == [(EV_OVERSIZE, b""), (EV_BINARY, b"after")]


@given(st.binary(max_size=300))
def test_parser_on_garbage_raises_only_protocol_error(data: bytes) -> None:
    parser = FrameParser(max_size=1000)
    try:
        parser.feed(data)
    except ProtocolError as e:
        assert 1000 <= e.code < 1012


@pytest.mark.parametrize(
    "wire",
    [
        bytes((0x82, 0x01)) + b"x",  # unmasked
        client_frame(OP_BINARY, b"x")[:0] + bytes((0xC2, 0x80)) + b"\0\0\0\0",  # RSV1
        client_frame(0x3, b"x"),  # reserved opcode
        client_frame(OP_PING, b"x", fin=False),  # fragmented control frame
        client_frame(OP_PING, b"x" * 126),  # control frame too long
        client_frame(OP_CONT, b"x"),  # continuation without a start
        client_frame(OP_BINARY, b"x", fin=False) + client_frame(OP_BINARY, b"y"),
        client_frame(OP_TEXT, b"\xff"),  # invalid UTF-8 text
    ],
)
def test_protocol_violations(wire: bytes) -> None:
    with pytest.raises(ProtocolError):
        FrameParser(max_size=1000).feed(wire)


def test_close_frames() -> None:
    frame = encode_close(1008, "too many bad frames")
    parser = FrameParser(1000)
    events = parser.feed(client_frame(0x8, frame[2:]))
    assert events[0][0] == EV_CLOSE
    assert parse_close(events[0][1]) == (1008, "too many bad frames")
    assert parse_close(b"") == (1005, "")
    with pytest.raises(ProtocolError):
        parse_close(struct.pack("!H", 999))


@pytest.mark.parametrize(
    "header",
    [
        ["listen", "\ud800", "doc"],
        ["\udfff"],
        ["send", "did:key:z", "c", "d\udc00c"],
        ["mail", "did:key:z", "m", 60, "normal", {"k\ud800": 1}],
        ["notify", ["deep", ["\ud834"]], "ping"],
    ],
)
def test_lone_surrogates_are_bad_type(header: list[object]) -> None:
    # JSON may escape a lone surrogate; such a string cannot be encoded again,
    # so every frame echoing it would fail: it is refused at parse time.
    data = encode_frame_bytes(json.dumps(header).encode())
    with pytest.raises(FrameError) as info:
        decode_frame(data)
    assert info.value.code == "bad_type"


def test_surrogate_pairs_and_escaped_backslashes_are_fine() -> None:
    for text in ("\U0001f600", "\\ud800", "caf\u00e9"):
        data = encode_frame_bytes(json.dumps(["listen", text]).encode())
        assert decode_frame(data)[0] == ["listen", text]
    assert is_encodable("\U0001f600") and not is_encodable("a\ud800")


def encode_frame_bytes(head: bytes) -> bytes:
    return struct.pack("<I", len(head)) + head


_with_surrogates = st.one_of(st.sampled_from("\ud800\udbff\udc00\udfff\\u"), st.characters())


@given(st.lists(st.text(_with_surrogates, max_size=8), min_size=1))
def test_a_decoded_header_can_always_be_encoded_again(strings: list[str]) -> None:
    data = encode_frame_bytes(json.dumps(strings).encode())
    try:
        header, _ = decode_frame(data)
    except FrameError as e:
        assert e.code == "bad_type"
        assert not all(is_encodable(s) for s in strings)
    else:
        encode_header(header)

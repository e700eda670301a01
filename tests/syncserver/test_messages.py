"""The CBOR message boundary: every frame becomes a typed message or a MessageError."""

from __future__ import annotations

from typing import Any

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncserver.messages import (
    MAX_CBOR_DEPTH,
    MAX_CBOR_ITEMS,
    DocUnavailableMessage,
    EphemeralMessage,
    ErrorMessage,
    JoinMessage,
    MessageError,
    PeerMessage,
    PeerMetadata,
    RemoteHeads,
    RemoteHeadsChanged,
    RemoteSubscriptionChange,
    SyncMessage,
    UnknownMessage,
    check_cbor_shape,
    decode_message,
    encode_message,
    parse_document_id,
)
from tests.syncserver.ids import new_document_id

DOC = new_document_id()

# A join exactly as cbor-x writes it for a client without storage: 32-bit map
# headers (b9 00 NN) and `undefined` (f7) for the storageId.
JS_JOIN = bytes.fromhex(
    "b90004"
    "6474797065"
    "646a6f696e"  # type: join
    "6873656e6465724964"
    "66706565722d31"  # senderId: peer-1
    "6c706565724d65746164617461"  # peerMetadata
    "b90002"
    "6973746f726167654964"
    "f7"
    "6b6973457068656d6572616c"
    "f5"
    "7819737570706f7274656450726f746f636f6c56657273696f6e73"
    "816131"
)


def test_js_join_with_undefined_storage_id() -> None:
    msg = decode_message(JS_JOIN)
    assert msg == JoinMessage("peer-1", PeerMetadata(None, True), ("1",))


def test_join_without_versions_means_version_1() -> None:
    msg = decode_message(cbor2.dumps({"type": "join", "senderId": "p"}))
    assert isinstance(msg, JoinMessage)
    assert msg.supported_protocol_versions == ("1",)


ROUND_TRIP = [
    PeerMessage("s", "p", PeerMetadata("storage-1", False)),
    SyncMessage("p", "s", DOC, b"\x42\x00"),
    SyncMessage("p", "s", DOC, b"\x42\x00", is_request=True),
    DocUnavailableMessage("s", "p", DOC),
    EphemeralMessage("p", "s", DOC, "session", 7, b"\xa0"),
    RemoteSubscriptionChange("p", "s", ("a", "b"), ("c",)),
    RemoteHeadsChanged("p", "s", DOC, {"st": RemoteHeads(("h1", "h2"), 1234)}),
    JoinMessage("p", PeerMetadata("st", False), ("1", "2")),
]


@pytest.mark.parametrize("message", ROUND_TRIP, ids=lambda m: type(m).__name__)
def test_round_trip(message: Any) -> None:
    assert decode_message(encode_message(message)) == message


def test_error_message_names_the_document() -> None:
    wire = cbor2.loads(encode_message(ErrorMessage("s", "p", "no", DOC)))
    assert wire == {
        "type": "error",
        "senderId": "s",
        "targetId": "p",
        "message": "no",
        "documentId": DOC,
    }


def test_unknown_type_is_kept_as_unknown() -> None:
    assert decode_message(cbor2.dumps({"type": "leave", "senderId": "p"})) == UnknownMessage(
        "leave"
    )


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\xff",
        b"\x9f" * 10_000,  # deep nesting
        cbor2.dumps([1, 2]),
        cbor2.dumps({"type": 5}),
        cbor2.dumps({"senderId": "p"}),
        cbor2.dumps({"type": "sync", "senderId": "p", "targetId": "s", "documentId": DOC}),
        cbor2.dumps(
            {"type": "sync", "senderId": "p", "targetId": "s", "documentId": DOC, "data": "x"}
        ),
        cbor2.dumps(
            {"type": "sync", "senderId": 1, "targetId": "s", "documentId": DOC, "data": b""}
        ),
        cbor2.dumps(
            {"type": "sync", "senderId": "p", "targetId": "s", "documentId": "nope", "data": b""}
        ),
        cbor2.dumps(
            {
                "type": "ephemeral",
                "senderId": "p",
                "targetId": "s",
                "documentId": DOC,
                "sessionId": "x",
                "count": -1,
                "data": b"",
            }
        ),
        cbor2.dumps({"type": "join", "senderId": "p", "peerMetadata": []}),
        cbor2.dumps({"type": "join", "senderId": "p", "supportedProtocolVersions": "1"}),
        cbor2.dumps(
            {"type": "remote-subscription-change", "senderId": "p", "targetId": "s", "add": [1]}
        ),
        cbor2.dumps(
            {
                "type": "remote-heads-changed",
                "senderId": "p",
                "targetId": "s",
                "documentId": DOC,
                "newHeads": {"st": {"heads": "h", "timestamp": 1}},
            }
        ),
    ],
)
def test_malformed_frames_raise_message_error(raw: bytes) -> None:
    with pytest.raises(MessageError):
        decode_message(raw)


def test_document_id_checks_checksum_and_length() -> None:
    assert parse_document_id(DOC) == DOC
    broken = DOC[:-1] + ("1" if DOC[-1] != "1" else "2")
    with pytest.raises(MessageError):
        parse_document_id(broken)
    with pytest.raises(MessageError):
        parse_document_id("3yQ")


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_never_raise_anything_else(raw: bytes) -> None:
    try:
        decode_message(raw)
    except MessageError:
        pass


cbor_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**64), max_value=2**64)
    | st.text(max_size=20)
    | st.binary(max_size=20)
    | st.just(DOC),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
field_names = st.sampled_from(
    [
        "type",
        "senderId",
        "targetId",
        "documentId",
        "data",
        "count",
        "sessionId",
        "peerMetadata",
        "supportedProtocolVersions",
        "add",
        "remove",
        "newHeads",
    ]
)
types = st.sampled_from(
    [
        "join",
        "sync",
        "request",
        "ephemeral",
        "doc-unavailable",
        "remote-subscription-change",
        "remote-heads-changed",
        "peer",
        "error",
        "other",
    ]
)


@settings(max_examples=100, deadline=None)
@given(types, st.dictionaries(field_names, cbor_values, max_size=8))
def test_wrong_field_types_are_message_errors(kind: str, fields: dict[str, Any]) -> None:
    raw = cbor2.dumps({**fields, "type": kind})
    try:
        message = decode_message(raw)
    except MessageError:
        return
    # Whatever parses, re-encodes and parses to the same value.
    if not isinstance(message, UnknownMessage | ErrorMessage):
        assert decode_message(encode_message(message)) == message


@settings(max_examples=300, deadline=None)
@given(
    st.builds(
        EphemeralMessage,
        st.text(min_size=1, max_size=40),
        st.text(min_size=1, max_size=40),
        st.just(DOC),
        st.text(min_size=1, max_size=40),
        st.integers(min_value=0, max_value=2**53 - 1),
        st.binary(max_size=64),
    )
)
def test_ephemeral_round_trip(message: EphemeralMessage) -> None:
    assert decode_message(encode_message(message)) == message


def test_a_frame_of_empty_containers_is_refused_before_decoding(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 1 byte per item on the wire, 60-70 bytes each once decoded: the audit's
    # 64 MiB frame of these held ~4.6 GB. Now the header walk stops it at the cap.
    def never(*_: object, **__: object) -> object:
        raise AssertionError("cbor2.loads ran on a hostile frame")

    pad = [{}] * 200_000
    frames = [
        cbor2.dumps({"type": "x", "pad": pad}),
        cbor2.dumps({"type": "x", "pad": [[]] * 200_000}),
        cbor2.dumps({"type": "x", **{str(i): {} for i in range(MAX_CBOR_ITEMS)}}),
    ]
    monkeypatch.setattr(cbor2, "loads", never)
    for frame in frames:
        with pytest.raises(MessageError, match="too many CBOR items"):
            decode_message(frame)


def test_nesting_tags_and_trailing_bytes_are_refused() -> None:
    deep: Any = "leaf"
    for _ in range(MAX_CBOR_DEPTH + 1):
        deep = [deep]
    for frame in (
        cbor2.dumps({"type": "x", "deep": deep}),
        cbor2.dumps({"type": "x", "t": cbor2.CBORTag(4, [-100000000, 1])}),
        cbor2.dumps({"type": "x"}) + b"\x00",
        b"\xa1\x64type",  # truncated
        b"\xbb" + (2**63).to_bytes(8, "big"),  # a map claiming 2^63 pairs
    ):
        with pytest.raises(MessageError):
            check_cbor_shape(frame)


JSON_ISH = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=5)
    | st.binary(max_size=5),
    lambda kids: (
        st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=3), kids, max_size=4)
    ),
    max_leaves=30,
)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=5), JSON_ISH, max_size=5))
def test_shape_check_accepts_every_ordinary_map(value: dict[str, Any]) -> None:
    check_cbor_shape(cbor2.dumps(value))


def test_big_data_with_few_items_still_decodes() -> None:
    message = SyncMessage("p", "s", DOC, b"\x42" * 5_000_000)
    assert decode_message(encode_message(message)) == message
    # Indefinite-length maps and strings (other encoders may write them) pass too.
    assert decode_message(b"\xbf\x64type\x63xyz\xff") == UnknownMessage("xyz")
    assert decode_message(b"\xbf\x64type\x7f\x61x\x62yz\xff\xff") == UnknownMessage("xyz")

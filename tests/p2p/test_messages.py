"""Signal bodies and the application envelope (peer/messages.py)."""

from __future__ import annotations

import pytest

from peer.messages import (
    Answer,
    Candidate,
    Offer,
    PeerMessageError,
    Restart,
    decode_envelope,
    encode_envelope,
    encode_signal_body,
    parse_signal_body,
)


@pytest.mark.parametrize(
    "msg",
    [
        Offer(1, "v=0\r\n"),
        Answer(7, "v=0\r\n"),
        Candidate(2, "candidate:1 1 udp 1 10.0.0.1 5000 typ host", "0", 0),
        Candidate(2, "candidate:1 1 udp 1 10.0.0.1 5000 typ host", None, None),
        Restart(3),
    ],
)
def test_signal_roundtrip(msg: object) -> None:
    assert parse_signal_body(encode_signal_body(msg)) == msg  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"type":"offer","gen":1}',
        b'{"type":"offer","gen":-1,"sdp":""}',
        b'{"type":"offer","gen":true,"sdp":""}',
        b'{"type":"answer","sdp":""}',
        b'{"type":"candidate","gen":1,"candidate":"x","sdpMid":3}',
        b'{"type":"candidate","gen":1,"candidate":"x","sdpMLineIndex":"0"}',
        b'{"type":"bye","gen":1}',
        b"[" * 100_000,
        b'{"a":' * 100_000,
    ],
    ids=lambda b: repr(b[:40]),
)
def test_bad_signal_bodies(body: bytes) -> None:
    with pytest.raises(PeerMessageError):
        parse_signal_body(body)


def test_envelope() -> None:
    assert decode_envelope(encode_envelope("doc-é", b"\x00data")) == ("doc-é", b"\x00data")
    assert decode_envelope(encode_envelope("", b"")) == ("", b"")
    for bad in (b"", b"\x00", b"\x00\x05abc", b"\x00\x01\xff"):
        with pytest.raises(PeerMessageError):
            decode_envelope(bad)

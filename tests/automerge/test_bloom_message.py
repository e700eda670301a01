from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncserver.automerge import (
    AutomergeError,
    BloomFilter,
    Document,
    Have,
    SyncMessage,
    SyncState,
)

from .jshelper import JsHelper, b64, unb64
from .strategies import FUZZ

hashes32 = st.binary(min_size=32, max_size=32)


def test_bloom_bytes_identical_to_js(js: JsHelper, big: dict[str, Any]) -> None:
    # A fresh JS sync state's first message carries a filter of every change.
    js.call("sync_state", name="bloom")
    msg = js.call("decode_sync", msg=js.call("generate_sync", doc="big", state="bloom")["msg"])
    js_bloom = unb64(msg["have"][0]["bloom"])
    ours = BloomFilter.from_hashes(bytes.fromhex(h) for h in big["hashes"])
    assert ours.encode() == js_bloom
    assert len(js_bloom) > len(big["hashes"])  # not trivially empty
    decoded = BloomFilter.decode(js_bloom)
    assert all(bytes.fromhex(h) in decoded for h in big["hashes"])
    outsiders = [bytes([i]) * 32 for i in range(200)]
    assert sum(h in decoded for h in outsiders) < 10  # ~1% false positives


def test_first_message_identical_to_js_up_to_flags(js: JsHelper, big: dict[str, Any]) -> None:
    doc = Document.from_chunks(big["change_bytes"])
    js.call("sync_state", name="first")
    theirs = unb64(js.call("generate_sync", doc="big", state="first")["msg"])
    ours = doc.generate_sync_message(SyncState())
    assert ours is not None and ours[0] == 0x42
    assert theirs.startswith(ours) and len(theirs) - len(ours) <= 8
    # and JS reads ours
    decoded = js.call("decode_sync", msg=b64(ours))
    assert decoded["heads"] == sorted(big["heads"]) and decoded["need"] == []


def test_empty_bloom_is_zero_bytes() -> None:
    assert BloomFilter.from_hashes([]).encode() == b""
    assert b"\x01" * 32 not in BloomFilter.decode(b"")


def test_message_roundtrip_through_js(js: JsHelper, big: dict[str, Any]) -> None:
    change = big["change_bytes"][5]
    h = [bytes.fromhex(x) for x in sorted(big["heads"])]
    msg = SyncMessage(
        heads=h,
        need=[b"\x01" * 32],
        have=[Have(h[:1], BloomFilter.from_hashes(h)), Have()],
        changes=[change],
    )
    data = msg.encode()
    assert SyncMessage.decode(data) == msg
    decoded = js.call("decode_sync", msg=b64(data))
    assert decoded["heads"] == [x.hex() for x in h]
    assert decoded["need"] == ["01" * 32]
    assert [d["lastSync"] for d in decoded["have"]] == [[h[0].hex()], []]
    assert unb64(decoded["have"][0]["bloom"]) == msg.have[0].bloom.encode()
    assert [unb64(c) for c in decoded["changes"]] == [change]


def test_v2_type_and_trailing_flags_are_read() -> None:
    msg = SyncMessage(heads=[b"\x02" * 32], have=[Have()])
    data = msg.encode()
    assert SyncMessage.decode(b"\x43" + data[1:] + b"\x02\x02\x84") == msg
    with pytest.raises(AutomergeError, match="not a sync message") as info:
        SyncMessage.decode(b"\x44" + data[1:])
    assert info.value.offset == 0


def test_sync_state_encoding_matches_js(js: JsHelper) -> None:
    state = SyncState(shared_heads=[b"\x09" * 32, b"\x03" * 32])
    data = state.encode()
    assert data == b"\x43\x02" + b"\x03" * 32 + b"\x09" * 32
    js.call("sync_state", name="persisted", data=b64(data))
    assert unb64(js.call("encode_state", name="persisted")["data"]) == data
    assert SyncState.decode(data).shared_heads == sorted(state.shared_heads)
    with pytest.raises(AutomergeError):
        SyncState.decode(b"\x43\x05" + b"\x00" * 40)


@FUZZ
@given(
    st.lists(hashes32, max_size=3),
    st.lists(hashes32, max_size=3),
    st.lists(st.tuples(st.lists(hashes32, max_size=2), st.lists(hashes32, max_size=5)), max_size=2),
    st.lists(st.binary(max_size=40), max_size=3),
    st.data(),
)
def test_message_decoder_truncation_and_garbage(
    heads: list[bytes],
    need: list[bytes],
    have: list[tuple[list[bytes], list[bytes]]],
    changes: list[bytes],
    data: st.DataObject,
) -> None:
    msg = SyncMessage(
        heads, need, [Have(ls, BloomFilter.from_hashes(b)) for ls, b in have], changes
    )
    encoded = msg.encode()
    assert SyncMessage.decode(encoded) == msg
    cut = data.draw(st.integers(0, len(encoded) - 1))
    try:
        SyncMessage.decode(encoded[:cut])
    except AutomergeError as e:
        assert 0 <= e.offset <= cut and e.reason
    else:
        pytest.fail("a truncated message decoded")


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes_in_every_decoder(data: bytes) -> None:
    for decode in (SyncMessage.decode, BloomFilter.decode, SyncState.decode):
        for blob in (data, b"\x42" + data, b"\x43" + data):
            try:
                decode(blob)
            except AutomergeError as e:
                assert 0 <= e.offset <= len(blob) and e.reason
    doc = Document()
    try:
        doc.receive_sync_message(SyncState(), b"\x42" + data)
    except AutomergeError:
        pass
    assert len(doc) == 0 or doc.heads


@FUZZ
@given(st.binary(max_size=12), st.binary(max_size=64))
def test_bloom_with_hostile_header_is_bounded(header: bytes, body: bytes) -> None:
    try:
        f = BloomFilter.decode(header + body)
    except AutomergeError as e:
        assert e.reason
    else:
        assert len(f.bits) <= len(header) + len(body)
        assert isinstance(b"\x05" * 32 in f, bool)


@FUZZ
@given(st.lists(hashes32, min_size=1, max_size=30), st.lists(hashes32, max_size=30))
def test_membership_matches_probe_positions(members: list[bytes], others: list[bytes]) -> None:
    f = BloomFilter.from_hashes(members)
    assert all(h in f for h in members)
    for h in others:
        bits = f.bits
        expected = all(bits[p >> 3] & (1 << (p & 7)) for p in f._positions(h))
        assert (h in f) == expected


@pytest.mark.parametrize("changes", [1, 2, 3, 7, 13])
def test_small_bloom_filters_identical_to_js(js: JsHelper, changes: int) -> None:
    gen = js.call("generate", seed=changes, changes=changes, actors=1, big=False, name="small")
    assert len(gen["hashes"]) == changes
    js.call("sync_state", name="small")
    msg = js.call("decode_sync", msg=js.call("generate_sync", doc="small", state="small")["msg"])
    ours = BloomFilter.from_hashes(bytes.fromhex(h) for h in gen["hashes"]).encode()
    assert ours == unb64(msg["have"][0]["bloom"])
    assert len(ours) == 3 + (changes * 10 + 7) // 8

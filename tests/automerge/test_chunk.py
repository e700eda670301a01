from __future__ import annotations

import hashlib
import zlib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncserver.automerge import AutomergeError, Change, Document, DocumentChunk, parse_chunks
from syncserver.automerge import chunk as chunk_module
from syncserver.automerge.chunk import MAGIC, compress_change, wrap_chunk
from syncserver.automerge.leb128 import encode_uleb

from .jshelper import JsHelper, b64, unb64
from .strategies import FUZZ, actor, make_change


def test_every_js_change_parses_with_js_hash_and_header(js: JsHelper, big: dict[str, Any]) -> None:
    changes = big["change_bytes"]
    assert len(changes) > 2500
    parsed = [parse_chunks(c) for c in changes]
    assert all(len(p) == 1 and isinstance(p[0], Change) for p in parsed)
    assert [p[0].hash.hex() for p in parsed] == big["hashes"]
    assert len({p[0].actor for p in parsed}) == 4
    for i in (0, 1, len(changes) // 2, len(changes) - 1):
        change = parsed[i][0]
        assert isinstance(change, Change)
        want = js.call("decode_change", data=b64(changes[i]))
        assert change.hash.hex() == want["hash"]
        assert [d.hex() for d in change.deps] == want["deps"]
        assert change.actor.hex() == want["actor"]
        assert (change.seq, change.start_op, change.time) == (
            want["seq"],
            want["startOp"],
            want["time"],
        )
        assert change.message == want["message"]
        assert change.raw == changes[i]


def test_js_heads_and_unicode_messages(big: dict[str, Any]) -> None:
    doc = Document()
    for c in big["change_bytes"]:
        doc.apply(c)
    assert [h.hex() for h in doc.heads] == sorted(big["heads"])
    messages = {c.message for c in doc.changes() if c.message}
    assert any(m and not m.isascii() for m in messages)
    assert max(len(c.raw) for c in doc.changes()) > 5000  # the large values


def test_document_chunk_is_recognised_with_js_heads(big: dict[str, Any]) -> None:
    saved = unb64(big["save"])
    (chunk,) = parse_chunks(saved)
    assert isinstance(chunk, DocumentChunk)
    assert chunk.raw == saved
    assert [h.hex() for h in chunk.heads] == sorted(big["heads"])
    doc = Document.load(saved)
    assert doc.document_chunks == [chunk]
    assert doc.heads == []


def test_compressed_change_has_uncompressed_hash_and_loads_in_js(
    js: JsHelper, big: dict[str, Any]
) -> None:
    raw = max(big["change_bytes"], key=len)
    (change,) = parse_chunks(raw)
    assert isinstance(change, Change)
    packed = compress_change(change)
    assert packed[8] == 2 and len(packed) < len(raw)
    (again,) = parse_chunks(packed)
    assert again == change
    # JS agrees: a blob with the compressed chunk in place of the original loads.
    index = big["change_bytes"].index(raw)
    blob = b"".join(c if i != index else packed for i, c in enumerate(big["change_bytes"]))
    assert js.call("load", data=b64(blob))["heads"] == big["heads"]


def _corrupt_checksum(chunk: bytes) -> bytes:
    return chunk[:4] + bytes([chunk[4] ^ 1]) + chunk[5:]


def test_rejections_carry_offset_and_reason() -> None:
    good = make_change([], 1, 1)
    cases = [
        (b"\x00" + good[1:], 0, "magic"),
        (_corrupt_checksum(good), 4, "checksum"),
        (good + good[:-1], len(good) + 9, "exceeds"),
        (wrap_chunk(3, b"bundle"), 8, "unsupported chunk type 3"),
        (wrap_chunk(9, b"x"), 8, "unsupported chunk type 9"),
        (wrap_chunk(2, b"\xff\xff"), 10, "DEFLATE"),
    ]
    for data, offset, reason in cases:
        with pytest.raises(AutomergeError, match=reason) as info:
            parse_chunks(data)
        assert info.value.offset == offset, reason


def test_start_op_zero_and_bad_utf8_rejected() -> None:
    body = b"\x00" + encode_uleb(16) + actor(1) + b"\x01\x00\x00\x00\x00\x00"
    with pytest.raises(AutomergeError, match="startOp"):
        parse_chunks(wrap_chunk(1, body))
    body = b"\x00" + encode_uleb(16) + actor(1) + b"\x01\x01\x00\x02\xff\xfe\x00\x00"
    with pytest.raises(AutomergeError, match="UTF-8"):
        parse_chunks(wrap_chunk(1, body))


def test_compression_bomb_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chunk_module, "MAX_INFLATED", 64 * 1024)
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    bomb = c.compress(b"\x00" * (1024 * 1024)) + c.flush()
    assert len(bomb) < 2048
    data = MAGIC + b"\x00" * 4 + b"\x02" + encode_uleb(len(bomb)) + bomb
    with pytest.raises(AutomergeError, match="inflate beyond"):
        parse_chunks(data)


def test_hash_covers_type_length_and_body() -> None:
    chunk = make_change([], 1, 1, message="hello")
    (change,) = parse_chunks(chunk)
    assert change.hash == hashlib.sha256(chunk[8:]).digest()
    assert chunk[4:8] == change.hash[:4]


def test_columns_and_extra_bytes_kept_verbatim() -> None:
    cols = b"\x02\x01\x03\x02\x02" + b"abcde" + b"extra"
    from syncserver.automerge.chunk import encode_change

    chunk = encode_change(deps=[], actor=actor(1), seq=1, start_op=1, columns=cols)
    (change,) = parse_chunks(chunk)
    assert change.raw == chunk and change.raw.endswith(cols)
    too_long = encode_change(deps=[], actor=actor(1), seq=1, start_op=1, columns=b"\x01\x01\x09ab")
    with pytest.raises(AutomergeError, match="columns need 9 bytes"):
        parse_chunks(too_long)


@FUZZ
@given(st.data())
def test_truncation_and_bit_flips_only_raise_automerge_error(data: st.DataObject) -> None:
    deps = [hashlib.sha256(b"%d" % i).digest() for i in range(data.draw(st.integers(0, 3)))]
    chunk = make_change(deps, 1, data.draw(st.integers(1, 2**40)), message=data.draw(st.text()))
    cut = data.draw(st.integers(1, len(chunk) - 1))
    with pytest.raises(AutomergeError) as info:
        parse_chunks(chunk[:cut])
    assert 0 <= info.value.offset <= len(chunk)
    pos = data.draw(st.integers(0, len(chunk) - 1))
    flipped = chunk[:pos] + bytes([chunk[pos] ^ data.draw(st.integers(1, 255))]) + chunk[pos + 1 :]
    try:
        parsed = parse_chunks(flipped)
    except AutomergeError as e:
        assert 0 <= e.offset <= len(flipped) and e.reason
    else:  # only a flip inside the length can leave a valid parse (never: checksum)
        pytest.fail(f"flipped byte {pos} still parsed: {parsed}")


@FUZZ
@given(st.binary(max_size=200))
def test_random_bytes_only_raise_automerge_error(data: bytes) -> None:
    for blob in (data, MAGIC + data, MAGIC + hashlib.sha256(data).digest()[:4] + data):
        try:
            parse_chunks(blob)
        except AutomergeError as e:
            assert 0 <= e.offset <= len(blob) and e.reason


@FUZZ
@given(st.binary(min_size=1, max_size=300), st.sampled_from([0, 1, 2]))
def test_valid_checksum_random_body_only_raises_automerge_error(body: bytes, kind: int) -> None:
    blob = wrap_chunk(kind, body)
    if kind == 2:
        c = zlib.compressobj(9, zlib.DEFLATED, -15)
        deflated = c.compress(body) + c.flush()
        checksum = hashlib.sha256(b"\x01" + encode_uleb(len(body)) + body).digest()[:4]
        blob = MAGIC + checksum + b"\x02" + encode_uleb(len(deflated)) + deflated
    try:
        (chunk,) = parse_chunks(blob)
    except AutomergeError as e:
        assert 0 <= e.offset <= len(blob) and e.reason
    else:
        assert isinstance(chunk, DocumentChunk if kind == 0 else Change)

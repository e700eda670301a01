from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncserver.automerge import AutomergeError
from syncserver.automerge.leb128 import MAX_I64, MAX_U64, MIN_I64, Reader, encode_sleb, encode_uleb

from .strategies import FUZZ


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (0, "00"),
        (1, "01"),
        (127, "7f"),
        (128, "8001"),
        (624485, "e58e26"),
        (MAX_U64, "ff" * 9 + "01"),
    ],
)
def test_uleb_known_vectors(value: int, encoded: str) -> None:
    assert encode_uleb(value).hex() == encoded
    assert Reader(bytes.fromhex(encoded)).uleb() == value


@pytest.mark.parametrize(
    ("value", "encoded"), [(0, "00"), (-1, "7f"), (63, "3f"), (64, "c000"), (-123456, "c0bb78")]
)
def test_sleb_known_vectors(value: int, encoded: str) -> None:
    assert encode_sleb(value).hex() == encoded
    assert Reader(bytes.fromhex(encoded)).sleb() == value


@FUZZ
@given(st.integers(0, MAX_U64), st.integers(MIN_I64, MAX_I64))
def test_roundtrip(u: int, s: int) -> None:
    r = Reader(encode_uleb(u) + encode_sleb(s))
    assert r.uleb() == u
    assert r.sleb() == s
    assert r.at_end()


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x80" * 5, "truncated"),
        (b"\xff" * 10 + b"\x01", "longer than 10"),
        (b"\xff" * 9 + b"\x02", "exceeds 64 bits"),
        (b"\x80\x00", "overlong"),
    ],
)
def test_uleb_rejects(data: bytes, reason: str) -> None:
    with pytest.raises(AutomergeError, match=reason) as info:
        Reader(b"ab" + data, 2).uleb()
    assert info.value.offset == 2


def test_huge_leb_does_not_loop_or_allocate() -> None:
    data = b"\xff" * 1_000_000
    with pytest.raises(AutomergeError) as info:
        Reader(data).uleb()
    assert info.value.offset == 0
    with pytest.raises(AutomergeError, match="cannot fit"):
        Reader(encode_uleb(MAX_U64) + b"x").count(32, "things")


@FUZZ
@given(st.binary(max_size=24))
def test_random_bytes_only_raise_automerge_error(data: bytes) -> None:
    for method in ("uleb", "sleb", "u8"):
        r = Reader(data)
        try:
            getattr(r, method)()
        except AutomergeError as e:
            assert 0 <= e.offset <= len(data)
            assert e.reason
        else:
            assert 0 < r.pos <= len(data)

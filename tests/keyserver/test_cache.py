from __future__ import annotations

from keyserver.cache import AnswerCache


def test_put_get_and_invalidate() -> None:
    cache = AnswerCache(10)
    cache.put("hearth", "did:a", b"1", cache.epoch())
    cache.put("roomy", "did:a", b"2", cache.epoch())
    cache.put("hearth", "did:b", b"3", cache.epoch())
    assert cache.get("hearth", "did:a") == b"1" and cache.get("roomy", "did:a") == b"2"
    cache.invalidate("did:a")
    assert cache.get("hearth", "did:a") is None and cache.get("roomy", "did:a") is None
    assert cache.get("hearth", "did:b") == b"3"


def test_lookup_that_raced_a_change_is_not_stored() -> None:
    cache = AnswerCache(10)
    epoch = cache.epoch()  # a lookup starts...
    cache.invalidate("did:a")  # ...the keys change meanwhile...
    cache.put("hearth", "did:a", b"old", epoch)  # ...its answer is dropped
    assert cache.get("hearth", "did:a") is None


def test_bounded_lru() -> None:
    cache = AnswerCache(3)
    for i in range(3):
        cache.put("k", f"d{i}", b"x", cache.epoch())
    cache.get("k", "d0")
    cache.put("k", "d3", b"x", cache.epoch())
    assert len(cache) == 3
    assert cache.get("k", "d1") is None and cache.get("k", "d0") == b"x"
    off = AnswerCache(0)
    off.put("k", "d", b"x", off.epoch())
    assert off.get("k", "d") is None

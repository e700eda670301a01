"""Python SyncState against JS generateSyncMessage/receiveSyncMessage until quiescent."""

from __future__ import annotations

from typing import Any

import pytest

from syncserver.automerge import Document, SyncState

from .jshelper import JsHelper, b64, unb64

MAX_ROUNDS = 40


def py_js_sync(
    js: JsHelper, doc: Document, js_doc: str, state: SyncState, js_state: str
) -> tuple[int, int]:
    """Alternate Python -> JS, JS -> Python until neither has anything to say."""
    messages = size = 0
    for _ in range(MAX_ROUNDS):
        ours = doc.generate_sync_message(state)
        if ours is not None:
            messages += 1
            size += len(ours)
            js.call("receive_sync", doc=js_doc, state=js_state, msg=b64(ours))
        reply = js.call("generate_sync", doc=js_doc, state=js_state)["msg"]
        if reply is not None:
            theirs = unb64(reply)
            messages += 1
            size += len(theirs)
            doc.receive_sync_message(state, theirs)
        if ours is None and reply is None:
            return messages, size
    pytest.fail("sync did not quiesce")


def js_js_sync(js: JsHelper, a_save: bytes | None, b_save: bytes | None) -> dict[str, Any]:
    """The same case run between two JS peers, for the message-count baseline."""
    js.call("new", name="ref_a", data=b64(a_save) if a_save else None)
    js.call("new", name="ref_b", data=b64(b_save) if b_save else None)
    return js.call("js_sync", a="ref_a", b="ref_b")


def js_doc(js: JsHelper, name: str) -> dict[str, Any]:
    reply = js.call("doc", name=name)
    reply["change_bytes"] = [unb64(c) for c in reply["changes"]]
    return reply


def assert_converged(js: JsHelper, doc: Document, name: str) -> None:
    theirs = js_doc(js, name)
    assert [h.hex() for h in doc.heads] == sorted(theirs["heads"])
    assert doc.missing_deps() == [] and doc.queued == 0
    assert js.call("load", data=b64(doc.save()))["json"] == theirs["json"]


def test_empty_python_from_full_js(js: JsHelper, big: dict[str, Any]) -> None:
    js.call("new", name="full", data=big["save"])
    js.call("sync_state", name="s1")
    doc = Document()
    messages, size = py_js_sync(js, doc, "full", SyncState(), "s1")
    assert len(doc) == len(big["hashes"])
    assert_converged(js, doc, "full")
    baseline = js_js_sync(js, None, unb64(big["save"]))
    assert messages <= baseline["messages"] + 1
    # JS-to-JS ships one compact document chunk (v2); v1 peers get every change chunk.
    assert size <= sum(map(len, big["change_bytes"])) * 1.05


def test_full_python_to_empty_js(js: JsHelper, big: dict[str, Any]) -> None:
    doc = Document.from_chunks(big["change_bytes"])
    js.call("new", name="empty")
    js.call("sync_state", name="s2")
    messages, size = py_js_sync(js, doc, "empty", SyncState(), "s2")
    assert_converged(js, doc, "empty")
    assert js_doc(js, "empty")["json"] == big["json"]
    baseline = js_js_sync(js, unb64(big["save"]), None)
    assert messages <= baseline["messages"] + 1
    assert size <= sum(map(len, big["change_bytes"])) * 1.05


def diverged(js: JsHelper, seed: int) -> Document:
    """JS docs "x" (Python's copy) and "y" share 150 changes and then diverge."""
    js.call("generate", seed=seed, changes=150, name="base", big=False)
    js.call("fork", name="x", **{"from": "base"}, actor="aa" * 16)
    js.call("fork", name="y", **{"from": "base"}, actor="bb" * 16)
    js.call("edit", name="x", seed=seed + 1, count=25)
    js.call("edit", name="y", seed=seed + 2, count=35)
    return Document.from_chunks(js_doc(js, "x")["change_bytes"])


def test_diverged_both_ways(js: JsHelper) -> None:
    doc = diverged(js, 21)
    x_save = doc.save()
    y_save = unb64(js_doc(js, "y")["save"])
    before = set(doc.heads)
    y_heads = {bytes.fromhex(h) for h in js_doc(js, "y")["heads"]}
    js.call("sync_state", name="s3")
    state = SyncState()
    messages, _ = py_js_sync(js, doc, "y", state, "s3")
    assert_converged(js, doc, "y")
    assert set(doc.heads) == before | y_heads and len(doc.heads) == 2
    assert state.shared_heads == doc.heads and not state.in_flight
    baseline = js_js_sync(js, x_save, y_save)
    assert messages <= baseline["messages"] + 2


def test_lost_sync_states_on_either_side(js: JsHelper) -> None:
    doc = diverged(js, 31)
    js.call("sync_state", name="s4")
    state = SyncState()
    py_js_sync(js, doc, "y", state, "s4")
    assert_converged(js, doc, "y")
    persisted = state.encode()

    # JS forgets its state (a new connection), edits; Python resumes from storage.
    js.call("edit", name="y", seed=5, count=4, step=200000)
    js.call("sync_state", name="s4")
    state = SyncState.decode(persisted)
    messages, _ = py_js_sync(js, doc, "y", state, "s4")
    assert_converged(js, doc, "y")
    assert messages <= 4

    # Python forgets its state, JS keeps a persisted one.
    js.call("edit", name="y", seed=6, count=3, step=300000)
    js.call("sync_state", name="s4", data=js.call("encode_state", name="s4")["data"])
    py_js_sync(js, doc, "y", SyncState(), "s4")
    assert_converged(js, doc, "y")

    # JS lost its data entirely: Python's stale lastSync makes JS reset and resync.
    js.call("new", name="lost")
    js.call("sync_state", name="s5")
    messages, _ = py_js_sync(js, doc, "lost", SyncState.decode(state.encode()), "s5")
    assert_converged(js, doc, "lost")
    js.call("new", name="ref_a", data=b64(doc.save()))
    js.call("new", name="ref_b")
    baseline = js.call("js_sync", a="ref_a", b="ref_b", state_a=b64(state.encode()))
    assert baseline["heads_b"] == [h.hex() for h in doc.heads]
    assert messages <= baseline["messages"] + 1


def test_python_lost_data_resyncs_from_js(js: JsHelper) -> None:
    doc = diverged(js, 41)
    js.call("sync_state", name="s6")
    state = SyncState()
    py_js_sync(js, doc, "y", state, "s6")
    # Python lost its document but JS still holds the sync state of the old connection.
    js.call("sync_state", name="s6", data=js.call("encode_state", name="s6")["data"])
    fresh = Document()
    py_js_sync(js, fresh, "y", SyncState(), "s6")
    assert_converged(js, fresh, "y")


def test_many_round_trips_with_interleaved_edits(js: JsHelper) -> None:
    doc = diverged(js, 51)
    js.call("sync_state", name="s7")
    state = SyncState()
    total = 0
    for step in range(12):
        js.call("edit", name="y", seed=100 + step, count=1 + step % 3, step=400000 + 10 * step)
        js.call("edit", name="x", seed=200 + step, count=1 + step % 2, step=500000 + 10 * step)
        added = doc.apply(b"".join(js_doc(js, "x")["change_bytes"]))
        assert len(added) == 1 + step % 2
        # one exchange each way, without waiting for quiescence
        ours = doc.generate_sync_message(state)
        if ours is not None:
            total += 1
            js.call("receive_sync", doc="y", state="s7", msg=b64(ours))
        reply = js.call("generate_sync", doc="y", state="s7")["msg"]
        if reply is not None:
            total += 1
            new = doc.receive_sync_message(state, unb64(reply))
            assert all(doc.has(h) for h in new)
    total += py_js_sync(js, doc, "y", state, "s7")[0]
    assert_converged(js, doc, "y")
    assert total <= 2 * 12 + 6


def test_receive_reports_newly_applied_hashes(js: JsHelper) -> None:
    doc = diverged(js, 61)
    known = {c.hash for c in doc.changes()}
    js.call("sync_state", name="s8")
    state = SyncState()
    reported: list[bytes] = []
    for _ in range(MAX_ROUNDS):
        ours = doc.generate_sync_message(state)
        if ours is not None:
            js.call("receive_sync", doc="y", state="s8", msg=b64(ours))
        reply = js.call("generate_sync", doc="y", state="s8")["msg"]
        if reply is not None:
            reported.extend(doc.receive_sync_message(state, unb64(reply)))
        if ours is None and reply is None:
            break
    assert len(reported) == len(set(reported)) == 35
    assert set(reported) == {c.hash for c in doc.changes()} - known


def js_first_sync(js: JsHelper, doc: Document, js_doc: str, state: SyncState, js_state: str) -> int:
    """Like py_js_sync, but the JS peer speaks first."""
    messages = 0
    for _ in range(MAX_ROUNDS):
        reply = js.call("generate_sync", doc=js_doc, state=js_state)["msg"]
        if reply is not None:
            messages += 1
            doc.receive_sync_message(state, unb64(reply))
        ours = doc.generate_sync_message(state)
        if ours is not None:
            messages += 1
            js.call("receive_sync", doc=js_doc, state=js_state, msg=b64(ours))
        if ours is None and reply is None:
            return messages
    pytest.fail("sync did not quiesce")


@pytest.mark.parametrize("seed", [71, 72, 73])
def test_js_initiates_on_diverged_documents(js: JsHelper, seed: int) -> None:
    doc = diverged(js, seed)
    x_save, y_save = doc.save(), unb64(js_doc(js, "y")["save"])
    js.call("sync_state", name="s9")
    messages = js_first_sync(js, doc, "y", SyncState(), "s9")
    assert_converged(js, doc, "y")
    baseline = js_js_sync(js, y_save, x_save)  # JS "y" speaks first there too
    assert messages <= baseline["messages"] + 1

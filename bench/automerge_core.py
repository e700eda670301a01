"""Automerge core benchmark: pure-Python core against @automerge/automerge (JS), one run.

    .venv/bin/python bench/automerge_core.py [--changes N]

Needs `npm ci` in tests/interop (scripts/install-test-deps.sh does it). Measures:

1. parse + hash throughput of change chunks (changes/s, MB/s), and the same plus
   building the change graph (``Document.from_chunks``);
2. syncing a document of N changes (default 10,000) to an empty peer, both ways:
   Python-to-JS versus JS-to-JS on the same document (time, messages, bytes).

JS-to-JS runs inside one Node process. Python-to-JS crosses a pipe to Node, so its
wall time includes the JS side and the IPC; "python cpu" is the CPU time spent
inside the Python core alone, compared with the CPU time of the whole JS-to-JS run
(both peers), so the ratio holds on a busy machine. Prints our/JS ratios.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from syncserver.automerge import Document, SyncState, parse_chunks  # noqa: E402
from tests.automerge.jshelper import JsHelper, b64, unb64  # noqa: E402


def best_of(n: int, fn: Callable[[], object]) -> float:
    times = []
    for _ in range(n):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return min(times)


def py_js_sync(js: JsHelper, doc: Document, js_doc: str) -> tuple[float, float, int, int]:
    """Sync to quiescence, Python speaking first; (wall s, python cpu s, messages, bytes)."""
    state = SyncState()
    js.call("sync_state", name="bench")
    py_time = 0.0
    messages = size = 0
    t0 = time.perf_counter()
    while True:
        t = time.process_time()
        ours = doc.generate_sync_message(state)
        py_time += time.process_time() - t
        if ours is not None:
            messages += 1
            size += len(ours)
            js.call("receive_sync", doc=js_doc, state="bench", msg=b64(ours))
        reply = js.call("generate_sync", doc=js_doc, state="bench")["msg"]
        if reply is not None:
            theirs = unb64(reply)
            messages += 1
            size += len(theirs)
            t = time.process_time()
            doc.receive_sync_message(state, theirs)
            py_time += time.process_time() - t
        if ours is None and reply is None:
            return time.perf_counter() - t0, py_time, messages, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--changes", type=int, default=10_000)
    args = parser.parse_args()

    js = JsHelper(timeout=3600)
    try:
        t0 = time.perf_counter()
        gen = js.call(
            "generate", seed=42, changes=args.changes, actors=3, merges=0.005, big=False, name="src"
        )
        print(f"generated {len(gen['changes'])} changes in JS in {time.perf_counter() - t0:.1f} s")
        chunks = [unb64(c) for c in gen["changes"]]
        blob = b"".join(chunks)
        n, mb = len(chunks), len(blob) / 1e6

        t_parse = best_of(3, lambda: parse_chunks(blob))
        t_doc = best_of(3, lambda: Document.from_chunks(chunks))
        print("\n## parse + hash (Python core)")
        print(f"changes: {n}, bytes: {len(blob)}")
        print(f"parse_chunks:          {n / t_parse:10.0f} changes/s  {mb / t_parse:6.1f} MB/s")
        print(f"Document.from_chunks:  {n / t_doc:10.0f} changes/s  {mb / t_doc:6.1f} MB/s")

        full = Document.from_chunks(chunks)
        assert [h.hex() for h in full.heads] == sorted(gen["heads"])

        print("\n## sync a full document to an empty peer")
        print(f"{'case':34} {'wall s':>8} {'cpu s':>9} {'msgs':>5} {'bytes':>9}")
        rows = []
        js.call("new", name="empty_js")
        wall, py, msgs, size = py_js_sync(js, full, "empty_js")
        assert js.call("doc", name="empty_js")["heads"] == gen["heads"]
        rows.append(("Python(full) -> JS(empty)", wall, py, msgs, size))
        empty_py = Document()
        js.call("new", name="full_js", data=gen["save"])
        wall, py, msgs, size = py_js_sync(js, empty_py, "full_js")
        assert empty_py.heads == full.heads
        rows.append(("JS(full) -> Python(empty)", wall, py, msgs, size))
        js.call("new", name="a", data=gen["save"])
        js.call("new", name="b")
        ref = js.call("js_sync", a="a", b="b")
        assert ref["heads_b"] == gen["heads"]
        for name, wall, py, msgs, size in rows:
            print(f"{name:34} {wall:8.2f} {py:9.2f} {msgs:5d} {size:9d}")
        ref_s = ref["ms"] / 1000
        ref_cpu = ref["cpu_ms"] / 1000
        label = "JS(full) -> JS(empty)"
        print(f"{label:34} {ref_s:8.2f} {ref_cpu:9.2f} {ref['messages']:5d} {ref['bytes']:9d}")

        print("\n## ratios (ours / JS-to-JS)")
        for name, wall, py, msgs, size in rows:
            print(
                f"{name:34} wall x{wall / ref_s:5.1f}  python cpu x{py / ref_cpu:5.1f}  "
                f"messages x{msgs / ref['messages']:.2f}  bytes x{size / ref['bytes']:.1f}"
            )
        print(
            "(JS-to-JS negotiates v2 and ships one compressed document chunk; a v1 peer like"
            " ours gets every change chunk, hence the byte ratio.)"
        )
    finally:
        js.close()


if __name__ == "__main__":
    main()

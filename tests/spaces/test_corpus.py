"""The shared corpus (tests/spaces/corpus/*.json, written by make_corpus.py): every file's
ops, delivered in its order, reversed and shuffled, give exactly its expected state and
refusals. The PWA's TypeScript implementation runs the same files."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any, get_args

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hearth.spaces import AuthorityLog, OpError, OpId, canonical
from hearth.spaces.ops import Body
from tests.spaces import make_corpus

FILES = sorted(make_corpus.CORPUS.glob("*.json"))
DOCS = Path(__file__).parents[2] / "docs" / "spaces.md"


def _documented_reasons() -> list[str]:
    """The reason codes listed in docs/spaces.md, "Reason codes"."""
    text = DOCS.read_text().split("## Reason codes", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|")[2] for line in text.splitlines() if line.startswith("| ")][1:]
    return [code for row in rows for code in re.findall(r"`([a-z-]+)`", row)]


REASONS = _documented_reasons()


def _deliver(doc: dict[str, Any], order: list[int]) -> tuple[list[dict[str, object]], bytes]:
    log = AuthorityLog(OpId(doc["space"]))
    refused = []
    for i in order:
        try:
            log.add(doc["ops"][i].encode())
        except OpError as e:
            refused.append({"index": i, "reason": e.reason})
    refused.sort(key=lambda r: r["index"])  # type: ignore[arg-type, return-value]
    return refused, canonical(log.state.to_json())


def test_corpus_covers_the_scenarios() -> None:
    assert {f.stem for f in FILES} == set(make_corpus.SCENARIOS)


@pytest.mark.parametrize("path", FILES, ids=[f.stem for f in FILES])
def test_corpus_file(path: Path) -> None:
    doc = json.loads(path.read_text())
    n = len(doc["ops"])
    want_state = canonical(doc["expect"]["state"])
    orders = [list(range(n)), list(reversed(range(n)))]
    for seed in range(3):
        order = list(range(n))
        random.Random(seed).shuffle(order)
        orders.append(order)
    for order in orders:
        refused, state = _deliver(doc, order)
        assert refused == doc["expect"]["refused"], order
        assert state == want_state, order


def test_corpus_is_up_to_date() -> None:
    """make_corpus.py regenerates the files byte for byte (keys and times are fixed)."""
    for name in make_corpus.SCENARIOS:
        assert make_corpus.build(name) == (make_corpus.CORPUS / f"{name}.json").read_text(), name


def test_corpus_covers_every_op_kind_and_reason() -> None:
    kinds: set[str] = set()
    reasons: set[str] = set()
    for path in FILES:
        doc = json.loads(path.read_text())
        for wire in doc["ops"]:
            try:
                kinds.add(json.loads(wire)["op"]["type"])
            except (ValueError, KeyError, TypeError):
                pass
        reasons.update(r["reason"] for r in doc["expect"]["refused"])
        reasons.update(doc["expect"]["state"]["rejected"].values())
    assert kinds >= {cls.TYPE for cls in get_args(Body)}
    # Not in the corpus: not-utf8 (the files hold strings), log-full and too-many-pending
    # (they depend on arrival order; test_log.py), actor-taken (derived actor ids make it
    # unreachable), bad-invite-token (tokens never travel in ops: test_invites.py).
    outside = {"not-utf8", "log-full", "too-many-pending", "actor-taken", "bad-invite-token"}
    assert reasons == set(REASONS) - outside


@settings(max_examples=400)
@given(st.data())
def test_corpus_in_any_order_read_after_every_op(data: st.DataObject) -> None:
    """Any delivery order, the state read after each op (the walk continuing, ops waiting
    for parents, re-runs and revocation rounds all on the way), ends at the expected state."""
    path = data.draw(st.sampled_from(FILES))
    doc = json.loads(path.read_text())
    order = data.draw(st.permutations(range(len(doc["ops"]))))
    log = AuthorityLog(OpId(doc["space"]))
    refused = []
    for i in order:
        try:
            log.add(doc["ops"][i].encode())
        except OpError as e:
            refused.append({"index": i, "reason": e.reason})
        log.state  # noqa: B018
    assert sorted(refused, key=lambda r: r["index"]) == doc["expect"]["refused"]
    assert canonical(log.state.to_json()) == canonical(doc["expect"]["state"])

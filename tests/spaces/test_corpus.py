"""The shared corpus (tests/spaces/corpus/*.json, written by make_corpus.py): every file's
ops, delivered in its order, reversed and shuffled, give exactly its expected state and
refusals. The PWA's TypeScript implementation runs the same files."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from hearth.spaces import AuthorityLog, OpError, OpId, canonical
from tests.spaces import make_corpus

FILES = sorted(make_corpus.CORPUS.glob("*.json"))


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

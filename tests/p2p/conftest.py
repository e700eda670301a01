"""A 1,000-change Automerge document made by the real @automerge/automerge (Node)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.automerge.jshelper import JsHelper


@pytest.fixture(scope="session")
def changes_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """JSON list of base64 change chunks in causal order (3 actors, concurrent edits)."""
    js = JsHelper()
    try:
        reply = js.call("generate", seed=7, changes=1010, actors=3)
    finally:
        js.close()
    changes = reply["changes"][:1000]  # a causal-order prefix is causally complete
    assert len(changes) == 1000
    path: Path = tmp_path_factory.mktemp("p2p") / "changes.json"
    path.write_text(json.dumps(changes))
    yield str(path)

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from .jshelper import JsHelper, unb64


@pytest.fixture(scope="session")
def js() -> Iterator[JsHelper]:
    helper = JsHelper()
    try:
        yield helper
    finally:
        helper.close()


@pytest.fixture(scope="session")
def big(js: JsHelper) -> dict[str, Any]:
    """A JS document: 4 actors, ~3000 changes, concurrent branches and merges."""
    reply = js.call("generate", seed=11, changes=3000, actors=4, merges=0.03, name="big")
    reply["change_bytes"] = [unb64(c) for c in reply["changes"]]
    return reply

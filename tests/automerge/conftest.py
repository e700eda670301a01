from __future__ import annotations

from collections.abc import Iterator

import pytest

from .jshelper import JsHelper


@pytest.fixture(scope="session")
def js() -> Iterator[JsHelper]:
    helper = JsHelper()
    try:
        yield helper
    finally:
        helper.close()

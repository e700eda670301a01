from __future__ import annotations

import random
from typing import Any

from syncserver.automerge import Document
from syncserver.automerge.chunk import MAGIC

from .jshelper import JsHelper, b64


def test_export_of_shuffled_changes_loads_in_js_equal_to_original(
    js: JsHelper, big: dict[str, Any]
) -> None:
    shuffled = big["change_bytes"][:]
    random.Random(5).shuffle(shuffled)
    doc = Document.from_chunks(shuffled)
    assert doc.queued == 0 and len(doc) == len(shuffled)
    blob = doc.save()
    assert blob.startswith(MAGIC) and blob.count(MAGIC) >= len(shuffled)
    loaded = js.call("load", data=b64(blob))
    assert loaded["heads"] == big["heads"]
    assert loaded["json"] == big["json"]
    # and it round-trips through Python unchanged
    assert Document.load(blob).save() == blob


def test_export_excludes_orphans_so_js_can_load_it(js: JsHelper, big: dict[str, Any]) -> None:
    changes = big["change_bytes"][:50]
    doc = Document.from_chunks(changes[:20] + changes[21:])
    assert doc.queued > 0 and doc.missing_deps()
    loaded = js.call("load", data=b64(doc.save()))
    assert sorted(loaded["heads"]) == [h.hex() for h in doc.heads]
    whole = Document.from_chunks(changes)
    assert js.call("load", data=b64(whole.save()))["heads"] == sorted(h.hex() for h in whole.heads)

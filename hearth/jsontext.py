"""Strings JSON can carry but UTF-8 cannot: lone surrogates. Plain functions, no I/O.

A JSON text may escape a lone surrogate (`"\\ud800"`); `json.loads` accepts it
and returns a `str` that cannot be encoded again, so every later step that
echoes, stores or hashes it fails (a 500, a dead connection). Every JSON input
is checked once where it is parsed: bodies in `hearth.http.parse_json_object`,
the keyserver's register body, router frame headers.

Decode the bytes as strict UTF-8 before `json.loads`: given bytes, `json.loads`
decodes with `surrogatepass`, so the three bytes of an encoded surrogate
would become a lone surrogate without any escape.

Cost: one regex scan of the text; decoded values are walked only when it finds
a `\\uD800`..`\\uDFFF` escape, the only way such a string gets into text
decoded strictly.
"""

from __future__ import annotations

import re
from typing import Any

SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")


def encodable(value: Any) -> bool:
    """True if every string in `value` (a decoded JSON value, keys included)
    can be encoded as UTF-8, i.e. holds no lone surrogate."""
    stack = [value]
    while stack:
        item = stack.pop()
        if type(item) is str:
            if not item.isascii():
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    return False
        elif type(item) is list:
            stack.extend(item)
        elif type(item) is dict:
            stack.extend(item.keys())
            stack.extend(item.values())
    return True


def decoded_encodable(text: str, value: Any) -> bool:
    """True unless `value`, decoded from the JSON `text` (itself decoded as
    strict UTF-8), holds a lone surrogate; walked only if `text` escapes one."""
    return SURROGATE_ESCAPE.search(text) is None or encodable(value)

"""Canonical JSON, op ids and op signatures for space authority logs.

Canonical JSON here is a strict subset that JavaScript reproduces byte for
byte with `JSON.stringify` over objects whose keys are sorted:

- values are objects, arrays, strings, integers within +-(2**53 - 1) and
  booleans; no floats, no null;
- object keys are ASCII and sorted by code point (= byte order, = UTF-16
  order for ASCII), no duplicates;
- no whitespace; strings escape only `"`, `\\` and control characters
  (`\\b \\f \\n \\r \\t` short forms, others `\\u00xx` lowercase), everything
  else is literal UTF-8.

A byte string is canonical iff it parses under these rules and re-encodes to
the same bytes; that one comparison also refuses duplicate keys, floats
written as `1.0` or `1e2`, and any whitespace.

Costs: parsing is `json.loads` plus one re-encode (linear in the size, which
callers bound before parsing); the op id is one SHA-256 of the op's bytes.
"""

from __future__ import annotations

import hashlib
import json
from typing import Protocol, TypeAlias

from hearth.spaces.errors import OpError

MAX_SAFE_INT = 2**53 - 1
OP_DOMAIN = b"hearth-space-op-v1\n"
INVITE_DOMAIN = b"hearth-space-invite-v1\n"
ACTOR_DOMAIN = b"hearth-actor-v1\n"

Json: TypeAlias = dict[str, "Json"] | list["Json"] | str | int | bool


class Signer(Protocol):
    """Anything that signs bytes with an Ed25519 key (e.g. `hearth.jwt.Signer`)."""

    def sign(self, message: bytes) -> bytes: ...


def canonical(value: Json) -> bytes:
    """The canonical bytes of `value`; raises OpError('bad-value') outside the subset."""
    _check(value)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()


def _check(value: Json) -> None:
    if isinstance(value, str):
        if not value.isascii():
            try:
                value.encode()
            except UnicodeEncodeError as e:
                raise OpError("bad-value", "string holds a lone surrogate") from e
        return
    if isinstance(value, bool):
        return
    if isinstance(value, int):
        if not -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
            raise OpError("bad-value", "integer outside +-(2**53 - 1)")
        return
    if isinstance(value, list):
        for v in value:
            _check(v)
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str) or not k.isascii():
                raise OpError("bad-value", "object keys must be ASCII strings")
            _check(v)
        return
    raise OpError("bad-value", f"{type(value).__name__} is not allowed in canonical JSON")


def _not_json(text: str) -> Json:
    # NaN and Infinity are not JSON (RFC 8259; JavaScript's JSON.parse refuses them).
    raise OpError("not-json", f"{text!r} is not JSON")


def _integer(text: str) -> Json:
    # Past 16 digits an integer is out of range anyway, and CPython refuses int() of
    # very long digit strings with a ValueError that would read as not-json. (Floats
    # parse as floats and are refused as not-canonical after the parse, so a float
    # before a syntax error does not decide the reason: JavaScript says not-json.)
    return int(text) if len(text) <= 17 else MAX_SAFE_INT + 1


def parse_canonical(data: bytes) -> Json:
    """Parse `data` as canonical JSON; raises OpError with reason not-utf8 / not-json /
    not-canonical. The caller must bound `len(data)` first."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise OpError("not-utf8", "op is not UTF-8") from e
    try:
        value: Json = json.loads(text, parse_int=_integer, parse_constant=_not_json)
    except OpError:
        raise
    # Deeply nested JSON raises RecursionError, not ValueError.
    except (ValueError, RecursionError) as e:
        raise OpError("not-json", "op is not JSON") from e
    try:
        again = canonical(value)
    except OpError as e:
        raise OpError("not-canonical", e.message) from e
    except RecursionError as e:
        raise OpError("not-json", "op is nested too deeply") from e
    if again != data:
        raise OpError("not-canonical", "op is not in canonical JSON form")
    return value


def op_id_of(op_bytes: bytes) -> str:
    """The op id: lowercase hex SHA-256 of the canonical bytes of the unsigned op."""
    return hashlib.sha256(op_bytes).hexdigest()


def signing_input(op_bytes: bytes) -> bytes:
    """What the author signs: the domain prefix, then the op's canonical bytes."""
    return OP_DOMAIN + op_bytes


def invite_input(invite_id: str, joiner: str) -> bytes:
    """What an invite key signs to admit `joiner` with the invite `invite_id`."""
    return INVITE_DOMAIN + invite_id.encode() + b"\n" + joiner.encode()


def actor_for(space: str, did: str, nonce: str) -> str:
    """The Automerge actor id (32 lowercase hex) that `did` may bind in `space` with `nonce`."""
    digest = hashlib.sha256(ACTOR_DOMAIN + f"{space}\n{did}\n{nonce}".encode()).digest()
    return digest[:16].hex()

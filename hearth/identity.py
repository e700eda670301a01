"""DID and handle syntax (atproto rules), parsed once at the boundary."""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass

from hearth.types import Did, Handle

MAX_DID_LENGTH = 2048
MAX_HANDLE_LENGTH = 253

# Always used with fullmatch: `$` would also match before a trailing newline.
_DID_RE = re.compile(r"did:[a-z]+:[a-zA-Z0-9._:%-]*[a-zA-Z0-9._-]")
_PLC_RE = re.compile(r"did:plc:[a-z2-7]{24}")
_LABEL_RE = re.compile(r"[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?")
_PORT_RE = re.compile(r"[0-9]{1,5}")  # ASCII only: str.isdigit() accepts '²' and '٣'
_PCT_RE = re.compile(r"%(?![0-9A-Fa-f]{2})")

# Top-level domains atproto never resolves (spec: "Additional Non-Syntax Restrictions").
DISALLOWED_TLDS = frozenset({"alt", "arpa", "internal", "local", "localhost", "onion"})
INVALID_HANDLE = Handle("handle.invalid")


class IdentitySyntaxError(ValueError):
    """Raised for a string that is not a valid DID or handle."""


def parse_did(text: str) -> Did:
    """Return `text` as a `Did` if it is syntactically valid, else raise IdentitySyntaxError.

    Accepts any DID method generally, and checks method-specific rules for the
    methods Hearth resolves: plc, web and key.
    """
    if not isinstance(text, str) or len(text) > MAX_DID_LENGTH:
        raise IdentitySyntaxError("DID too long")
    if not _DID_RE.fullmatch(text) or _PCT_RE.search(text):
        raise IdentitySyntaxError(f"invalid DID syntax: {text[:80]!r}")
    method = text.split(":", 2)[1]
    if method == "plc" and not _PLC_RE.fullmatch(text):
        raise IdentitySyntaxError("did:plc must be 24 base32 characters")
    if method == "web":
        web_did_host(text)
    if method == "key" and not text.startswith("did:key:z"):
        raise IdentitySyntaxError("did:key must be multibase base58btc ('z')")
    return Did(text)


@dataclass(frozen=True, slots=True)
class WebDid:
    host: str  # host or host:port, lowercase
    path: tuple[str, ...]  # path segments for path-based did:web

    @property
    def document_url_path(self) -> str:
        if not self.path:
            return "/.well-known/did.json"
        # Segments are percent-decoded; encode them again so no '?', '#' or
        # control character decoded from the DID can change the URL.
        return "/" + "/".join(urllib.parse.quote(p, safe="") for p in self.path) + "/did.json"


def web_did_host(did: str) -> WebDid:
    """Split a did:web into host (with an optional percent-encoded port) and path."""
    if not did.startswith("did:web:"):
        raise IdentitySyntaxError("not a did:web")
    parts = did[len("did:web:") :].split(":")
    host = urllib.parse.unquote(parts[0]).lower()
    hostname, colon, port = host.partition(":")
    if colon and (not _PORT_RE.fullmatch(port) or not 0 < int(port) < 65536):
        raise IdentitySyntaxError("did:web port must be a number")
    if not hostname or not all(_LABEL_RE.fullmatch(label) for label in hostname.split(".")):
        raise IdentitySyntaxError("did:web host is not a hostname")
    path = tuple(urllib.parse.unquote(p) for p in parts[1:])
    if any(not p or "/" in p or p in (".", "..") for p in path):
        raise IdentitySyntaxError("did:web path segment is invalid")
    return WebDid(host, path)


def web_did_for_url(url: str) -> Did:
    """The did:web naming a service at `url` (scheme and path ignored, port encoded)."""
    parsed = urllib.parse.urlsplit(url)
    if not parsed.hostname:
        raise IdentitySyntaxError(f"URL has no host: {url!r}")
    host = parsed.hostname.lower()
    if parsed.port is not None:
        host += "%3A" + str(parsed.port)
    return Did("did:web:" + host)


def normalize_handle(text: str) -> Handle:
    """Validate a handle per the atproto spec and return it lowercased.

    A leading '@' (as people type handles) is stripped.
    """
    if not isinstance(text, str):
        raise IdentitySyntaxError("handle must be a string")
    if text.startswith("@"):
        text = text[1:]
    if not text or len(text) > MAX_HANDLE_LENGTH or not text.isascii():
        raise IdentitySyntaxError("handle length or characters invalid")
    labels = text.split(".")
    if len(labels) < 2:
        raise IdentitySyntaxError("handle needs at least two labels")
    if not all(_LABEL_RE.fullmatch(label) for label in labels):
        raise IdentitySyntaxError(f"invalid handle syntax: {text[:80]!r}")
    if labels[-1][0].isdigit():
        raise IdentitySyntaxError("handle top-level domain may not start with a digit")
    return Handle(text.lower())


def is_resolvable_handle(handle: Handle) -> bool:
    """False for handles in TLDs atproto refuses to resolve (and handle.invalid)."""
    return handle != INVALID_HANDLE and handle.rsplit(".", 1)[-1] not in DISALLOWED_TLDS

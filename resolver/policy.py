"""How DNS and HTTPS answers for a handle combine (no I/O).

Each method yields a DID, "none" (a definitive absence), or a failure.
DNS is preferred, but the two must not disagree.
"""

from __future__ import annotations

from collections.abc import Iterable

from hearth.identity import IdentitySyntaxError, parse_did
from hearth.types import Did
from resolver.errors import NotFound, ResolveError, UpstreamError

Outcome = Did | None | ResolveError


def did_from_txt(records: Iterable[str]) -> Did | None:
    """The DID named by `did=` TXT records; NotFound if several different DIDs appear."""
    dids = set()
    for text in records:
        if text.startswith("did="):
            dids.add(text[4:].strip())
    if not dids:
        return None
    if len(dids) > 1:
        raise NotFound("DNS names several different DIDs for this handle", "HandleNotFound")
    return _valid_did(dids.pop(), "DNS TXT")


def did_from_well_known(body: str) -> Did:
    """The DID in a `/.well-known/atproto-did` body (one line)."""
    return _valid_did(body.strip(), "HTTPS well-known")


def _valid_did(text: str, source: str) -> Did:
    try:
        return parse_did(text)
    except IdentitySyntaxError as e:
        raise NotFound(f"{source} answer is not a valid DID", "HandleNotFound") from e


def combine(dns: Outcome, https: Outcome) -> Did:
    """Decide the handle's DID from both outcomes, or raise."""
    if isinstance(dns, str) and isinstance(https, str) and dns != https:
        raise NotFound("DNS and HTTPS name different DIDs for this handle", "HandleNotFound")
    if isinstance(dns, str):
        return dns
    if isinstance(https, str):
        return https
    # Neither found a DID. A definitive "no" from both is NotFound; an
    # upstream fault on either side means we cannot be sure.
    for outcome in (dns, https):
        if isinstance(outcome, NotFound):
            if not isinstance(dns, UpstreamError) and not isinstance(https, UpstreamError):
                raise outcome
    for outcome in (dns, https):
        if isinstance(outcome, UpstreamError):
            raise outcome
    raise NotFound("handle does not resolve to a DID", "HandleNotFound")

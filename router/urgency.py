"""The anti-urgency rule: which RFC 8030 `Urgency` a push may carry, if any.

Messages are gentle by default; only a sender's deliberate escalation raises
the urgency, and the recipient's level caps what may wake a device:

| sender urgency | RFC 8030 | silent | quiet    | engaged  | busy     |
|----------------|----------|--------|----------|----------|----------|
| quiet          | very-low | -      | very-low | very-low | -        |
| normal         | low      | -      | low      | low      | -        |
| ping           | normal   | -      | low      | normal   | normal   |
| urgent         | high     | -      | low      | normal   | normal   |

("-" means no push at all.) Pure functions, no I/O.
"""

from __future__ import annotations

import enum


class MailUrgency(enum.StrEnum):
    """What the sender asks for (the `urgency` of `mail` and `notify` frames)."""

    QUIET = "quiet"
    NORMAL = "normal"
    PING = "ping"
    URGENT = "urgent"


class Level(enum.StrEnum):
    """What the recipient allows, per device registration or document subscription."""

    SILENT = "silent"
    QUIET = "quiet"
    ENGAGED = "engaged"
    BUSY = "busy"


class PushUrgency(enum.StrEnum):
    """RFC 8030 section 5.3 `Urgency` header values, in increasing order."""

    VERY_LOW = "very-low"
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"


_ORDER = list(PushUrgency)

_REQUESTED: dict[MailUrgency, PushUrgency] = {
    MailUrgency.QUIET: PushUrgency.VERY_LOW,
    MailUrgency.NORMAL: PushUrgency.LOW,
    MailUrgency.PING: PushUrgency.NORMAL,
    MailUrgency.URGENT: PushUrgency.HIGH,
}

_CAP: dict[Level, PushUrgency | None] = {
    Level.SILENT: None,
    Level.QUIET: PushUrgency.LOW,
    Level.ENGAGED: PushUrgency.NORMAL,
    Level.BUSY: PushUrgency.NORMAL,
}

# Explicit escalations: the only urgencies that reach a busy recipient.
EXPLICIT_PINGS = frozenset({MailUrgency.PING, MailUrgency.URGENT})

DEFAULT_URGENCY = MailUrgency.NORMAL
DEFAULT_LEVEL = Level.ENGAGED


def requested_push_urgency(urgency: MailUrgency) -> PushUrgency:
    """The RFC 8030 urgency a sender's urgency maps to before any cap."""
    return _REQUESTED[urgency]


def push_urgency(level: Level, urgency: MailUrgency) -> PushUrgency | None:
    """The `Urgency` header for a push to a recipient at `level`, or None: do not push."""
    cap = _CAP[level]
    if cap is None:
        return None
    if level is Level.BUSY and urgency not in EXPLICIT_PINGS:
        return None
    wanted = _REQUESTED[urgency]
    return wanted if _ORDER.index(wanted) <= _ORDER.index(cap) else cap

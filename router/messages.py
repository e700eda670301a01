"""Typed router messages: every header is parsed into one of these at the boundary.

Client -> router messages are parsed by `parse_client_message`, router -> client
messages by `parse_server_message` (used by `router.client`). Each message type
is a frozen dataclass with slots naming its `VERB`; `to_header()` gives the
JSON array that goes on the wire.

Adding a verb (e.g. `signal`, `mail`): define the dataclass with `VERB`, a
`from_header` classmethod that validates arity and types (raise `MessageError`),
and `to_header`; add it to `CLIENT_MESSAGES` and/or `SERVER_MESSAGES`. The
router then needs a handler for it (see `router.core.Router.register`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, Union

from hearth.types import ConnId, Did, DocumentId

# Longest DID, connId or docId accepted in a header (DIDs are at most 2048 chars).
MAX_ID_LENGTH = 2048

# Offered after the token (`["authorization", token, "hearth.v1"]`) by clients
# that understand Hearth extension frames (`welcome`, `error`, `mail`, ...).
# Without it a connection is treated as a Roomy v0 client and is sent only
# `join`, `leave` and `send`. The router still selects `authorization`.
HEARTH_SUBPROTOCOL = "hearth.v1"


class MessageError(ValueError):
    """A header that is not a valid message. `code` is the `error` frame code."""

    def __init__(self, code: str, message: str, verb: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.verb = verb


def _arity(header: list[Any], verb: str, n: int) -> None:
    if len(header) != n:
        raise MessageError(
            "bad_arity", f"{verb} takes {n - 1} arguments, got {len(header) - 1}", verb
        )


def _id(value: Any, verb: str, what: str) -> str:
    if type(value) is not str or not value:
        raise MessageError("bad_type", f"{verb}: {what} must be a non-empty string", verb)
    if len(value) > MAX_ID_LENGTH:
        raise MessageError("bad_type", f"{verb}: {what} longer than {MAX_ID_LENGTH}", verb)
    return value


def _str(value: Any, verb: str, what: str) -> str:
    if type(value) is not str:
        raise MessageError("bad_type", f"{verb}: {what} must be a string", verb)
    return value


# ---------------------------------------------------------------- client -> router


@dataclass(frozen=True, slots=True)
class Listen:
    """`["listen", docId, …]`: replaces the connection's interest set."""

    VERB: ClassVar[str] = "listen"
    docs: tuple[DocumentId, ...]

    @classmethod
    def from_header(cls, header: list[Any]) -> Listen:
        return cls(tuple(DocumentId(_id(d, "listen", "docId")) for d in header[1:]))

    def to_header(self) -> list[Any]:
        return ["listen", *self.docs]


@dataclass(frozen=True, slots=True)
class Send:
    """`["send", toDid, toConnId, docId]` + opaque body, client -> router."""

    VERB: ClassVar[str] = "send"
    to_did: Did
    to_conn: ConnId
    doc: DocumentId

    @classmethod
    def from_header(cls, header: list[Any]) -> Send:
        _arity(header, "send", 4)
        return cls(
            Did(_id(header[1], "send", "toDid")),
            ConnId(_id(header[2], "send", "toConnId")),
            DocumentId(_id(header[3], "send", "docId")),
        )

    def to_header(self) -> list[Any]:
        return ["send", self.to_did, self.to_conn, self.doc]


class ClientMessage(Protocol):
    """Any client -> router message: a frozen dataclass naming its `VERB`.

    The concrete types are registered in `CLIENT_MESSAGES` by the modules
    that define them (here `Listen` and `Send`; `router.notify_messages`,
    `router.signaling`), so this is their common shape, not a closed union.
    """

    VERB: ClassVar[str]

    def to_header(self) -> list[Any]: ...


CLIENT_MESSAGES: dict[str, Callable[[list[Any]], ClientMessage]] = {
    Listen.VERB: Listen.from_header,
    Send.VERB: Send.from_header,
}


def parse_client_message(header: list[Any]) -> ClientMessage:
    """The typed message for a decoded client header; raises MessageError.

    Returns an instance of one of the types registered in `CLIENT_MESSAGES`;
    the router dispatches on its type.
    """
    verb = header[0]
    if type(verb) is not str:
        raise MessageError("bad_type", "the verb (first header element) must be a string")
    parse = CLIENT_MESSAGES.get(verb)
    if parse is None:
        raise MessageError("unknown_verb", f"unknown verb {verb[:64]!r}", verb[:64])
    return parse(header)


# ---------------------------------------------------------------- router -> client


@dataclass(frozen=True, slots=True)
class Welcome:
    """`["welcome", did, connId, info]`: first frame after the upgrade."""

    VERB: ClassVar[str] = "welcome"
    did: Did
    conn_id: ConnId
    info: dict[str, Any]

    @classmethod
    def from_header(cls, header: list[Any]) -> Welcome:
        _arity(header, "welcome", 4)
        if not isinstance(header[3], dict):
            raise MessageError("bad_type", "welcome: info must be an object", "welcome")
        return cls(
            Did(_id(header[1], "welcome", "did")),
            ConnId(_id(header[2], "welcome", "connId")),
            header[3],
        )

    def to_header(self) -> list[Any]:
        return ["welcome", self.did, self.conn_id, self.info]


@dataclass(frozen=True, slots=True)
class Join:
    """`["join", did, connId, docId]`: that connection listens to a doc we listen to."""

    VERB: ClassVar[str] = "join"
    did: Did
    conn_id: ConnId
    doc: DocumentId

    @classmethod
    def from_header(cls, header: list[Any]) -> Join:
        _arity(header, "join", 4)
        return cls(
            Did(_id(header[1], "join", "did")),
            ConnId(_id(header[2], "join", "connId")),
            DocumentId(_id(header[3], "join", "docId")),
        )

    def to_header(self) -> list[Any]:
        return ["join", self.did, self.conn_id, self.doc]


@dataclass(frozen=True, slots=True)
class Leave:
    """`["leave", did, connId, docId]`: that connection stopped listening or closed."""

    VERB: ClassVar[str] = "leave"
    did: Did
    conn_id: ConnId
    doc: DocumentId

    @classmethod
    def from_header(cls, header: list[Any]) -> Leave:
        _arity(header, "leave", 4)
        return cls(
            Did(_id(header[1], "leave", "did")),
            ConnId(_id(header[2], "leave", "connId")),
            DocumentId(_id(header[3], "leave", "docId")),
        )

    def to_header(self) -> list[Any]:
        return ["leave", self.did, self.conn_id, self.doc]


@dataclass(frozen=True, slots=True)
class Deliver:
    """`["send", fromDid, fromConnId, docId]` + body, router -> client."""

    VERB: ClassVar[str] = "send"
    from_did: Did
    from_conn: ConnId
    doc: DocumentId
    body: bytes

    @classmethod
    def from_header(cls, header: list[Any], body: bytes = b"") -> Deliver:
        _arity(header, "send", 4)
        return cls(
            Did(_id(header[1], "send", "fromDid")),
            ConnId(_id(header[2], "send", "fromConnId")),
            DocumentId(_id(header[3], "send", "docId")),
            body,
        )

    def to_header(self) -> list[Any]:
        return ["send", self.from_did, self.from_conn, self.doc]


@dataclass(frozen=True, slots=True)
class ErrorMessage:
    """`["error", code, message, verb]`: a frame was refused; the connection stays usable."""

    VERB: ClassVar[str] = "error"
    code: str
    message: str
    verb: str

    @classmethod
    def from_header(cls, header: list[Any]) -> ErrorMessage:
        _arity(header, "error", 4)
        return cls(
            _str(header[1], "error", "code"),
            _str(header[2], "error", "message"),
            _str(header[3], "error", "verb"),
        )

    def to_header(self) -> list[Any]:
        return ["error", self.code, self.message, self.verb]


@dataclass(frozen=True, slots=True)
class Unknown:
    """A router -> client frame with a verb this client does not know (forward compatible)."""

    header: list[Any]
    body: bytes


ServerMessage = Union[Welcome, Join, Leave, Deliver, ErrorMessage, Unknown]  # noqa: UP007

SERVER_MESSAGES: dict[str, Callable[[list[Any]], Any]] = {
    Welcome.VERB: Welcome.from_header,
    Join.VERB: Join.from_header,
    Leave.VERB: Leave.from_header,
    ErrorMessage.VERB: ErrorMessage.from_header,
}


def parse_server_message(header: list[Any], body: bytes) -> ServerMessage:
    """The typed message for a router -> client frame; raises MessageError if malformed."""
    verb = header[0]
    if verb == "send":
        return Deliver.from_header(header, body)
    parse = SERVER_MESSAGES.get(verb) if type(verb) is str else None
    if parse is None:
        return Unknown(header, body)
    msg: ServerMessage = parse(header)
    return msg

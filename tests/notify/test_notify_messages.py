"""The notification verbs' parsers: typed messages or MessageError, never anything else."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router.messages import MessageError, parse_client_message
from router.notify_messages import (
    Ack,
    DeviceHello,
    MailDelivery,
    MailSend,
    Notify,
    Receipt,
    parse_mail_delivery,
)
from router.urgency import MailUrgency

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


def test_round_trips() -> None:
    for msg in (
        MailSend("did:key:zB", "m1", 60, MailUrgency.PING),
        Ack("m1"),
        DeviceHello("web-1234"),
        Notify("doc", MailUrgency.QUIET),
    ):
        assert parse_client_message(msg.to_header()) == msg
    delivery = MailDelivery("did:key:zA", "m1", 1700000000000, MailUrgency.URGENT, b"x")
    assert parse_mail_delivery(delivery.to_header(), b"x") == delivery
    assert Receipt.from_header(["receipt", "m1", "delivered"]) == Receipt("m1", "delivered")
    with pytest.raises(MessageError):
        Receipt.from_header(["receipt", "m1", "read"])


@pytest.mark.parametrize(
    "header",
    [
        ["mail", "did:key:zB", "m", True, "normal"],  # bool is not an int
        ["mail", "did:key:zB", "m", 1.5, "normal"],
        ["mail", "", "m", 1, "normal"],
        ["mail", "did:key:zB", "m" * 129, 1, "normal"],
        ["ack", 5],
        ["device", "a/b"],
        ["device", "x" * 129],
        ["notify", "doc"],
    ],
)
def test_rejects(header: list[Any]) -> None:
    with pytest.raises(MessageError):
        parse_client_message(header)


@settings(max_examples=400, deadline=None)
@given(
    verb=st.sampled_from(["mail", "ack", "device", "notify"]),
    args=st.lists(json_values, max_size=5),
)
def test_arbitrary_headers(verb: str, args: list[Any]) -> None:
    try:
        msg = parse_client_message([verb, *args])
    except MessageError as e:
        assert e.code in ("bad_arity", "bad_type")
        return
    assert msg.to_header() == [verb, *args] or isinstance(msg, MailSend | Notify)

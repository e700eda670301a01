"""Two people in two isolated browser contexts chat peer to peer through the router."""

from __future__ import annotations

import time

from playwright.sync_api import Browser, expect

from tests.frontend.conftest import WAIT, Stack, shot
from tests.frontend.people import Person


def test_space_invite_chat_presence_over_webrtc(stack: Stack, browser: Browser) -> None:
    alice = Person(browser, stack.url, "Alice")
    bob = Person(browser, stack.url, "Bob")
    alice.start(screenshot="01-first-run")
    bob.start()

    alice.create_space("Garden")
    alice.create_channel("plants")
    link = alice.invite_link()
    assert "/#/join/" in link
    bob.join(link)
    shot(bob.page, "02-joined-space")

    # Both see both members, online, reached directly.
    for me, other in ((alice, bob), (bob, alice)):
        expect(me.member(other.did)).to_have_attribute("data-online", "yes", timeout=WAIT)
        expect(me.member(other.did)).to_have_attribute("data-path", "direct", timeout=WAIT)
        expect(me.page.get_by_test_id("member")).to_have_count(2)

    alice.open_channel("general")
    bob.send("hi Alice, Bob here")
    alice.wait_texts(["hi Alice, Bob here"])
    alice.send("welcome Bob!")
    bob.wait_texts(["hi Alice, Bob here", "welcome Bob!"])

    alice.open_channel("plants")
    bob.open_channel("plants")
    for i in range(3):
        alice.send(f"fern {i}")
    bob.wait_texts([f"fern {i}" for i in range(3)])
    shot(alice.page, "03-channel")
    shot(bob.page, "04-channel-other-side")

    # A deliberate ping naming nobody wakes the channel's push subscribers: the
    # router takes `notify` only from a listener of the channel's document.
    alice.page.get_by_test_id("ping").check()
    alice.send("everyone: the ferns are out")
    deadline = time.monotonic() + WAIT / 1000
    while stack.metrics("router").get("hearth_router_notifies_total", 0) < 1:
        assert time.monotonic() < deadline, stack.metrics("router")
        time.sleep(0.05)
    assert 'hearth_router_errors_total{code="not_member"}' not in stack.metrics("router")

    # The router carried signalling only: no relayed payload.
    metrics = stack.metrics("router")
    assert metrics.get("hearth_router_relayed_bytes_total", 0) == 0, metrics
    assert metrics.get("hearth_router_signal_bytes_total", 0) > 0, metrics
    expect(alice.page.get_by_test_id("peer-paths")).to_contain_text("1 direct, 0 relayed")

    # Presence: Bob leaves (closes the app), Alice sees him go.
    bob.close()
    expect(alice.member(bob.did)).to_have_attribute("data-online", "no", timeout=WAIT)
    assert not alice.errors
    alice.close()

"""Without WebRTC on one side, two people still chat, over the router's relayed `send`."""

from __future__ import annotations

from playwright.sync_api import Browser, expect

from tests.frontend.conftest import WAIT, Stack
from tests.frontend.people import Person


def test_relay_only_person_chats_over_the_relay(stack: Stack, browser: Browser) -> None:
    alice = Person(browser, stack.url, "Alice")
    bob = Person(browser, stack.url, "Bob")
    alice.start()
    bob.start()
    # Bob keeps his address from peers: his app never opens WebRTC connections.
    bob.page.get_by_test_id("relay-only").check()
    expect(bob.page.get_by_test_id("relay-only")).to_be_checked(timeout=WAIT)
    alice.create_space("Basement")
    bob.join(alice.invite_link())
    for me, other in ((alice, bob), (bob, alice)):
        expect(me.member(other.did)).to_have_attribute("data-path", "relay", timeout=WAIT)
    alice.send("can you hear me through the router?")
    bob.wait_texts(["can you hear me through the router?"])
    bob.send("loud and clear")
    alice.wait_texts(["can you hear me through the router?", "loud and clear"])
    expect(alice.page.get_by_test_id("peer-paths")).to_contain_text("0 direct, 1 relayed")
    metrics = stack.metrics("router")
    assert metrics.get("hearth_router_relayed_bytes_total", 0) > 0, metrics
    assert not alice.errors and not bob.errors
    alice.close()
    bob.close()

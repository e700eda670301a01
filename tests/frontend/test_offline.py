"""Offline: catching up after a network outage, and the app with every server stopped."""

from __future__ import annotations

from playwright.sync_api import Browser, expect

from tests.frontend.conftest import WAIT, Stack, shot
from tests.frontend.people import Person


def test_offline_person_catches_up_once_and_in_order(stack: Stack, browser: Browser) -> None:
    alice = Person(browser, stack.url, "Alice")
    bob = Person(browser, stack.url, "Bob")
    alice.start()
    bob.start()
    alice.create_space("Cabin")
    bob.join(alice.invite_link())
    expect(alice.member(bob.did)).to_have_attribute("data-online", "yes", timeout=WAIT)
    alice.send("before the storm")
    bob.wait_texts(["before the storm"])

    bob.context.set_offline(True)
    expect(bob.page.get_by_test_id("online-state")).to_have_text("offline", timeout=WAIT)
    expect(alice.member(bob.did)).to_have_attribute("data-online", "no", timeout=WAIT)
    written = [f"while you were out {i}" for i in range(5)]
    for text in written:
        alice.send(text)
    bob.send("written offline")
    shot(bob.page, "05-offline")

    bob.context.set_offline(False)
    expected = ["before the storm", *written, "written offline"]
    bob.wait_texts(expected)
    alice.wait_texts(expected)
    expect(bob.page.get_by_test_id("online-state")).to_have_text("online", timeout=WAIT)
    assert not alice.errors and not bob.errors
    alice.close()
    bob.close()

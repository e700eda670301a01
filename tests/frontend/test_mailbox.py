"""A mention waits in the router's mailbox for a recipient who is away."""

from __future__ import annotations

from playwright.sync_api import Browser, expect

from tests.frontend.conftest import WAIT, Stack
from tests.frontend.people import Person


def test_mention_reaches_a_person_who_was_away(stack: Stack, browser: Browser) -> None:
    alice = Person(browser, stack.url, "Alice")
    bob = Person(browser, stack.url, "Bob")
    alice.start()
    bob.start()
    alice.create_space("Harbour")
    bob.join(alice.invite_link())
    expect(alice.member(bob.did)).to_have_attribute("data-online", "yes", timeout=WAIT)

    # Bob's tab is gone: only the router's mailbox can tell him.
    bob.page.goto("about:blank")
    expect(alice.member(bob.did)).to_have_attribute("data-online", "no", timeout=WAIT)
    alice.send("@Bob the ferry leaves at noon")

    bob.page.goto(stack.url)  # back, on the home screen
    expect(bob.page.get_by_test_id("last-push")).to_contain_text(
        "Alice: mentioned you", timeout=WAIT
    )
    bob.page.get_by_test_id("space-list").get_by_text("Harbour").click()
    bob.wait_texts(["@Bob the ferry leaves at noon"])
    assert not alice.errors and not bob.errors
    alice.close()
    bob.close()

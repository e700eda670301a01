"""Editing, deleting, threads, unread counts, mentions and DMs between three people."""

from __future__ import annotations

import time

import httpx
from playwright.sync_api import Browser, expect

from tests.frontend.conftest import WAIT, Stack, shot
from tests.frontend.people import Person

EXPORT = "/xrpc/chat.hearth.v1.sync.export"


def export_status(stack: Stack, person: Person, document_id: str) -> int:
    """What the syncserver answers `person` asking for the document's contents."""
    token = person.eval(
        "hearth.auth.jwt('syncserver', 'chat.hearth.v1.sync.export')",
    )
    r = httpx.get(
        stack.service("syncserver") + EXPORT,
        params={"documentId": document_id},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    return r.status_code


def test_edit_delete_threads_unread_mentions_and_private_dms(
    stack: Stack, browser: Browser
) -> None:
    alice = Person(browser, stack.url, "Alice")
    bob = Person(browser, stack.url, "Bob")
    carol = Person(browser, stack.url, "Carol")
    for p in (alice, bob, carol):
        p.start()
    alice.create_space("Studio")
    alice.create_channel("random")
    link = alice.invite_link()
    bob.join(link)
    carol.join(link)
    expect(alice.page.get_by_test_id("member")).to_have_count(3, timeout=WAIT)

    # Unread counts: Bob looks at #general while Alice writes in #random.
    random = bob.page.locator("[data-testid=channel-link][data-name=random]")
    alice.send("draft one")
    alice.send("oops, wrong channel")
    alice.send("third thought")
    expect(random.get_by_test_id("unread")).to_have_text("3", timeout=WAIT)
    shot(bob.page, "08-unread")
    bob.open_channel("random")
    bob.wait_texts(["draft one", "oops, wrong channel", "third thought"])
    expect(random.get_by_test_id("unread")).to_have_count(0)
    bob.open_channel("general")
    alice.send("one more")
    expect(random.get_by_test_id("unread")).to_have_text("1", timeout=WAIT)
    bob.open_channel("random")

    # Edit and delete travel to the others.
    msg = alice.message("draft one")
    msg.get_by_test_id("edit-button").click()
    alice.page.get_by_test_id("edit-input").fill("final one")
    alice.page.get_by_test_id("edit-save").click()
    alice.message("oops, wrong channel").get_by_test_id("delete-button").click()
    expected = ["final one", "third thought", "one more"]
    alice.wait_texts(expected)
    bob.wait_texts(expected)
    expect(bob.message("final one")).to_contain_text("(edited)")
    # Only the author gets edit and delete buttons.
    expect(bob.message("final one").get_by_test_id("edit-button")).to_have_count(0)

    # A thread reply.
    bob.message("third thought").get_by_test_id("reply-button").click()
    bob.page.get_by_test_id("reply-input").fill("agreed")
    bob.page.get_by_test_id("reply-input").press("Enter")
    expect(alice.message("third thought").get_by_test_id("reply-button")).to_have_text(
        "1 reply", timeout=WAIT
    )
    alice.message("third thought").get_by_test_id("reply-button").click()
    expect(alice.page.get_by_test_id("thread")).to_be_visible()
    expect(alice.page.get_by_test_id("reply-text")).to_have_text(["agreed"], timeout=WAIT)
    # Only its author may edit or delete a reply; both reach the other side.
    expect(alice.page.get_by_test_id("reply-edit-button")).to_have_count(0)
    bob.page.get_by_test_id("reply-edit-button").click()
    bob.page.get_by_test_id("reply-edit-input").fill("agreed, tomorrow")
    bob.page.get_by_test_id("reply-edit-save").click()
    expect(alice.page.get_by_test_id("reply-text")).to_have_text(["agreed, tomorrow"], timeout=WAIT)
    shot(bob.page, "09-thread")
    bob.page.get_by_test_id("reply-delete-button").click()
    expect(alice.page.get_by_test_id("reply")).to_have_count(0, timeout=WAIT)
    expect(alice.message("third thought").get_by_test_id("reply-button")).to_have_text("Reply")

    # Notification levels per channel and per space are kept across reloads.
    bob.page.get_by_test_id("channel-level").select_option("quiet")
    bob.page.get_by_test_id("space-level").select_option("busy")
    bob.page.reload()
    expect(bob.page.get_by_test_id("channel-level")).to_have_value("quiet", timeout=WAIT)
    expect(bob.page.get_by_test_id("space-level")).to_have_value("busy")
    expect(alice.member(bob.did)).to_have_attribute("data-online", "yes", timeout=WAIT)

    # A mention reaches Bob through the router's mailbox, sealed for him; he
    # gets a notice because he is looking at another channel. #random's own
    # level (quiet) beats the space's (busy, which would drop a plain
    # mention), and quiet keeps it gentle: the router's rule caps it at
    # very-low (test_notify_levels.py goes through every level).
    bob.open_channel("general")
    alice.send("@Bob can you check the kiln?")
    notice = bob.page.get_by_test_id("last-push")
    expect(notice).to_contain_text("Alice: mentioned you", timeout=WAIT)
    expect(notice).to_have_attribute("data-urgency", "very-low")
    assert bob.eval("hearth.lastMail") == {
        "kind": "mention",
        "level": "quiet",
        "urgency": "quiet",
        "notice": "very-low",
    }
    shot(bob.page, "10-mention")

    # A DM between Alice and Bob.
    alice.member(bob.did).get_by_test_id("dm-button").click()
    expect(alice.page.locator("header h2")).to_have_text("@ Bob", timeout=WAIT)
    alice.send("just between us")
    dm_link = bob.page.get_by_test_id("dm-link")
    expect(dm_link).to_have_count(1, timeout=WAIT)
    dm_link.click()
    bob.wait_texts(["just between us"])
    bob.send("sure thing")
    alice.wait_texts(["just between us", "sure thing"])
    shot(alice.page, "11-dm")

    # Carol, in the same space, neither lists it nor can fetch it from anyone.
    dm_url = alice.eval(f"hearth.catalog.dms[{bob.did!r}]")
    expect(carol.page.get_by_test_id("dm-link")).to_have_count(0)
    refused = carol.eval(
        "u => hearth.repo.find(u).then(() => 'found', e => 'refused: ' + e.message)", dm_url
    )
    assert refused.startswith("refused"), refused
    doc_id = dm_url.removeprefix("automerge:")
    # The syncserver keeps it for its two members only, once Alice (its owner) says so.
    deadline = time.monotonic() + WAIT / 1000
    while export_status(stack, bob, doc_id) != 200:
        assert time.monotonic() < deadline, "Bob never got read access on the syncserver"
        bob.page.wait_for_timeout(100)
    assert export_status(stack, alice, doc_id) == 200
    assert export_status(stack, carol, doc_id) == 404
    # Carol leaves the space; the others see her go from the member list.
    carol.page.get_by_test_id("leave-space").click()
    bob.page.get_by_test_id("space-list").get_by_text("Studio").click()
    expect(bob.page.get_by_test_id("member")).to_have_count(2, timeout=WAIT)
    expect(carol.page.get_by_test_id("space-list")).not_to_contain_text("Studio")
    for p in (alice, bob, carol):
        assert not p.errors, (p.name, p.errors)
        p.close()

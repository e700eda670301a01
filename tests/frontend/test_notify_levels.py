"""Notification levels per channel and space: notices in the app, and the router's push store.

The levels follow the router's anti-urgency rule (router/urgency.py): silent
lets nothing through, busy only deliberate pings, quiet everything but
gently. The browser vendor's push service is out of reach offline, so Bob's
`PushManager` hands out a subscription the test made (a real P-256 key and
auth secret); everything from there on, the router's XRPC and its store, is
the real thing, read from the router's SQLite file.
"""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from playwright.sync_api import Browser, expect

from tests.frontend.conftest import WAIT, Stack, shot
from tests.frontend.people import Person

# Stands in for the browser vendor's push service: subscribe() returns the
# test's subscription; unsubscribe() is recorded.
FAKE_PUSH = """
(sub) => {
  PushManager.prototype.subscribe = async function () {
    return { endpoint: sub.endpoint, toJSON: () => sub };
  };
  PushManager.prototype.getSubscription = async function () {
    if (localStorage.getItem("test-unsubscribed")) return null;
    return {
      endpoint: sub.endpoint,
      toJSON: () => sub,
      unsubscribe: async () => (localStorage.setItem("test-unsubscribed", "1"), true),
    };
  };
}
"""


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def fake_subscription() -> dict[str, Any]:
    key = ec.generate_private_key(ec.SECP256R1())
    point = key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return {
        "endpoint": "https://push.invalid/send/" + b64u(os.urandom(12)),
        "keys": {"p256dh": b64u(point), "auth": b64u(os.urandom(16))},
    }


class PushStore:
    """Reads the router's push registry (registrations and document subscriptions)."""

    def __init__(self, stack: Stack) -> None:
        found = list(stack.data_dir.rglob("push.sqlite3"))
        assert len(found) == 1, found
        self.path: Path = found[0]

    def _rows(self, sql: str, *args: str) -> list[tuple[str, ...]]:
        db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
        try:
            return db.execute(sql, args).fetchall()
        finally:
            db.close()

    def registrations(self, did: str) -> dict[str, str]:
        return dict(self._rows("SELECT device, level FROM registration WHERE did = ?", did))

    def subscriptions(self, did: str) -> dict[str, str]:
        return dict(self._rows("SELECT doc, level FROM doc_subscription WHERE did = ?", did))


def eventually(person: Person, probe: Callable[[], Any], want: Any) -> None:
    deadline = time.monotonic() + WAIT / 1000
    while (got := probe()) != want:
        assert time.monotonic() < deadline, f"still {got!r}, wanted {want!r}"
        person.page.wait_for_timeout(100)


def set_channel_level(person: Person, channel: str, level: str, back_to: str) -> None:
    person.open_channel(channel)
    person.page.get_by_test_id("channel-level").select_option(level)
    expect(person.page.get_by_test_id("channel-level")).to_have_value(level)
    person.open_channel(back_to)


def test_levels_decide_notices_and_follow_the_device_to_the_router(
    stack: Stack, browser: Browser
) -> None:
    alice = Person(browser, stack.url, "Alice")
    bob = Person(browser, stack.url, "Bob")
    bob.context.grant_permissions(["notifications"], origin=stack.url.rstrip("/"))
    subscription = fake_subscription()
    bob.context.add_init_script(f"({FAKE_PUSH})({json.dumps(subscription)})")
    alice.start()
    bob.start()
    alice.create_space("Forge")
    alice.create_channel("kiln")
    bob.join(alice.invite_link())
    expect(alice.member(bob.did)).to_have_attribute("data-online", "yes", timeout=WAIT)
    notice = bob.page.get_by_test_id("last-push")
    mails = 0

    def mention(text: str, *, ping: bool = False) -> dict[str, Any]:
        """Alice writes in #kiln; returns what Bob's app made of the mail."""
        nonlocal mails
        if ping:
            alice.page.get_by_test_id("ping").check()
        alice.send(text)
        mails += 1
        bob.page.wait_for_function("n => hearth.mailSeen >= n", arg=mails, timeout=WAIT)
        result: dict[str, Any] = bob.eval("hearth.lastMail")
        return result

    # Silent: nothing, not even a deliberate ping.
    set_channel_level(bob, "kiln", "silent", back_to="general")
    assert mention("@Bob plain, silent") == {
        "kind": "mention",
        "level": "silent",
        "urgency": "quiet",
        "notice": None,
    }
    assert mention("@Bob ping, silent", ping=True) == {
        "kind": "ping",
        "level": "silent",
        "urgency": "ping",
        "notice": None,
    }
    expect(notice).to_have_count(0)

    # Busy: a plain mention gives no notice; a deliberate ping does.
    set_channel_level(bob, "kiln", "busy", back_to="general")
    assert mention("@Bob plain, busy")["notice"] is None
    expect(notice).to_have_count(0)
    assert mention("@Bob ping, busy", ping=True)["notice"] == "normal"
    expect(notice).to_have_text("Alice: pinged you", timeout=WAIT)
    expect(notice).to_have_attribute("data-urgency", "normal")

    # Quiet: a mention gets through, at most "low" (a plain one is very-low).
    set_channel_level(bob, "kiln", "quiet", back_to="general")
    assert mention("@Bob plain, quiet")["notice"] == "very-low"
    expect(notice).to_have_text("Alice: mentioned you", timeout=WAIT)
    expect(notice).to_have_attribute("data-urgency", "very-low")
    shot(bob.page, "12-levels")

    # Push on: the levels set before reach the router, a space's level for
    # every channel without its own; the device registration carries the most
    # permissive level in force anywhere.
    store = PushStore(stack)
    space = bob.eval("Object.keys(hearth.catalog.spaces)[0]")
    channels = {c["name"]: c["url"].removeprefix("automerge:") for c in bob.eval(
        "u => hearth.space(u).channels", space
    )}  # fmt: skip
    bob.page.get_by_test_id("enable-push").click()
    expect(bob.page.get_by_test_id("disable-push")).to_be_visible(timeout=WAIT)
    device = bob.eval("hearth.deviceId")
    eventually(bob, lambda: store.registrations(bob.did), {device: "engaged"})
    eventually(
        bob,
        lambda: store.subscriptions(bob.did),
        {channels["general"]: "engaged", channels["kiln"]: "quiet"},
    )

    # The space goes silent: #general follows it, #kiln keeps its own level.
    bob.page.get_by_test_id("space-level").select_option("silent")
    want = {channels["general"]: "silent", channels["kiln"]: "quiet"}
    eventually(bob, lambda: store.subscriptions(bob.did), want)
    eventually(bob, lambda: store.registrations(bob.did), {device: "quiet"})

    # A channel Alice adds later is subscribed at the space's level.
    alice.create_channel("glaze")
    expect(bob.page.locator("[data-testid=channel-link][data-name=glaze]")).to_have_count(
        1, timeout=WAIT
    )
    glaze = next(
        c["url"] for c in bob.eval("u => hearth.space(u).channels", space) if c["name"] == "glaze"
    ).removeprefix("automerge:")
    eventually(bob, lambda: store.subscriptions(bob.did), {**want, glaze: "silent"})

    # The device's own level caps everything it is pushed.
    bob.page.get_by_test_id("device-level").select_option("busy")
    eventually(bob, lambda: store.registrations(bob.did), {device: "busy"})
    eventually(
        bob,
        lambda: store.subscriptions(bob.did),
        {channels["general"]: "silent", channels["kiln"]: "busy", glaze: "silent"},
    )
    shot(bob.page, "13-push-settings")

    # The router dropped the device behind the app's back (as when its push
    # service answers 410): the next level change finds out and offers push again.
    token = bob.eval("hearth.auth.jwt('router', 'chat.hearth.v1.push.unregister')")
    r = httpx.post(
        stack.service("router") + "/xrpc/chat.hearth.v1.push.unregister",
        json={"device": device},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert r.json() == {"removed": 1}
    bob.page.get_by_test_id("space-level").select_option("engaged")
    expect(bob.page.get_by_test_id("enable-push")).to_be_visible(timeout=WAIT)
    expect(bob.page.get_by_test_id("push-state")).to_contain_text("enable push again")
    bob.page.get_by_test_id("enable-push").click()
    eventually(bob, lambda: store.registrations(bob.did), {device: "busy"})
    eventually(
        bob,
        lambda: store.subscriptions(bob.did),
        {channels["general"]: "busy", channels["kiln"]: "busy", glaze: "busy"},
    )

    # Turned off: the router forgets the device and its subscriptions.
    bob.page.get_by_test_id("disable-push").click()
    expect(bob.page.get_by_test_id("enable-push")).to_be_visible(timeout=WAIT)
    eventually(bob, lambda: store.registrations(bob.did), {})
    assert store.subscriptions(bob.did) == {}
    assert bob.eval("localStorage.getItem('test-unsubscribed')") == "1"
    # And it stays off across a reload.
    bob.page.reload()
    expect(bob.page.get_by_test_id("enable-push")).to_be_visible(timeout=WAIT)
    assert not alice.errors and not bob.errors, (alice.errors, bob.errors)
    alice.close()
    bob.close()

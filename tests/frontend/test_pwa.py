"""The installable PWA: offline shell and data with every server stopped, push notifications."""

from __future__ import annotations

import json
import time

from playwright.sync_api import Browser, expect

from tests.frontend.conftest import WAIT, Stack, shot
from tests.frontend.people import Person


def wait_for_service_worker(person: Person) -> None:
    """The service worker is installed (shell cached) and controls the page."""
    person.eval("navigator.serviceWorker.ready")
    person.page.wait_for_function("() => !!navigator.serviceWorker.controller", timeout=WAIT)


def test_reload_with_every_server_stopped_shows_app_and_data(
    stack: Stack, browser: Browser
) -> None:
    alice = Person(browser, stack.url, "Alice")
    alice.start()
    manifest = alice.page.request.get(stack.url + "manifest.webmanifest").json()
    assert {"192x192", "512x512"} <= {icon["sizes"] for icon in manifest["icons"]}
    alice.create_space("Lighthouse")
    alice.create_channel("logbook")
    alice.send("lamp lit at dusk")
    alice.send("fog rolling in")
    wait_for_service_worker(alice)

    stack.stop()
    alice.page.reload()
    expect(alice.page.get_by_test_id("message-text")).to_have_text(
        ["lamp lit at dusk", "fog rolling in"], timeout=WAIT
    )
    expect(alice.page.get_by_test_id("space-list")).to_contain_text("Lighthouse")
    expect(alice.page.get_by_test_id("online-state")).to_have_text("offline", timeout=WAIT)
    # Still usable: writing offline works and is kept.
    alice.send("written with no server")
    shot(alice.page, "06-no-servers")
    alice.page.reload()
    expect(alice.page.get_by_test_id("message-text")).to_have_text(
        ["lamp lit at dusk", "fog rolling in", "written with no server"], timeout=WAIT
    )
    assert not alice.errors
    alice.close()


def test_service_worker_shows_a_delivered_push(stack: Stack, browser: Browser) -> None:
    """JSON pushes through DevTools, whose `data` is a string; the binary sealed-mail
    branch is run on real sealed bytes in frontend/tests/service-worker.test.ts."""
    alice = Person(browser, stack.url, "Alice")
    alice.context.grant_permissions(["notifications"], origin=stack.url.rstrip("/"))
    alice.start()
    wait_for_service_worker(alice)

    cdp = alice.context.new_cdp_session(alice.page)
    registrations: list[str] = []
    cdp.on(
        "ServiceWorker.workerRegistrationUpdated",
        lambda ev: registrations.extend(r["registrationId"] for r in ev["registrations"]),
    )
    cdp.send("ServiceWorker.enable")
    deadline = time.monotonic() + WAIT / 1000
    while not registrations and time.monotonic() < deadline:
        alice.page.wait_for_timeout(50)  # Playwright delivers CDP events while it waits
    assert registrations, "no service worker registration reported"

    def deliver(data: str) -> None:
        cdp.send(
            "ServiceWorker.deliverPushMessage",
            {"origin": stack.url.rstrip("/"), "registrationId": registrations[0], "data": data},
        )

    deliver(json.dumps({"title": "Bob", "body": "pinged you in #general", "tag": "did:key:zBob"}))
    # The worker tells the page once it has shown the notification.
    expect(alice.page.get_by_test_id("last-push")).to_contain_text("Bob: pinged you", timeout=WAIT)
    # The router's hint for a mail too large to travel in the push itself.
    deliver('{"hearth":"mail","from":"did:key:zCarol","msgId":"m1"}')
    expect(alice.page.get_by_test_id("last-push")).to_contain_text(
        "A message is waiting", timeout=WAIT
    )
    # The router's hint for a ping to a channel's push subscribers (router/notify.py).
    notify = {"hearth": "notify", "doc": "3xQkiln", "from": "did:key:zDave", "urgency": "ping"}
    deliver(json.dumps(notify, separators=(",", ":")))
    expect(alice.page.get_by_test_id("last-push")).to_contain_text(
        "You were pinged in a channel", timeout=WAIT
    )
    notes = alice.eval(
        """navigator.serviceWorker.ready
             .then(r => r.getNotifications())
             .then(n => n.map(x => [x.title, x.body, x.tag]).sort())"""
    )
    assert notes == [
        ["Bob", "pinged you in #general", "did:key:zBob"],
        ["Hearth", "A message is waiting for you", "did:key:zCarol"],
        ["Hearth", "You were pinged in a channel", "3xQkiln"],
    ]
    shot(alice.page, "07-push")
    cdp.detach()
    alice.close()

"""atproto sign-in in the PWA: handle + app password, through our resolver and the user's PDS.

The outside world is on loopback: DNS, the PLC directory and a PDS
(tests/frontend/fake_pds.py) that mints real ES256K service-auth JWTs. The
services resolve through it (HEARTH_DNS_NAMESERVERS / HEARTH_PLC_URL /
HEARTH_HTTP_HOSTS), the browser talks to the PDS directly.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from hearth.keys import PublicKey
from tests.frontend.conftest import SERVICES, WAIT, Stack, ensure_built, free_port, shot
from tests.frontend.fake_pds import OutsideWorld, running_outside_world
from tests.frontend.people import Person

PASSWORD = "abcd-efgh-ijkl-mnop"


@pytest.fixture
def outside() -> Iterator[OutsideWorld]:
    with running_outside_world() as o:
        yield o


@pytest.fixture
def world_stack(
    outside: OutsideWorld, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Stack]:
    for name, value in outside.world.env.items():
        monkeypatch.setenv(name, value)
    ensure_built()
    s = Stack(tmp_path / "data", {name: free_port() for name in SERVICES})
    try:
        s.start()
        yield s
    finally:
        s.stop()


def sign_in(page: Page, handle: str, password: str) -> None:
    page.get_by_test_id("atproto-handle").fill(handle)
    page.get_by_test_id("atproto-password").fill(password)
    page.get_by_test_id("atproto-sign-in").click()


def error_says(page: Page, pattern: str) -> None:
    expect(page.get_by_test_id("atproto-error")).to_have_text(re.compile(pattern), timeout=WAIT)


def test_sign_in_with_an_app_password(
    world_stack: Stack, outside: OutsideWorld, browser: Browser
) -> None:
    alice_id = outside.new_account(PASSWORD)
    assert alice_id.handle is not None

    def invalid() -> str:
        other = outside.world.new_plc_identity()
        other.doc["alsoKnownAs"] = ["at://someone-else.test"]
        outside.pds.add(other, PASSWORD)
        assert other.handle is not None
        return other.handle

    invalid_handle = outside.call(invalid)

    def unreachable() -> str:
        other = outside.world.new_plc_identity()
        outside.pds.add(other, PASSWORD)
        other.doc["service"][0]["serviceEndpoint"] = f"http://127.0.0.1:{free_port()}"
        assert other.handle is not None
        return other.handle

    unreachable_handle = outside.call(unreachable)

    alice = Person(browser, world_stack.url, "Alice")
    page = alice.page
    page.goto(world_stack.url)
    expect(page.get_by_test_id("my-did")).to_have_text(re.compile(r"^did:key:"), timeout=WAIT)
    page.get_by_test_id("atproto-open").click()

    # Each failure says what went wrong: no such handle, handle.invalid, PDS down, bad password.
    sign_in(page, "nobody-here.test", PASSWORD)
    error_says(page, r"No atproto account has the handle nobody-here\.test")
    sign_in(page, invalid_handle, PASSWORD)
    error_says(page, r"handle\.invalid")
    sign_in(page, unreachable_handle, PASSWORD)
    error_says(page, r"^Cannot reach your PDS at http://127\.0\.0\.1:\d+\.$")
    sign_in(page, alice_id.handle, "wrong-pass-word")
    error_says(page, r"^Wrong handle or app password\.$")
    assert outside.pds.requests["com.atproto.server.createSession"] == 1
    shot(page, "20-atproto-sign-in-error")

    # The right password: the app comes back as the account's DID.
    sign_in(page, "@" + alice_id.handle.upper(), PASSWORD)
    expect(page.get_by_test_id("my-did")).to_have_text(alice_id.did, timeout=WAIT)
    expect(page.get_by_test_id("signed-in-as")).to_contain_text("@" + alice_id.handle)
    shot(page, "21-atproto-signed-in")
    alice.did = alice_id.did
    page.get_by_test_id("display-name").fill("Alice")
    page.get_by_role("button", name="Start").click()
    expect(page.get_by_test_id("new-space")).to_be_visible(timeout=WAIT)

    # The keyserver handed over the account's keys: the app signs with the published key.
    published = httpx.get(
        world_stack.service("keyserver") + "/xrpc/chat.hearth.v1.key.public",
        params={"did": alice_id.did},
    ).json()
    in_browser = bytes(page.evaluate("Array.from(hearth.identity.publicKey)"))
    assert in_browser == PublicKey.from_did_key(published["signingKey"]).raw
    served = world_stack.metrics("keyserver")
    assert served["hearth_keyserver_private_keys_served_total"] >= 1, served

    # Stored: the session's tokens, never the password.
    stored = page.evaluate(
        """() => new Promise((ok, fail) => {
            const open = indexedDB.open("hearth-identity");
            open.onsuccess = () => {
              const store = open.result.transaction("identity").objectStore("identity");
              const get = store.get("atproto");
              get.onsuccess = () => ok(JSON.stringify(get.result.session));
              get.onerror = () => fail(get.error);
            };
          })"""
    )
    assert json.loads(stored)["did"] == alice_id.did
    assert PASSWORD not in stored
    assert PASSWORD not in json.dumps(page.evaluate("Object.assign({}, localStorage)"))

    # A space, synced and shared as that DID: a did:key person joins and both talk.
    alice.create_space("Orchard")
    alice.create_channel("pears")
    bob = Person(browser, world_stack.url, "Bob")
    bob.start()
    bob.join(alice.invite_link())
    expect(bob.member(alice_id.did)).to_have_attribute("data-online", "yes", timeout=WAIT)
    expect(alice.member(bob.did)).to_have_attribute("data-online", "yes", timeout=WAIT)
    page.wait_for_function("hearth.status.sync === 'open'", timeout=WAIT)
    bob.send("@Alice the pears are ripe")
    # Sealed for the keys the keyserver holds for Alice; she opens it with hers.
    expect(page.get_by_test_id("last-push")).to_contain_text("Bob: mentioned you", timeout=WAIT)
    alice.open_channel("general")
    alice.wait_texts(["@Alice the pears are ripe"])
    alice.send("thanks Bob")
    bob.wait_texts(["@Alice the pears are ripe", "thanks Bob"])

    # Every service saw PDS-minted tokens for Alice: keyserver, router, syncserver.
    methods = {lxm for iss, _aud, lxm in outside.pds.service_tokens if iss == alice_id.did}
    assert {
        "chat.hearth.v1.key.private",
        "chat.hearth.v1.router.token",
        "chat.hearth.v1.sync.token",
    } <= methods, methods

    # Bob's browser registered its own did:key public keys on the keyserver.
    created = world_stack.metrics("keyserver")
    assert created.get('hearth_keyserver_keys_created_total{how="register"}', 0) >= 1, created
    bob_keys = httpx.get(
        world_stack.service("keyserver") + "/xrpc/chat.hearth.v1.key.public",
        params={"did": bob.did},
    ).json()
    assert bob_keys["signingKey"] == bob.did

    # An expired access token is refreshed with the stored refresh token.
    outside.call(outside.pds.expire_access_tokens)
    page.reload()
    expect(page.get_by_test_id("new-space")).to_be_visible(timeout=WAIT)
    expect(bob.member(alice_id.did)).to_have_attribute("data-online", "yes", timeout=WAIT)
    page.wait_for_function("hearth.status.router === 'open'", timeout=WAIT)
    assert outside.pds.requests["com.atproto.server.refreshSession"] == 1
    assert not alice.errors and not bob.errors
    bob.close()
    alice.close()


def stored_identity(page: Page) -> list[str]:
    """The keys held in the app's identity store (IndexedDB `hearth-identity`)."""
    keys: list[str] = page.evaluate(
        """() => new Promise((ok, fail) => {
            const open = indexedDB.open("hearth-identity");
            open.onsuccess = () => {
              const store = open.result.transaction("identity").objectStore("identity");
              const all = store.getAllKeys();
              all.onsuccess = () => { ok(all.result.map(String)); open.result.close(); };
              all.onerror = () => fail(all.error);
            };
          })"""
    )
    return keys


def signed_in_person(browser: Browser, stack: Stack, outside: OutsideWorld) -> tuple[Person, str]:
    """A person who signed in with atproto at first run and is on the main screen."""
    ident = outside.new_account(PASSWORD)
    assert ident.handle is not None
    person = Person(browser, stack.url, "Alice")
    page = person.page
    page.goto(stack.url)
    page.get_by_test_id("atproto-open").click()
    sign_in(page, ident.handle, PASSWORD)
    expect(page.get_by_test_id("my-did")).to_have_text(ident.did, timeout=WAIT)
    person.did = ident.did
    page.get_by_test_id("display-name").fill("Alice")
    page.get_by_role("button", name="Start").click()
    expect(page.get_by_test_id("new-space")).to_be_visible(timeout=WAIT)
    page.wait_for_function("hearth.status.router === 'open'", timeout=WAIT)
    return person, ident.handle


def test_sign_out_forgets_the_session_and_keys(
    world_stack: Stack, outside: OutsideWorld, browser: Browser
) -> None:
    alice, handle = signed_in_person(browser, world_stack, outside)
    page = alice.page
    assert "atproto" in stored_identity(page)
    expect(page.get_by_test_id("account")).to_contain_text("@" + handle)
    shot(page, "22-atproto-sign-out")
    page.get_by_test_id("sign-out").click()

    # Back on the first-run screen as the device's own did:key.
    expect(page.get_by_test_id("signed-out")).to_contain_text("@" + handle, timeout=WAIT)
    expect(page.get_by_test_id("my-did")).to_have_text(re.compile(r"^did:key:z6Mk"))
    expect(page.get_by_test_id("display-name")).to_be_visible()
    # The PDS session's tokens and the keyserver's keys are gone; the did:key's seed stays.
    keys = stored_identity(page)
    assert "atproto" not in keys and "seed" in keys, keys
    assert page.evaluate("hearth.identity.pds") is None
    # Signing in again from here starts with the handle filled in.
    page.get_by_test_id("atproto-open").click()
    expect(page.get_by_test_id("atproto-handle")).to_have_value(handle)
    page.get_by_test_id("atproto-cancel").click()

    # A did:key has nothing to sign out of, and is not offered to delete itself.
    page.get_by_test_id("display-name").fill("Alice offline")
    page.get_by_role("button", name="Start").click()
    expect(page.get_by_test_id("new-space")).to_be_visible(timeout=WAIT)
    expect(page.get_by_test_id("sign-out")).to_have_count(0)
    # Reloading does not bring the signed-out screen back.
    page.reload()
    expect(page.get_by_test_id("new-space")).to_be_visible(timeout=WAIT)
    assert not alice.errors
    alice.close()


def test_a_session_the_pds_ended_shows_a_banner_and_signs_in_again(
    world_stack: Stack, outside: OutsideWorld, browser: Browser
) -> None:
    alice, handle = signed_in_person(browser, world_stack, outside)
    page = alice.page
    expect(page.get_by_test_id("session-ended")).to_have_count(0)

    # The PDS ends every session of the account (its app password was revoked).
    outside.call(lambda: outside.pds.revoke_sessions(alice.did))
    page.reload()
    banner = page.get_by_test_id("session-ended")
    expect(banner).to_contain_text("Your atproto session has ended — sign in again", timeout=WAIT)
    assert outside.pds.requests["com.atproto.server.refreshSession"] >= 1
    # It stopped trying to connect as the account.
    page.wait_for_function(
        "hearth.status.router === 'closed' && hearth.status.sync === 'off'", timeout=WAIT
    )
    shot(page, "23-atproto-session-ended")

    # The button opens the sign-in form with the handle filled in; signing in brings it all back.
    page.get_by_test_id("sign-in-again").click()
    expect(page.get_by_test_id("atproto-handle")).to_have_value(handle)
    expect(page.get_by_test_id("display-name")).to_have_count(0)
    page.get_by_test_id("atproto-password").fill(PASSWORD)
    page.get_by_test_id("atproto-sign-in").click()
    expect(page.get_by_test_id("new-space")).to_be_visible(timeout=WAIT)
    page.wait_for_function("hearth.status.router === 'open'", timeout=WAIT)
    expect(page.get_by_test_id("session-ended")).to_have_count(0)
    assert page.evaluate("hearth.did") == alice.did
    assert not alice.errors
    alice.close()

"""A person using the PWA in one isolated browser context: what they click and see."""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.frontend.conftest import WAIT, shot


class Person:
    def __init__(self, browser: Browser, base_url: str, name: str) -> None:
        self.name = name
        self.base_url = base_url
        self.context: BrowserContext = browser.new_context(base_url=base_url)
        self.page: Page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.did = ""

    def start(self, screenshot: str | None = None) -> None:
        """First run: the app makes a did:key identity; the person picks a display name."""
        self.page.goto(self.base_url)
        did = self.page.get_by_test_id("my-did")
        expect(did).to_have_text(re.compile(r"^did:key:z6Mk"), timeout=WAIT)
        self.did = did.inner_text()
        self.page.get_by_test_id("display-name").fill(self.name)
        if screenshot:
            shot(self.page, screenshot)
        self.page.get_by_role("button", name="Start").click()
        expect(self.page.get_by_test_id("new-space")).to_be_visible(timeout=WAIT)

    def eval(self, script: str, arg: Any = None) -> Any:
        return self.page.evaluate(script, arg)

    # --- spaces and channels ---------------------------------------------------

    def create_space(self, name: str) -> None:
        self.page.get_by_test_id("new-space").fill(name)
        self.page.get_by_test_id("new-space").press("Enter")
        expect(self.page.get_by_test_id("composer")).to_be_visible(timeout=WAIT)

    def create_channel(self, name: str) -> None:
        self.page.get_by_test_id("new-channel").fill(name)
        self.page.get_by_test_id("new-channel").press("Enter")
        expect(self.page.locator("header h2")).to_have_text(f"# {name}", timeout=WAIT)

    def open_channel(self, name: str) -> None:
        self.page.locator(f'[data-testid=channel-link][data-name="{name}"]').click()
        expect(self.page.locator("header h2")).to_have_text(f"# {name}", timeout=WAIT)

    def invite_link(self) -> str:
        return self.page.get_by_test_id("invite-link").input_value()

    def join(self, link: str) -> None:
        self.page.goto(link)
        self.page.get_by_test_id("join-space").click()
        expect(self.page.get_by_test_id("composer")).to_be_visible(timeout=WAIT)

    # --- messages --------------------------------------------------------------

    def send(self, text: str) -> None:
        self.page.get_by_test_id("composer").fill(text)
        self.page.get_by_test_id("composer").press("Enter")
        expect(self.page.get_by_test_id("message-text").filter(has_text=text)).to_have_count(
            1, timeout=WAIT
        )

    def texts(self) -> list[str]:
        return self.page.get_by_test_id("message-text").all_inner_texts()

    def wait_texts(self, expected: list[str]) -> None:
        expect(self.page.get_by_test_id("message-text")).to_have_text(expected, timeout=WAIT)

    def message(self, text: str) -> Any:
        return self.page.get_by_test_id("message").filter(has_text=text)

    # --- people ----------------------------------------------------------------

    def member(self, did: str) -> Any:
        return self.page.locator(f'[data-testid=member][data-did="{did}"]')

    def close(self) -> None:
        self.context.close()

"""The payouts that need a person, in a real browser: read it, and retry by keyboard alone."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from refunddesk.api.app import create_app
from refunddesk.core.clock import FrozenClock
from refunddesk.payouts.fakes._server import serve_in_thread
from refunddesk.payouts.gateways.base import FAILURE_HELP, FailureReason
from tests.browser.test_pages import ARGS, CHROMIUM, new_page
from tests.conftest import NOW
from tests.console_support import PASSWORD
from tests.e2e.test_web_payouts import ARN, VALID_IBAN, PayoutSeed, payout_container, seed_payouts

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium"
    ),
]


@dataclass
class Live:
    url: str
    seed: PayoutSeed


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> Iterator[Live]:
    """A uvicorn server on a free loopback port over a desk with one failed and one stuck payout."""

    db = tmp_path_factory.mktemp("payouts") / "refunddesk.db"
    shutil.copyfile(sqlite_template, db)
    clock = FrozenClock(NOW)
    container = payout_container(f"sqlite:///{db}", clock)
    seed = seed_payouts(container, clock)
    with serve_in_thread(create_app(container), startup_timeout=15, lifespan=True) as url:
        yield Live(url, seed)
    container.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        yield chromium
        chromium.close()


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def signed_in(browser: Browser, live: Live, errors: list[str], **size: int) -> Page:
    page = new_page(browser, errors, **size)
    page.goto(live.url + "/desk/login")
    page.get_by_label("Email address").fill(live.seed.admin_email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(live.url + "/desk")
    return page


def test_an_admin_sees_what_needs_attention_and_retries_by_keyboard(
    live: Live, browser: Browser
) -> None:
    errors: list[str] = []
    page = signed_in(browser, live, errors, width=1366, height=900)
    expect(page.locator("[data-attention]")).to_contain_text("2 payouts need a person")
    page.get_by_role("link", name="2 payouts need a person").click()
    expect(page).to_have_url(live.url + "/desk/payouts")
    expect(page.get_by_role("heading", level=1)).to_have_text("Payouts that need a person")
    expect(page.locator('[data-count="failed"]')).to_have_text("1")
    expect(page.locator('[data-count="stuck"]')).to_have_text("1")

    failed = page.locator(f'tr[data-refund-id="{live.seed.failed.refund_id}"]')
    stuck = page.locator(f'tr[data-refund-id="{live.seed.stuck.refund_id}"]')
    expect(failed).to_contain_text("Northwind Outfitters")
    expect(failed).to_contain_text("12.50 EUR")
    expect(failed).to_contain_text("Declined")
    expect(failed).to_contain_text("sandbox: simulated decline")
    expect(failed).to_contain_text(FAILURE_HELP[FailureReason.DECLINED])
    expect(stuck).to_contain_text("Maple Home Goods")
    expect(stuck).to_contain_text("pending · stuck")
    expect(stuck).to_contain_text("Waiting for the gateway")
    assert page.locator("tbody tr").first.get_attribute("data-refund-id") == (
        live.seed.failed.refund_id
    )
    assert page.evaluate("document.documentElement.scrollWidth") <= 1366
    shot(page, "payouts.png")

    # By keyboard: from "Same way again", Tab to the bank transfer disclosure and open it.
    failed.get_by_role("button", name="Same way again").focus()
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Store credit"
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.tagName") == "SUMMARY"
    page.keyboard.press("Enter")
    iban = failed.get_by_label("IBAN")
    expect(iban).to_be_visible()
    page.keyboard.press("Tab")
    expect(iban).to_be_focused()
    page.keyboard.type("DE00 3704 0044 0532 0130 00")
    page.keyboard.press("Tab")
    expect(failed.get_by_label("Account holder")).to_be_focused()
    page.keyboard.type("Ada Customer")
    page.keyboard.press("Enter")  # submits the bank transfer form
    expect(page.get_by_role("alert")).to_contain_text("IBAN: not a valid IBAN")
    shot(page, "payouts-invalid-iban.png")
    assert page.locator(f'tr[data-refund-id="{live.seed.failed.refund_id}"]').count() == 1

    failed = page.locator(f'tr[data-refund-id="{live.seed.failed.refund_id}"]')
    failed.locator("summary").focus()
    page.keyboard.press("Enter")
    page.keyboard.press("Tab")
    page.keyboard.type(VALID_IBAN)
    page.keyboard.press("Tab")
    page.keyboard.type("Ada Customer")
    page.keyboard.press("Tab")
    expect(failed.get_by_label("BIC")).to_be_focused()
    page.keyboard.press("Tab")
    expect(failed.get_by_role("button", name="Pay by bank transfer")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_role("status")).to_contain_text(
        f"Refund {live.seed.failed.reference} is being paid again by bank transfer."
    )
    expect(page.locator('[data-count="failed"]')).to_have_text("0")
    expect(page.locator(f'tr[data-refund-id="{live.seed.failed.refund_id}"]')).to_have_count(0)
    shot(page, "payouts-after-retry.png")
    assert errors == []


def test_the_refund_page_lists_attempts_and_the_customer_sees_the_arn(
    live: Live, browser: Browser
) -> None:
    errors: list[str] = []
    page = signed_in(browser, live, errors, width=1366, height=900)
    page.goto(f"{live.url}/desk/refunds/{live.seed.stuck.tenant_id}/{live.seed.stuck.refund_id}")
    payouts = page.locator('table[data-table="payouts"]')
    expect(payouts).to_contain_text("slowpay")
    expect(payouts).to_contain_text("pending · stuck")
    expect(payouts).to_contain_text("27 Nov 2026 \u2013 04 Dec 2026")
    shot(page, "payouts-refund-page.png")

    customer = new_page(browser, errors, width=390, height=844)
    customer.goto(live.url + "/track")
    customer.get_by_label("Refund reference").fill(live.seed.paid.reference)
    customer.get_by_label("Email address").fill(live.seed.paid.email)
    customer.get_by_role("button", name="Show my refund").click()
    expect(customer.locator('[data-field="arn"]')).to_have_text(
        f"Your bank can trace it with reference ARN {ARN}."
    )
    expect(customer.locator('[data-field="window"]')).to_contain_text("27 November 2026")
    assert customer.evaluate("document.documentElement.scrollWidth") <= 390
    shot(customer, "payouts-track-arn-phone.png")
    assert errors == []

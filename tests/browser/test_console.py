"""The agent console in real Chromium: sign in, claim from the queue by keyboard, approve."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from refunddesk.api.app import create_app
from refunddesk.auth.domain import Role
from refunddesk.bootstrap import bootstrap
from refunddesk.core.clock import FrozenClock
from refunddesk.payouts.fakes._server import serve_in_thread
from refunddesk.payouts.gateways.sandbox import SandboxGateway
from tests.browser.test_pages import ARGS, CHROMIUM, SHOTS, new_page
from tests.conftest import NOW, make_settings
from tests.console_support import PASSWORD, make_user
from tests.factories import Factory
from tests.web_seed import OLD, Seed, _refund, seed_desk

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium"
    ),
]


@dataclass
class Live:
    url: str
    seed: Seed
    north: str
    risky_reference: str


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> Iterator[Live]:
    db = tmp_path_factory.mktemp("console") / "refunddesk.db"
    shutil.copyfile(sqlite_template, db)
    container = bootstrap(
        make_settings(f"sqlite:///{db}"), clock=FrozenClock(NOW), gateways=[SandboxGateway(seed=1)]
    )
    seed = seed_desk(container)
    north = seed.tenant_ids["Northwind Outfitters"]
    f = Factory(container)
    for amount in (2400, 1800):  # two more to review, larger than the seed's 7.00
        _refund(container, north, f.order(north, **OLD), amount)
    make_user(
        container,
        "sam.supervisor@desk.example",
        name="Sam Supervisor",
        roles={north: Role.SUPERVISOR, seed.tenant_ids["Maple Home Goods"]: Role.AGENT},
    )
    with serve_in_thread(create_app(container), startup_timeout=15, lifespan=True) as url:
        yield Live(url, seed, north, "")
    container.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        yield chromium
        chromium.close()


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / name), full_page=True)
    print(f"screenshot: {SHOTS / name}")


def sign_in(page: Page, live: Live, email: str) -> None:
    page.goto(live.url + "/desk")
    page.get_by_label("Email address").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()


def test_an_agent_claims_by_keyboard_approves_and_the_refund_leaves_the_queue(
    live: Live, browser: Browser
) -> None:
    errors: list[str] = []
    page = new_page(browser, errors, width=1366, height=900)
    sign_in(page, live, live.seed.agent_email)
    expect(page).to_have_url(f"{live.url}/desk/t/{live.north}/queue")
    rows = page.locator("table.queue tbody tr[data-row]")
    expect(rows).to_have_count(3)
    expect(rows.first.locator('[data-field="amount"]')).to_have_text("24.00 EUR")
    shot(page, "console-queue.png")

    page.keyboard.press("j")
    expect(rows.first).to_have_class("selected")
    page.keyboard.press("c")  # claim the selected refund
    expect(page.get_by_role("status")).to_contain_text("You are working on")
    expect(rows.first.locator('[data-field="claimed"]')).to_have_text("you")
    reference = rows.first.locator("code").first.inner_text()
    shot(page, "console-queue-claimed.png")

    page.keyboard.press("?")
    expect(page.locator("dialog#shortcuts")).to_be_visible()
    shot(page, "console-shortcuts.png")
    page.keyboard.press("Escape")
    expect(page.locator("dialog#shortcuts")).to_be_hidden()

    page.keyboard.press("j")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1)).to_contain_text(reference)
    expect(page.locator('[data-field="claim"]')).to_contain_text("Claimed by you")
    shot(page, "console-refund.png")

    page.keyboard.press("a")  # approve: back to the queue, which no longer holds it
    expect(page).to_have_url(f"{live.url}/desk/t/{live.north}/queue")
    expect(page.get_by_role("status")).to_contain_text(f"{reference} is approved")
    expect(rows).to_have_count(2)
    assert reference not in page.locator("table.queue").inner_text()
    shot(page, "console-queue-after-approve.png")

    page.keyboard.press("/")
    page.keyboard.type(reference)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1)).to_contain_text(reference)
    expect(page.locator(".badge")).to_have_text("approved")
    assert errors == []


def test_a_supervisor_sees_the_board_and_switches_retailer(live: Live, browser: Browser) -> None:
    errors: list[str] = []
    page = new_page(browser, errors, width=1366, height=1000)
    sign_in(page, live, "sam.supervisor@desk.example")
    page.get_by_label("Retailer").select_option(label="Northwind Outfitters (supervisor)")
    expect(page).to_have_url(f"{live.url}/desk/t/{live.north}/queue")
    expect(page.locator("table.queue tbody tr[data-row]").first).to_be_visible()
    shot(page, "console-queue-supervisor.png")
    page.get_by_role("link", name="Supervisor", exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("supervisor")
    expect(page.locator('[data-figure="breaches-today"]')).to_be_visible()
    shot(page, "console-supervisor.png")

    page.get_by_label("Retailer").select_option(label="Maple Home Goods (agent)")
    expect(page).to_have_url(f"{live.url}/desk/t/{live.seed.tenant_ids['Maple Home Goods']}/queue")
    expect(page.get_by_role("link", name="Supervisor", exact=True)).to_have_count(
        0
    )  # an agent there
    shot(page, "console-switched.png")

    phone = new_page(browser, errors, width=390, height=844)
    sign_in(phone, live, "sam.supervisor@desk.example")
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390
    shot(phone, "console-queue-phone.png")
    assert errors == []

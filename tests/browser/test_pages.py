"""The pages in a real browser: Debian's Chromium driven by Playwright against a live server."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Response, expect, sync_playwright

from refunddesk.api.app import create_app
from refunddesk.bootstrap import bootstrap
from refunddesk.core.clock import FrozenClock
from refunddesk.payouts.fakes._server import serve_in_thread
from refunddesk.payouts.gateways.sandbox import SandboxGateway
from tests.conftest import NOW, make_settings
from tests.console_support import PASSWORD
from tests.web_seed import Seed, seed_desk

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
SHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"

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


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> Iterator[Live]:
    """A uvicorn server on a free loopback port, in a thread, over a seeded SQLite file."""

    db = tmp_path_factory.mktemp("browser") / "refunddesk.db"
    shutil.copyfile(sqlite_template, db)
    container = bootstrap(
        make_settings(f"sqlite:///{db}"), clock=FrozenClock(NOW), gateways=[SandboxGateway(seed=1)]
    )
    seed = seed_desk(container)
    with serve_in_thread(create_app(container), startup_timeout=15, lifespan=True) as url:
        yield Live(url, seed)
    container.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page_errors() -> list[str]:
    return []


def new_page(browser: Browser, errors: list[str], *, width: int = 1280, height: int = 900) -> Page:
    """A fresh page (own cookies) that records console errors, e.g. CSP violations."""
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()

    def console(message: ConsoleMessage) -> None:
        text: str = message.text
        # A page served as 404 (the friendly not-found) is logged too; responses are checked below.
        if message.type == "error" and not text.startswith("Failed to load resource"):
            errors.append(text)

    def response(resp: Response) -> None:
        if resp.request.resource_type != "document" and resp.status >= 400:
            errors.append(f"{resp.status} {resp.url}")

    page.on("console", console)
    page.on("response", response)
    page.on("pageerror", lambda e: errors.append(str(e)))
    return page


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / name), full_page=True)


def test_a_customer_tracks_a_refund_and_sees_the_timeline(
    live: Live, browser: Browser, page_errors: list[str]
) -> None:
    page = new_page(browser, page_errors)
    page.goto(live.url + "/")
    expect(page.locator('[data-figure="total"]')).to_have_text("6")
    shot(page, "home.png")

    page.goto(live.url + "/track")
    page.get_by_label("Refund reference").fill(live.seed.reference)
    page.get_by_label("Email address").fill(live.seed.tracked_email)
    page.get_by_role("button", name="Show my refund").click()
    timeline = page.locator("ol.timeline li")
    expect(timeline.last).to_contain_text("was paid to your card")
    assert timeline.count() >= 3
    expect(page.locator(".badge")).to_have_text("Paid")
    assert email_not_in_url(page, live.seed.tracked_email)
    shot(page, "track-result.png")
    assert page_errors == []


def email_not_in_url(page: Page, email: str) -> bool:
    url: str = page.url
    return email not in url and "%40" not in url


def test_a_wrong_email_shows_the_friendly_message(
    live: Live, browser: Browser, page_errors: list[str]
) -> None:
    page = new_page(browser, page_errors)
    page.goto(live.url + "/track")
    page.get_by_label("Refund reference").fill(live.seed.reference)
    page.get_by_label("Email address").fill("someone.else@example.com")
    page.keyboard.press("Enter")
    expect(page.get_by_role("alert")).to_contain_text("No refund matches")
    shot(page, "track-not-found.png")
    assert page_errors == []


def test_tracking_works_at_phone_width(
    live: Live, browser: Browser, page_errors: list[str]
) -> None:
    page = new_page(browser, page_errors, width=390, height=844)
    page.goto(live.url + "/track")
    shot(page, "track-form-phone.png")
    page.get_by_label("Refund reference").fill(live.seed.reference)
    page.get_by_label("Email address").fill(live.seed.tracked_email)
    page.get_by_role("button", name="Show my refund").click()
    expect(page.locator("ol.timeline")).to_be_visible()
    scroll_width = page.evaluate("document.documentElement.scrollWidth")
    assert scroll_width <= 390, "the page scrolls sideways on a phone"
    shot(page, "track-result-phone.png")
    assert page_errors == []


def test_keyboard_users_can_skip_to_the_content(
    live: Live, browser: Browser, page_errors: list[str]
) -> None:
    page = new_page(browser, page_errors)
    page.goto(live.url + "/track")
    page.keyboard.press("Tab")
    focused = page.evaluate("document.activeElement.textContent")
    assert focused == "Skip to content"


def test_an_admin_signs_in_to_the_desk_and_sees_the_chart(
    live: Live, browser: Browser, page_errors: list[str]
) -> None:
    page = new_page(browser, page_errors, width=1366, height=1000)
    page.goto(live.url + "/desk")
    expect(page).to_have_url(live.url + "/desk/login")
    page.get_by_label("Email address").fill(live.seed.admin_email)
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("do not match")
    shot(page, "desk-login-refused.png")

    page.get_by_label("Email address").fill(live.seed.admin_email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(live.url + "/desk")
    chart = page.locator('svg[data-chart="status-by-tenant"]')
    expect(chart).to_be_visible()
    assert chart.locator("rect").count() == 6  # 3 statuses for each of the two retailers
    box = chart.bounding_box()
    assert box is not None
    assert box["height"] > 40
    shot(page, "desk.png")

    page.get_by_role("button", name=f"Re-run job {live.seed.dead_job_id}").click()
    expect(page.get_by_role("status")).to_contain_text("queued again")
    shot(page, "desk-after-rerun.png")
    assert page_errors == []


def test_an_admin_opens_a_retailers_policy_and_a_refund_from_the_desk(
    live: Live, browser: Browser, page_errors: list[str]
) -> None:
    import httpx

    from refunddesk.policy import example_text

    north = live.seed.tenant_ids["Northwind Outfitters"]
    uploaded = httpx.post(
        live.url + "/v1/policies",
        params={"activate": "true", "note": "standard returns"},
        headers={
            "Authorization": f"Bearer {live.seed.admin_key}",
            "X-Tenant-Id": north,
            "Content-Type": "application/yaml",
        },
        content=example_text("northwind"),
    )
    assert uploaded.status_code == 201, uploaded.text

    page = new_page(browser, page_errors, width=1366, height=1000)
    page.goto(live.url + "/desk/login")
    page.get_by_label("Email address").fill(live.seed.admin_email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(live.url + "/desk")

    page.get_by_role("link", name="Northwind Outfitters", exact=True).click()
    expect(page).to_have_url(f"{live.url}/desk/tenants/{north}/policy")
    expect(page.get_by_role("heading", level=1)).to_contain_text("Northwind Outfitters")
    expect(page.locator('[data-list="summary"] li').first).to_contain_text("60 calendar days")
    expect(page.locator("table.versions tbody tr")).to_have_count(1)
    shot(page, "desk-policy.png")

    page.goto(live.url + "/desk")
    page.get_by_role("link", name=live.seed.reference).first.click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(live.seed.reference)
    expect(page.locator(".badge")).to_have_text("succeeded")
    assert page.locator('[data-list="events"] li').count() >= 3
    shot(page, "desk-refund.png")

    phone = new_page(browser, page_errors, width=390, height=844)
    phone.goto(live.url + "/desk/login")
    phone.get_by_label("Email address").fill(live.seed.admin_email)
    phone.get_by_label("Password").fill(PASSWORD)
    phone.get_by_role("button", name="Sign in").click()
    phone.goto(f"{live.url}/desk/tenants/{north}/policy")
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390
    shot(phone, "desk-policy-phone.png")
    assert page_errors == []

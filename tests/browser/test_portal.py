"""The customer portal in a real browser: Debian's Chromium driven by Playwright."""

from __future__ import annotations

import io
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import Browser, ConsoleMessage, Page, expect, sync_playwright

from refunddesk.api.app import create_app
from refunddesk.bootstrap import Container, bootstrap
from refunddesk.core.clock import FrozenClock
from refunddesk.payouts.fakes._server import serve_in_thread
from refunddesk.payouts.gateways.sandbox import SandboxGateway
from tests.conftest import NOW, make_settings
from tests.factories import Factory

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
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
EMAIL = "grace.hopper@example.com"
POLICY = """
format: 1
name: photos for damage
requirements:
  default: {condition: any, evidence: []}
  reasons:
    damaged: {evidence: [photo]}
"""

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium"
    ),
]


@dataclass
class Live:
    url: str
    container: Container
    numbers: list[str]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> Iterator[Live]:
    """A uvicorn server on a free loopback port, over a SQLite file with one retailer."""

    folder = tmp_path_factory.mktemp("portal")
    shutil.copyfile(sqlite_template, folder / "refunddesk.db")
    settings = make_settings(
        f"sqlite:///{folder / 'refunddesk.db'}", upload_dir=str(folder / "uploads")
    )
    container = bootstrap(settings, clock=FrozenClock(NOW), gateways=[SandboxGateway(seed=1)])
    f = Factory(container)
    tenant = f.tenant("Northwind Outfitters")
    f.policy(tenant.id, POLICY)
    numbers = [
        f.order(
            tenant.id,
            external_id=f"NW-{n}",
            customer={"email": EMAIL, "name": "Grace Hopper", "phone": None},
        )
        for n in (1001, 1002)
    ]
    with serve_in_thread(create_app(container), startup_timeout=15, lifespan=True) as url:
        yield Live(url, container, numbers)
    container.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        yield chromium
        chromium.close()


def new_page(browser: Browser, errors: list[str], *, width: int, height: int) -> Page:
    """A fresh page (own cookies) that records console errors, e.g. CSP violations."""
    page = browser.new_context(viewport={"width": width, "height": height}).new_page()

    def console(message: ConsoleMessage) -> None:
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            errors.append(message.text)

    page.on("console", console)
    page.on("pageerror", lambda e: errors.append(str(e)))
    return page


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"portal-{name}.png"), full_page=True)


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), (180, 40, 40)).save(out, format="PNG")
    return out.getvalue()


def identify(page: Page, number: str) -> None:
    page.get_by_label("Order number").fill(number)
    page.get_by_label("Email address").fill(EMAIL)
    page.get_by_role("button", name="Find my order").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(number)


def test_a_customer_requests_a_refund_with_a_photo_and_tracks_it(
    live: Live, browser: Browser
) -> None:
    errors: list[str] = []
    page = new_page(browser, errors, width=1280, height=900)
    page.goto(live.url + "/")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Request a refund").click()
    expect(page).to_have_url(live.url + "/portal")
    shot(page, "identify")
    identify(page, live.numbers[0])
    expect(page.get_by_text("Northwind Outfitters").first).to_be_visible()

    page.get_by_label("Quantity of Thing A").fill("1")
    page.get_by_label("Why do you want a refund?").select_option(label="It arrived damaged")
    page.get_by_label("Condition of the items").select_option("unused")
    page.get_by_label("Photos").set_input_files(
        [{"name": "broken-zip.png", "mimeType": "image/png", "buffer": png()}]
    )
    page.get_by_label("Anything else we should know?").fill("The zip came off on day one.")
    shot(page, "order")
    page.get_by_role("button", name="Preview my refund").click()

    expect(page.get_by_role("heading", name="Check your refund request")).to_be_visible()
    expect(page.locator("[data-decision]")).to_have_attribute("data-decision", "approved")
    expect(page.locator("[data-field=amount]")).to_have_text("10.00 EUR")
    expect(page.get_by_text("Photos")).to_be_visible()
    shot(page, "preview")
    page.get_by_role("button", name="Confirm and send my request").click()

    reference = page.locator("[data-field=reference]")
    expect(reference).to_have_text(re.compile(r"RF-[0-9A-Z]{8}"))
    ref = reference.inner_text()
    expect(page.get_by_role("status")).to_contain_text("sent to Northwind Outfitters")
    shot(page, "done")

    page.get_by_role("button", name="Track this refund").click()
    expect(page).to_have_url(live.url + "/track")
    expect(page.locator(".tracking .ref")).to_have_text(ref)
    expect(page.locator(".timeline")).to_contain_text("We received your refund request")
    shot(page, "track")

    # Back on the order: the refunded item shows what is left, and the refund is listed.
    page.goto(live.url + "/portal/order")
    expect(page.get_by_text("1 already refunded")).to_be_visible()
    expect(page.locator(".portal-refunds")).to_contain_text(ref)
    assert errors == []


def test_on_a_phone_errors_are_summarised_and_lead_to_their_fields(
    live: Live, browser: Browser
) -> None:
    errors: list[str] = []
    page = new_page(browser, errors, width=390, height=844)
    page.goto(live.url + "/portal")
    identify(page, live.numbers[1])
    shot(page, "order-phone")
    page.get_by_label("Photos").set_input_files(
        [{"name": "notes.png", "mimeType": "image/png", "buffer": b"just text, not a picture"}]
    )
    page.get_by_role("button", name="Preview my refund").click()
    summary = page.locator(".error-summary")
    expect(summary).to_contain_text("Choose at least one item")
    expect(summary).to_contain_text("Choose the reason for your refund.")
    expect(summary).to_contain_text("notes.png is not a JPEG, PNG or WebP photo.")
    shot(page, "errors-phone")
    summary.get_by_role("link", name="Choose the reason for your refund.").click()
    expect(page).to_have_url(re.compile(r"#reason$"))
    # The page fits the phone: nothing scrolls sideways.
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    # Keyboard: the reason select can be reached and changed without a mouse.
    page.get_by_label("Why do you want a refund?").focus()
    page.keyboard.press("ArrowDown")
    assert page.get_by_label("Why do you want a refund?").input_value() != ""

    page.get_by_label("Quantity of Thing B").fill("1")
    page.get_by_label("Why do you want a refund?").select_option("changed_mind")
    page.get_by_role("button", name="Preview my refund").click()
    expect(page.locator("[data-field=amount]")).to_have_text("5.00 EUR")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    shot(page, "preview-phone")
    page.get_by_role("button", name="Confirm and send my request").click()
    expect(page.locator("[data-field=reference]")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    shot(page, "done-phone")
    assert errors == []

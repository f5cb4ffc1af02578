"""The desk's payouts that need a person, retries from the web, and tracking by the payout."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from refunddesk.api.app import create_app
from refunddesk.auth.domain import Role
from refunddesk.auth.orm import User
from refunddesk.bootstrap import Container, bootstrap
from refunddesk.core.clock import FrozenClock
from refunddesk.orders.orm import Order
from refunddesk.payouts.gateways.base import (
    FAILURE_HELP,
    FailureReason,
    PayoutOutcome,
    PayoutRequest,
    PayoutResult,
)
from refunddesk.payouts.gateways.sandbox import SandboxGateway
from refunddesk.payouts.orm import Payout
from refunddesk.refunds import service as refunds
from refunddesk.refunds.orm import Refund, RefundEvent
from refunddesk.refunds.schemas import RefundCreate
from tests.conftest import make_settings
from tests.console_support import make_user
from tests.e2e.test_web import csrf, sign_in
from tests.factories import Factory

VALID_IBAN = "DE89 3704 0044 0532 0130 00"
ARN = "74537605329170123456789"


@dataclass
class ScriptedGateway:
    """A desk-wide gateway that always gives the same answer: pending, or paid with an ARN."""

    name: str
    outcome: PayoutOutcome
    arn: str | None = None

    def refund(self, request: PayoutRequest) -> PayoutResult:
        return PayoutResult(self.outcome, f"{self.name}_{request.idempotency_key}", arn=self.arn)

    def lookup(self, request: PayoutRequest, gateway_reference: str | None) -> PayoutResult:
        return self.refund(request)


@dataclass(frozen=True)
class Problem:
    tenant_id: str
    refund_id: str
    reference: str
    email: str


ADMIN_EMAIL = "admin@desk.example"


@dataclass(frozen=True)
class PayoutSeed:
    admin_key: str
    failed: Problem  # Northwind: declined by the sandbox, refund failed
    stuck: Problem  # Maple: accepted as pending two days ago, no answer since
    paid: Problem  # Northwind: paid with an ARN
    admin_email: str = ADMIN_EMAIL  # a desk admin user (password tests.console_support.PASSWORD)


def payout_container(url: str, clock: FrozenClock) -> Container:
    """A desk whose sandbox declines everything, beside a pending-forever and an ARN gateway."""
    return bootstrap(
        make_settings(url),
        clock=clock,
        gateways=[
            SandboxGateway(failure_rate=1.0, seed=1),
            ScriptedGateway("slowpay", PayoutOutcome.PENDING),
            ScriptedGateway("arnpay", PayoutOutcome.SUCCEEDED, arn=ARN),
        ],
    )


def _request(c: Container, tenant_id: str, order: str, amount: int) -> tuple[str, str]:
    with c.db.write() as session:
        refund, _ = refunds.request_refund(
            session,
            clock=c.clock,
            config=c.intake,
            tenant_id=tenant_id,
            data=RefundCreate.model_validate(
                {"order_id": order, "amount_minor": amount, "reason": "damaged"}
            ),
            actor="agent:seed",
        )
        return refund.id, refund.reference


def _problem(c: Container, f: Factory, tenant_id: str, gateway: str, amount: int) -> Problem:
    email = f"{gateway}.customer@example.com"
    order = f.order(
        tenant_id,
        customer={"email": email, "name": "Ada Customer"},
        currency="USD" if gateway == "slowpay" else "EUR",
        payment={"method": "card", "gateway": gateway, "reference": f"pi_{gateway}"},
    )
    refund_id, reference = _request(c, tenant_id, order, amount)
    c.worker().drain()
    return Problem(tenant_id, refund_id, reference, email)


def seed_payouts(c: Container, clock: FrozenClock) -> PayoutSeed:
    f = Factory(c)
    north = f.tenant("Northwind Outfitters", "EUR", "Europe/Berlin")
    maple = f.tenant("Maple Home Goods", "USD", "America/New_York")
    stuck = _problem(c, f, maple.id, "slowpay", 990)
    clock.advance(timedelta(days=2))  # past payout_stuck_after_seconds (a day)
    paid = _problem(c, f, north.id, "arnpay", 700)
    failed = _problem(c, f, north.id, "sandbox", 1250)
    make_user(c, ADMIN_EMAIL, admin=True)
    return PayoutSeed(f.key(None, Role.ADMIN), failed, stuck, paid)


@pytest.fixture
def desk(database_url: str, clock: FrozenClock) -> Iterator[Container]:
    c = payout_container(database_url, clock)
    yield c
    c.close()


@pytest.fixture
def seed(desk: Container, clock: FrozenClock) -> PayoutSeed:
    return seed_payouts(desk, clock)


@pytest.fixture
def web(desk: Container) -> Iterator[TestClient]:
    with TestClient(create_app(desk), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def admin(web: TestClient, seed: PayoutSeed) -> TestClient:
    sign_in(web, seed.admin_email)
    return web


def status_of(c: Container, p: Problem) -> str:
    with c.db.read() as session:
        return session.scalars(
            select(Refund.status).where(Refund.tenant_id == p.tenant_id, Refund.id == p.refund_id)
        ).one()


def event_count(c: Container, p: Problem) -> int:
    with c.db.read() as session:
        return (
            session.scalar(
                select(func.count())
                .select_from(RefundEvent)
                .where(RefundEvent.tenant_id == p.tenant_id, RefundEvent.refund_id == p.refund_id)
            )
            or 0
        )


def retry_url(p: Problem) -> str:
    return f"/desk/payouts/{p.tenant_id}/{p.refund_id}/retry"


def row_of(page: str, p: Problem) -> str:
    match = re.search(rf'<tr data-refund-id="{p.refund_id}"(.*?)</tr>', page, re.S)
    assert match, page
    return match.group(1)


def post_retry(client: TestClient, p: Problem, **fields: str) -> str:
    """Post the retry form; return the payouts page it redirects to."""
    token = csrf(client, "/desk/payouts")
    response = client.post(
        retry_url(p), data={"csrf_token": token, **fields}, follow_redirects=False
    )
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/desk/payouts"
    page = client.get("/desk/payouts")
    assert page.status_code == 200
    return str(page.text)


def test_the_page_lists_failed_and_stuck_payouts_across_retailers(
    admin: TestClient, seed: PayoutSeed
) -> None:
    page = admin.get("/desk/payouts")
    assert page.status_code == 200
    text = page.text
    assert 'data-count="failed">1<' in text
    assert 'data-count="stuck">1<' in text
    failed, stuck = row_of(text, seed.failed), row_of(text, seed.stuck)
    assert text.index(seed.failed.refund_id) < text.index(seed.stuck.refund_id)  # newest first
    assert "Northwind Outfitters" in failed
    assert f'href="/desk/refunds/{seed.failed.tenant_id}/{seed.failed.refund_id}"' in failed
    assert "12.50 EUR" in failed
    assert "Declined" in failed
    assert "sandbox: simulated decline" in failed
    assert FAILURE_HELP[FailureReason.DECLINED] in failed
    assert 'value="same"' in failed
    assert 'value="store_credit"' in failed
    assert 'name="iban"' in failed
    assert "Maple Home Goods" in stuck
    assert "9.90 USD" in stuck
    assert "pending · stuck" in stuck
    assert "2 d 0 h" in stuck
    assert "refunddesk payouts sync" in stuck
    assert "<form" not in stuck  # nothing to retry while the gateway may still pay it
    assert seed.paid.reference not in text


def test_the_desk_links_to_the_page_with_the_count(admin: TestClient, seed: PayoutSeed) -> None:
    page = admin.get("/desk").text
    assert 'href="/desk/payouts"' in page
    assert 'data-attention="2"' in page
    assert "2 payouts need a person" in page
    assert "1 failed, 1 stuck" in page


def test_the_page_says_so_when_nothing_needs_attention(desk: Container, web: TestClient) -> None:
    make_user(desk, ADMIN_EMAIL, admin=True)
    sign_in(web, ADMIN_EMAIL)
    page = web.get("/desk/payouts")
    assert page.status_code == 200
    assert "Nothing needs attention" in page.text
    assert 'data-attention="0"' in web.get("/desk").text


def test_signed_out_the_page_and_the_retry_send_to_sign_in(
    desk: Container, web: TestClient, seed: PayoutSeed
) -> None:
    response = web.get("/desk/payouts", follow_redirects=False)
    assert (response.status_code, response.headers["location"]) == (303, "/desk/login")
    token = csrf(web, "/track")
    posted = web.post(
        retry_url(seed.failed), data={"csrf_token": token, "method": "same"}, follow_redirects=False
    )
    assert (posted.status_code, posted.headers["location"]) == (303, "/desk/login")
    assert status_of(desk, seed.failed) == "failed"


def test_a_disabled_admin_loses_the_page(
    desk: Container, web: TestClient, seed: PayoutSeed
) -> None:
    sign_in(web, seed.admin_email)
    with desk.db.write() as session:  # the admin is disabled mid-shift
        for user in session.scalars(select(User).where(User.is_admin.is_(True))):
            user.disabled_at = desk.clock.now()
    assert web.get("/desk/payouts", follow_redirects=False).status_code == 303


def test_retrying_the_same_way_moves_the_refund_to_processing(
    desk: Container, admin: TestClient, seed: PayoutSeed
) -> None:
    page = post_retry(admin, seed.failed, method="same")
    assert f"Refund {seed.failed.reference} is being paid again the same way." in page
    assert status_of(desk, seed.failed) == "processing"
    assert seed.failed.refund_id not in page  # no longer waiting for a person
    assert 'data-count="failed">0<' in page
    with desk.db.read() as session:
        actors = session.scalars(
            select(RefundEvent.actor).where(RefundEvent.refund_id == seed.failed.refund_id)
        ).all()
    assert any(a.startswith("user:") for a in actors), actors

    desk.worker().drain()  # the sandbox declines again: back on the page, attempt 2
    again = admin.get("/desk/payouts").text
    assert "attempt 2" in row_of(again, seed.failed)


def test_store_credit_pays_a_declined_card_refund(
    desk: Container, admin: TestClient, seed: PayoutSeed
) -> None:
    page = post_retry(admin, seed.failed, method="store_credit")
    assert "being paid again as store credit" in page
    desk.worker().drain()
    assert status_of(desk, seed.failed) == "succeeded"
    refund_page = admin.get(f"/desk/refunds/{seed.failed.tenant_id}/{seed.failed.refund_id}")
    assert refund_page.status_code == 200
    attempts = re.findall(r'<tr data-attempt="(\d)" data-status="(\w+)">', refund_page.text)
    assert attempts == [("1", "failed"), ("2", "succeeded")]
    assert "store credit" in refund_page.text

    tracked = admin.get(
        f"/v1/track/{seed.failed.reference}", params={"email": seed.failed.email}
    ).json()
    assert tracked["method"] == "store_credit"
    assert tracked["expected_text"] == "Available now as store credit balance."
    assert tracked["timeline"][-1]["text"] == (
        "Your refund of 12.50 EUR was paid to your store credit balance."
    )


def test_a_bank_transfer_takes_the_account_from_the_form(
    desk: Container, admin: TestClient, seed: PayoutSeed
) -> None:
    page = post_retry(
        admin,
        seed.failed,
        method="bank_transfer",
        iban=VALID_IBAN,
        holder="Ada Customer",
        bic="COBADEFFXXX",
    )
    assert "being paid again by bank transfer" in page
    with desk.db.read() as session:
        refund = session.scalars(select(Refund).where(Refund.id == seed.failed.refund_id)).one()
        assert refund.status == "processing"
        assert refund.payout_override == {
            "method": "bank_transfer",
            "bank_account": {
                "iban": "DE89370400440532013000",
                "holder": "Ada Customer",
                "bic": "COBADEFFXXX",
            },
        }


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"iban": "DE00 3704 0044 0532 0130 00", "holder": "Ada"}, "IBAN: not a valid IBAN"),
        ({"iban": "DE89", "holder": "Ada"}, "IBAN: string should have at least 15 characters"),
        ({"iban": VALID_IBAN, "holder": "Ada", "bic": "1234ABCD"}, "BIC: not a valid BIC"),
        ({"iban": "", "holder": ""}, "needs the customer&#39;s IBAN and Account holder"),
        ({"iban": VALID_IBAN}, "needs the customer&#39;s Account holder"),
        ({"iban": VALID_IBAN, "holder": "Ada\x00"}, "Account holder: too long"),
        ({"iban": "x" * 500, "holder": "Ada"}, "IBAN: too long"),
    ],
)
def test_bad_bank_details_show_the_error_and_change_nothing(
    desk: Container, admin: TestClient, seed: PayoutSeed, fields: dict[str, str], message: str
) -> None:
    before = event_count(desk, seed.failed)
    page = post_retry(admin, seed.failed, method="bank_transfer", **fields)
    assert 'class="notice error" role="alert"' in page
    assert message in page
    assert status_of(desk, seed.failed) == "failed"
    assert event_count(desk, seed.failed) == before


def test_a_refund_that_has_not_failed_cannot_be_retried(
    desk: Container, admin: TestClient, seed: PayoutSeed
) -> None:
    page = post_retry(admin, seed.stuck, method="same")
    assert "only a failed refund&#39;s payout can be retried; this one is processing" in page
    assert status_of(desk, seed.stuck) == "processing"
    with desk.db.read() as session:
        assert session.scalar(select(func.count()).select_from(Payout)) == 3


def test_a_retry_that_no_longer_fits_the_order_is_refused(
    desk: Container, admin: TestClient, seed: PayoutSeed
) -> None:
    # given another refund took the budget the failed one gave back (3290 paid, 2500 taken)
    with desk.db.read() as session:
        order_id = session.scalars(
            select(Refund.order_id).where(Refund.id == seed.failed.refund_id)
        ).one()
        external = session.scalars(select(Order.external_id).where(Order.id == order_id)).one()
    _request(desk, seed.failed.tenant_id, external, 2500)
    page = post_retry(admin, seed.failed, method="same")
    assert "requested 1250 but only 790 of 3290 is left to refund on this order" in page
    assert status_of(desk, seed.failed) == "failed"


@pytest.mark.parametrize(
    ("path", "fields"),
    [
        ("/desk/payouts/x/y/retry", {"method": "same"}),
        ("/desk/payouts/../../retry", {"method": "same"}),
        ("/desk/payouts/%00/%00/retry", {"method": "same"}),
        (f"/desk/payouts/{'a' * 300}/b/retry", {"method": "same"}),
        ("/desk/payouts/01JUNKJUNKJUNKJUNKJUNKJUNK/01JUNKJUNKJUNKJUNKJUNKJUNK/retry", {}),
        (None, {}),
        (None, {"method": "bogus"}),
        (None, {"method": "same\x00"}),
        (None, {"method": "x" * 10_000}),
        (None, {"method": "bank_transfer", "iban": "\u202e" * 50, "holder": "\U0001f600"}),
        (None, {"method": "store_credit", "iban": VALID_IBAN, "holder": "Ada"}),
        (None, {"method": "original", "bic": "%%%"}),
    ],
)
def test_junk_input_is_a_message_never_an_error(
    desk: Container, admin: TestClient, seed: PayoutSeed, path: str | None, fields: dict[str, str]
) -> None:
    token = csrf(admin, "/desk/payouts")
    response = admin.post(path or retry_url(seed.failed), data={"csrf_token": token, **fields})
    assert response.status_code < 500, response.text
    assert response.status_code in (200, 400, 404)
    if response.status_code == 200 and path is not None:
        assert 'class="notice error"' in response.text
        assert status_of(desk, seed.failed) == "failed"


def test_a_retry_without_the_csrf_token_changes_nothing(
    desk: Container, admin: TestClient, seed: PayoutSeed
) -> None:
    for data in ({"method": "same"}, {"method": "same", "csrf_token": "forged"}):
        assert admin.post(retry_url(seed.failed), data=data).status_code == 403
    as_json = admin.post(retry_url(seed.failed), json={"csrf_token": "x", "method": "same"})
    as_garbage = admin.post(
        retry_url(seed.failed),
        content=b"\xff\xfe%%%",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert as_json.status_code in (400, 403)
    assert as_garbage.status_code in (400, 403)
    assert status_of(desk, seed.failed) == "failed"


def test_the_refund_page_lists_every_payout_attempt(admin: TestClient, seed: PayoutSeed) -> None:
    failed = admin.get(f"/desk/refunds/{seed.failed.tenant_id}/{seed.failed.refund_id}").text
    assert "<h2>Payouts</h2>" in failed
    row = re.search(r'<tr data-attempt="1" data-status="failed">(.*?)</tr>', failed, re.S)
    assert row, failed
    assert "sandbox" in row.group(1)
    assert "sbx_" in row.group(1)  # the gateway's reference
    assert "Declined" in row.group(1)
    assert FAILURE_HELP[FailureReason.DECLINED] in row.group(1)

    stuck = admin.get(f"/desk/refunds/{seed.stuck.tenant_id}/{seed.stuck.refund_id}").text
    assert "pending · stuck" in stuck
    assert "slowpay_rd-" in stuck
    # accepted Friday 2026-11-20 in New York: a card takes 5 to 10 business days
    window = re.sub(r"<[^>]+>", "", stuck)
    assert "27 Nov 2026 \u2013 04 Dec 2026" in window

    paid = admin.get(f"/desk/refunds/{seed.paid.tenant_id}/{seed.paid.refund_id}").text
    assert f'data-field="arn">{ARN}<' in paid


def test_the_refund_page_shows_when_there_is_no_payout_yet(
    desk: Container, admin: TestClient, seed: PayoutSeed
) -> None:
    order = Factory(desk).order(seed.failed.tenant_id)
    new_id, _ = _request(desk, seed.failed.tenant_id, order, 100)
    page = admin.get(f"/desk/refunds/{seed.failed.tenant_id}/{new_id}").text
    assert "No payout attempt yet." in page


def test_tracking_shows_the_gateways_window_and_the_arn(
    admin: TestClient, seed: PayoutSeed
) -> None:
    paid = admin.get(f"/v1/track/{seed.paid.reference}", params={"email": seed.paid.email})
    assert paid.status_code == 200
    body = paid.json()
    assert body["arn"] == ARN
    assert body["method"] == "card"
    # paid Sunday 2026-11-22 (Berlin): 5 to 10 business days, Friday 27 Nov to Friday 4 Dec
    assert (body["expected_from"], body["expected_by"]) == ("2026-11-27", "2026-12-04")
    page = admin.get("/track", params={"reference": seed.paid.reference, "email": seed.paid.email})
    assert f"Your bank can trace it with reference ARN <code>{ARN}</code>." in page.text
    assert "Usually between 27 November 2026 and 04 December 2026." in page.text

    stuck = admin.get(
        f"/v1/track/{seed.stuck.reference}", params={"email": seed.stuck.email}
    ).json()
    assert stuck["status"] == "processing"
    assert stuck["arn"] is None
    assert stuck["expected_by"] == "2026-12-04"  # the window stored when the gateway accepted it

"""The customer's status page: found only with reference and email, plain words, honest dates."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from refunddesk.bootstrap import Container, bootstrap
from refunddesk.core.clock import FrozenClock
from refunddesk.core.errors import NotFound
from refunddesk.payouts.gateways.base import PayoutOutcome
from refunddesk.payouts.gateways.sandbox import SandboxGateway
from refunddesk.refunds import service
from refunddesk.refunds.orm import Refund
from refunddesk.refunds.schemas import PayoutFallback
from refunddesk.tracking.service import Tracking, add_business_days, track
from tests.conftest import make_settings
from tests.e2e.test_web_payouts import ARN, ScriptedGateway
from tests.factories import Factory
from tests.integration.support import request

EMAIL = "Ada.Customer@Example.com"


def _refund(
    container: Container, factory: Factory, *, timezone: str = "Europe/Berlin", **order: object
) -> Refund:
    tenant = factory.tenant("Acme Shoes", timezone=timezone)
    number = factory.order(
        tenant.id,
        customer={"email": EMAIL, "name": "Ada Customer"},
        **order,  # type: ignore[arg-type]
    )
    created, _ = request(container, tenant.id, order_id=number, amount_minor=700)
    return created


def _track(container: Container, reference: str, email: str = EMAIL) -> Tracking:
    with container.db.read() as session:
        return track(session, reference=reference, email=email, now=container.clock.now())


def test_an_unknown_reference_and_a_wrong_email_get_the_same_answer(
    container: Container, factory: Factory
) -> None:
    created = _refund(container, factory)
    with pytest.raises(NotFound) as unknown:
        _track(container, "RF-00000000")
    with pytest.raises(NotFound) as wrong_email:
        _track(container, created.reference, "someone.else@example.com")
    assert str(unknown.value) == str(wrong_email.value)
    assert unknown.value.detail == wrong_email.value.detail
    assert (unknown.value.code, unknown.value.status) == (wrong_email.value.code, 404)


def test_the_email_is_compared_without_regard_to_case_or_spaces(
    container: Container, factory: Factory
) -> None:
    created = _refund(container, factory)
    for typed in (EMAIL, EMAIL.lower(), EMAIL.upper(), f"  {EMAIL}  "):
        assert _track(container, created.reference, typed).reference == created.reference


def test_the_reference_may_be_typed_loosely(container: Container, factory: Factory) -> None:
    created = _refund(container, factory)
    typed = created.reference.lower().replace("-", "").replace("0", "o")
    assert _track(container, typed).reference == created.reference


def test_a_paid_refund_tells_its_story_in_plain_words(
    container: Container, factory: Factory
) -> None:
    created = _refund(container, factory)
    container.worker().drain()
    tracked = _track(container, created.reference)
    assert (tracked.retailer, tracked.status, tracked.status_label) == (
        "Acme Shoes",
        "succeeded",
        "Paid",
    )
    assert (tracked.amount, tracked.amount_minor, tracked.currency) == ("7.00 EUR", 700, "EUR")
    assert [(e.status, e.text) for e in tracked.timeline] == [
        ("requested", "We received your refund request for 7.00 EUR."),
        ("approved", "Your refund of 7.00 EUR was approved."),
        ("processing", "We are sending 7.00 EUR to your card."),
        ("succeeded", "Your refund of 7.00 EUR was paid to your card."),
    ]


def test_a_declined_refund_says_why(container: Container, factory: Factory) -> None:
    created = _refund(container, factory, purchased_at="2026-08-01T10:00:00Z", delivered_at=None)
    with container.db.write() as session:
        service.reject(
            session,
            clock=container.clock,
            tenant_id=created.tenant_id,
            refund_id=created.id,
            actor="agent:ada",
            reason="the return window has closed",
        )
    tracked = _track(container, created.reference)
    assert [e.text for e in tracked.timeline] == [
        "We received your refund request for 7.00 EUR.",
        "Your request is with our team for review.",
        "Your refund was declined: the return window has closed.",
    ]
    assert (tracked.status_label, tracked.expected_by, tracked.expected_text) == (
        "Declined",
        None,
        "No payment is due.",
    )


def test_a_card_refund_is_expected_ten_business_days_after_it_was_paid(
    container: Container, factory: Factory, clock: FrozenClock
) -> None:
    # given a card refund paid on Friday 2026-11-20 (the clock's now)
    created = _refund(container, factory)
    container.worker().drain()
    # then it is expected ten business days later, weekends skipped: Friday 2026-12-04
    clock.advance(timedelta(days=3))  # the expected date does not move as time passes
    tracked = _track(container, created.reference)
    assert tracked.expected_by == date(2026, 12, 4)
    assert tracked.expected_text == (
        "Sent to your card; banks take 5 to 10 business days, so expect it by 04 December 2026."
    )


def test_the_paid_date_is_the_one_in_the_retailers_time_zone(
    container: Container, factory: Factory, clock: FrozenClock
) -> None:
    # given a refund paid on Thursday 2026-11-26 at 23:30 UTC, already Friday in Berlin
    created = _refund(container, factory, timezone="Europe/Berlin")
    clock.advance(datetime(2026, 11, 26, 23, 30, tzinfo=UTC) - clock.now())
    container.worker().drain()
    # then ten business days run from Friday 27 in Berlin: Friday 2026-12-11, not Thursday 10
    assert _track(container, created.reference).expected_by == date(2026, 12, 11)


def test_the_same_moment_is_still_the_day_before_in_new_york(
    container: Container, factory: Factory, clock: FrozenClock
) -> None:
    # Friday 2026-11-27 02:00 UTC is Thursday 21:00 in New York
    created = _refund(container, factory, timezone="America/New_York")
    clock.advance(datetime(2026, 11, 27, 2, 0, tzinfo=UTC) - clock.now())
    container.worker().drain()
    assert _track(container, created.reference).expected_by == date(2026, 12, 10)


def test_a_store_credit_refund_is_available_at_once(container: Container, factory: Factory) -> None:
    created = _refund(
        container,
        factory,
        payment={"method": "store_credit", "gateway": "sandbox", "reference": "sc_1"},
    )
    container.worker().drain()
    tracked = _track(container, created.reference)
    assert tracked.expected_by == date(2026, 11, 20)
    assert tracked.expected_text == "Available now as store credit balance."
    assert (
        tracked.timeline[-1].text
        == "Your refund of 7.00 EUR was paid to your store credit balance."
    )


def test_a_refund_awaiting_its_return_has_no_date_yet(
    container: Container, factory: Factory
) -> None:
    # given a policy that asks for the goods back first
    tenant = factory.tenant("Acme Shoes")
    factory.policy(tenant.id, "returns: {default: return}\n")
    number = factory.order(tenant.id, customer={"email": EMAIL, "name": "Ada Customer"})
    created, _ = request(
        container, tenant.id, order_id=number, lines=[{"sku": "SKU-A", "quantity": 1}]
    )
    tracked = _track(container, created.reference)
    assert (tracked.status, tracked.status_label) == ("awaiting_return", "Waiting for your return")
    assert tracked.expected_by is None
    assert tracked.expected_text == "We pay the refund once your return reaches us."
    assert tracked.timeline[-1].text == "Please send the items back; we refund once they arrive."


def test_a_refund_in_review_expects_review_days_plus_payout_days_from_today(
    container: Container, factory: Factory
) -> None:
    created = _refund(container, factory, purchased_at="2026-08-01T10:00:00Z", delivered_at=None)
    tracked = _track(container, created.reference)
    assert tracked.status_label == "In review"
    # Friday 2026-11-20 + (2 review + 10 bank + 1) business days
    assert tracked.expected_by == date(2026, 12, 9)


@pytest.mark.parametrize(
    ("start", "days", "expected"),
    [
        (date(2026, 11, 20), 0, date(2026, 11, 20)),  # Friday, no days
        (date(2026, 11, 20), 1, date(2026, 11, 23)),  # Friday + 1 -> Monday
        (date(2026, 11, 21), 1, date(2026, 11, 23)),  # Saturday + 1 -> Monday
        (date(2026, 11, 22), 5, date(2026, 11, 27)),  # Sunday + 5 -> Friday
        (date(2026, 11, 20), 10, date(2026, 12, 4)),
    ],
)
def test_business_days_skip_weekends(start: date, days: int, expected: date) -> None:
    assert add_business_days(start, days) == expected


def _desk(database_url: str, clock: FrozenClock) -> Container:
    return bootstrap(
        make_settings(database_url),
        clock=clock,
        gateways=[
            SandboxGateway(failure_rate=1.0, seed=1),
            ScriptedGateway("slowpay", PayoutOutcome.PENDING),
            ScriptedGateway("arnpay", PayoutOutcome.SUCCEEDED, arn=ARN),
        ],
    )


def test_a_pending_payout_is_expected_by_its_stored_window_not_a_guess_from_today(
    database_url: str, clock: FrozenClock
) -> None:
    desk = _desk(database_url, clock)
    try:
        # given a card payout the gateway accepted on Friday 2026-11-20, no answer since
        created = _refund(
            desk, Factory(desk), payment={"method": "card", "gateway": "slowpay", "reference": "p"}
        )
        desk.worker().drain()
        clock.advance(timedelta(days=4))  # a guess from today would move to 2026-12-10
        tracked = _track(desk, created.reference)
        assert (tracked.status, tracked.method, tracked.arn) == ("processing", "card", None)
        assert (tracked.expected_from, tracked.expected_by) == (
            date(2026, 11, 27),
            date(2026, 12, 4),
        )
        assert tracked.expected_text == (
            "Approved and being paid to your card: expect it by 04 December 2026."
        )
    finally:
        desk.close()


def test_a_paid_refund_shows_the_arn_the_customers_bank_can_trace(
    database_url: str, clock: FrozenClock
) -> None:
    desk = _desk(database_url, clock)
    try:
        created = _refund(
            desk, Factory(desk), payment={"method": "card", "gateway": "arnpay", "reference": "p"}
        )
        desk.worker().drain()
        tracked = _track(desk, created.reference)
        assert (tracked.status, tracked.arn, tracked.expected_by) == (
            "succeeded",
            ARN,
            date(2026, 12, 4),
        )
    finally:
        desk.close()


def test_a_store_credit_fallback_for_a_declined_card_is_told_as_store_credit(
    database_url: str, clock: FrozenClock
) -> None:
    desk = _desk(database_url, clock)
    try:
        created = _refund(desk, Factory(desk))  # card via the sandbox, which declines
        desk.worker().drain()
        failed = _track(desk, created.reference)
        assert (failed.status, failed.expected_by, failed.arn) == ("failed", None, None)
        with desk.db.write() as session:
            service.retry_payout(
                session,
                clock=desk.clock,
                config=desk.intake,
                tenant_id=created.tenant_id,
                refund_id=created.id,
                actor="agent:ada",
                fallback=PayoutFallback(method="store_credit"),
            )
        desk.worker().drain()
        tracked = _track(desk, created.reference)
        assert (tracked.status, tracked.method) == ("succeeded", "store_credit")
        assert tracked.expected_text == "Available now as store credit balance."
        assert [e.text for e in tracked.timeline][-3:] == [
            "We could not pay the refund to your original payment method. "
            "We will contact you about another way.",
            "We are sending 7.00 EUR to your store credit balance.",
            "Your refund of 7.00 EUR was paid to your store credit balance.",
        ]
    finally:
        desk.close()

"""Refund intake through the service: pricing, budget, idempotency, decision and history."""

from __future__ import annotations

import pytest

from refunddesk.bootstrap import Container
from refunddesk.core.errors import CurrencyMismatch, IdempotencyConflict, Invalid, OverBudget
from refunddesk.payouts.gateways.sandbox import SandboxGateway
from refunddesk.refunds import service
from refunddesk.refunds.domain import RefundStatus
from tests.factories import ORDER_TOTAL, Factory
from tests.integration.support import event_trail, events, jobs, refund, request

S = RefundStatus


def test_lines_are_priced_from_the_order_not_from_the_request(
    container: Container, factory: Factory
) -> None:
    # given an order of 2 x SKU-A at 10.00 and 1 x SKU-B at 5.00
    tenant = factory.tenant()
    order = factory.order(tenant.id)
    # when a refund asks for one SKU-A and the SKU-B
    created, is_new = request(
        container,
        tenant.id,
        order_id=order,
        lines=[{"sku": "SKU-A", "quantity": 1}, {"sku": "SKU-B", "quantity": 1, "reason": "other"}],
    )
    # then each line is priced at the order's unit price and the refund is their sum
    assert is_new
    stored = refund(container, tenant.id, created.id)
    assert [(li.sku, li.quantity, li.amount_minor, li.reason) for li in stored.lines] == [
        ("SKU-A", 1, 1000, "damaged"),
        ("SKU-B", 1, 500, "other"),
    ]
    assert stored.amount_minor == 1500
    assert stored.currency == "EUR"


def test_a_quantity_over_what_is_left_of_a_line_is_refused_on_that_line(
    container: Container, factory: Factory
) -> None:
    tenant = factory.tenant()
    order = factory.order(tenant.id)
    request(container, tenant.id, order_id=order, lines=[{"sku": "SKU-A", "quantity": 1}])
    with pytest.raises(OverBudget, match="only 1 of 2 left") as caught:
        request(
            container,
            tenant.id,
            order_id=order,
            lines=[{"sku": "SKU-B", "quantity": 1}, {"sku": "SKU-A", "quantity": 2}],
        )
    assert caught.value.field == "lines[1].quantity"
    # what is left is still refundable
    request(container, tenant.id, order_id=order, lines=[{"sku": "SKU-A", "quantity": 1}])


def test_a_sku_the_order_does_not_have_is_refused(container: Container, factory: Factory) -> None:
    tenant = factory.tenant()
    order = factory.order(tenant.id)
    with pytest.raises(Invalid, match="no line with sku SKU-Z") as caught:
        request(container, tenant.id, order_id=order, lines=[{"sku": "SKU-Z", "quantity": 1}])
    assert caught.value.field == "lines[0].sku"
    assert caught.value.status == 422


def test_an_unknown_order_is_refused_on_order_id(container: Container, factory: Factory) -> None:
    tenant = factory.tenant()
    with pytest.raises(service.UnknownOrder) as caught:
        request(container, tenant.id, order_id="NO-SUCH-ORDER", amount_minor=100)
    assert caught.value.field == "order_id"
    assert caught.value.code == "unknown_order"
    assert jobs(container) == []


def test_a_refund_in_another_currency_than_the_order_is_refused(
    container: Container, factory: Factory
) -> None:
    tenant = factory.tenant()
    order = factory.order(tenant.id)
    with pytest.raises(CurrencyMismatch) as caught:
        request(container, tenant.id, order_id=order, amount_minor=100, currency="USD")
    assert caught.value.field == "currency"
    # the matching currency, in any case, is fine
    created, _ = request(container, tenant.id, order_id=order, amount_minor=100, currency="eur")
    assert created.currency == "EUR"


def test_an_amount_over_what_was_paid_is_refused(container: Container, factory: Factory) -> None:
    tenant = factory.tenant()
    order = factory.order(tenant.id)
    request(container, tenant.id, order_id=order, amount_minor=ORDER_TOTAL - 100)
    with pytest.raises(OverBudget) as caught:
        request(container, tenant.id, order_id=order, amount_minor=101)
    assert caught.value.extra == {"remaining_minor": 100}
    request(container, tenant.id, order_id=order, amount_minor=100)


def test_replaying_a_request_with_its_idempotency_key_returns_the_same_refund(
    container: Container, factory: Factory
) -> None:
    tenant = factory.tenant()
    order = factory.order(tenant.id)
    first, created_first = request(
        container, tenant.id, key="k-1", order_id=order, amount_minor=700
    )
    again, created_again = request(
        container, tenant.id, key="k-1", order_id=order, amount_minor=700
    )
    assert (created_first, created_again) == (True, False)
    assert again.id == first.id
    assert again.reference == first.reference
    # no second refund, no second payout job
    assert len(jobs(container)) == 1
    assert len(events(container, tenant.id, first.id)) == 2


def test_reusing_an_idempotency_key_for_another_body_is_a_conflict(
    container: Container, factory: Factory
) -> None:
    tenant = factory.tenant()
    order = factory.order(tenant.id)
    request(container, tenant.id, key="k-1", order_id=order, amount_minor=700)
    with pytest.raises(IdempotencyConflict) as caught:
        request(container, tenant.id, key="k-1", order_id=order, amount_minor=701)
    assert caught.value.status == 409
    assert caught.value.field == "Idempotency-Key"


def test_an_idempotency_key_belongs_to_one_tenant(container: Container, factory: Factory) -> None:
    acme, other = factory.tenant("Acme"), factory.tenant("Other")
    mine, _ = request(
        container, acme.id, key="k-1", amount_minor=700, order_id=factory.order(acme.id)
    )
    theirs, created = request(
        container, other.id, key="k-1", amount_minor=700, order_id=factory.order(other.id)
    )
    assert created
    assert theirs.id != mine.id


def test_a_refund_inside_the_return_window_is_approved_and_queued_for_payout(
    container: Container, factory: Factory
) -> None:
    tenant = factory.tenant()
    order = factory.order(tenant.id)  # delivered 8 days before the clock's now
    created, _ = request(container, tenant.id, order_id=order, amount_minor=700)
    assert created.status == S.APPROVED
    # decided by the built-in default policy (version 0), which explains itself
    assert created.decision_reasons == [
        "within_return_window: delivered 2026-11-12, window 30 days ends 2026-12-12"
    ]
    assert created.policy_version == 0
    [job] = jobs(container)
    assert (job.kind, job.tenant_id, job.payload) == (
        "payout",
        tenant.id,
        {"refund_id": created.id},
    )


def test_a_refund_outside_the_return_window_goes_to_review_with_the_reason(
    container: Container, factory: Factory
) -> None:
    tenant = factory.tenant()
    order = factory.order(
        tenant.id, purchased_at="2026-09-01T10:00:00Z", delivered_at="2026-09-03T10:00:00Z"
    )
    created, _ = request(container, tenant.id, order_id=order, amount_minor=700)
    assert created.status == S.PENDING_REVIEW
    assert created.decision_reasons == [
        "outside_return_window: delivered 2026-09-03, window 30 days ended 2026-10-03"
    ]
    assert jobs(container) == []  # nothing is paid before a person approves


@pytest.mark.parametrize("release", ["reject", "cancel"])
def test_a_rejected_or_canceled_refund_frees_its_budget(
    container: Container, factory: Factory, release: str
) -> None:
    tenant = factory.tenant()
    order = factory.order(
        tenant.id, purchased_at="2026-09-01T10:00:00Z", delivered_at="2026-09-03T10:00:00Z"
    )
    whole, _ = request(container, tenant.id, order_id=order, amount_minor=ORDER_TOTAL)
    with pytest.raises(OverBudget):
        request(container, tenant.id, order_id=order, amount_minor=1)
    with container.db.write() as session:
        kwargs = {"reason": "not eligible"} if release == "reject" else {}
        getattr(service, release)(
            session,
            clock=container.clock,
            tenant_id=tenant.id,
            refund_id=whole.id,
            actor="agent:ada",
            **kwargs,
        )
    again, _ = request(container, tenant.id, order_id=order, amount_minor=ORDER_TOTAL)
    assert again.amount_minor == ORDER_TOTAL


def test_a_failed_refund_frees_its_budget_and_its_line_quantities(
    container: Container, factory: Factory, sandbox: SandboxGateway
) -> None:
    tenant = factory.tenant()
    order = factory.order(tenant.id)
    sandbox.failure_rate = 1.0
    failed, _ = request(
        container, tenant.id, order_id=order, lines=[{"sku": "SKU-A", "quantity": 2}]
    )
    container.worker().drain()
    assert refund(container, tenant.id, failed.id).status == S.FAILED
    again, _ = request(
        container, tenant.id, order_id=order, lines=[{"sku": "SKU-A", "quantity": 2}]
    )
    assert again.amount_minor == 2000


def test_every_change_appends_an_event_in_order_numbered_from_one(
    container: Container, factory: Factory
) -> None:
    # given an approved refund
    tenant = factory.tenant()
    order = factory.order(tenant.id)
    created, _ = request(container, tenant.id, order_id=order, amount_minor=700, actor="api:ada")
    # when the worker pays it
    container.worker().drain()
    # then its history tells each step, in order, numbered 1..n
    history = events(container, tenant.id, created.id)
    assert [e.seq for e in history] == list(range(1, len(history) + 1))
    assert [(e.type, e.from_status, e.to_status) for e in history] == [
        ("refund.requested", None, "requested"),
        ("refund.status_changed", "requested", "approved"),
        ("refund.status_changed", "approved", "processing"),
        ("payout.sent", None, "processing"),
        ("payout.succeeded", None, "processing"),
        ("refund.status_changed", "processing", "succeeded"),
    ]
    assert history[0].actor == "api:ada"
    assert history[0].data["amount_minor"] == 700
    assert history[1].data == {
        "reasons": ["within_return_window: delivered 2026-11-12, window 30 days ends 2026-12-12"],
        "policy_version": 0,
        "amount_minor": 700,
    }
    assert refund(container, tenant.id, created.id).event_count == len(history)


def test_a_decision_by_an_agent_is_appended_after_the_intake_events(
    container: Container, factory: Factory
) -> None:
    tenant = factory.tenant()
    order = factory.order(
        tenant.id, purchased_at="2026-09-01T10:00:00Z", delivered_at="2026-09-03T10:00:00Z"
    )
    created, _ = request(container, tenant.id, order_id=order, amount_minor=700)
    with container.db.write() as session:
        service.approve(
            session,
            clock=container.clock,
            config=container.intake,
            tenant_id=tenant.id,
            refund_id=created.id,
            actor="agent:ada",
            note="goodwill",
        )
    history = events(container, tenant.id, created.id)
    assert [e.seq for e in history] == [1, 2, 3, 4]
    assert (history[2].type, history[2].actor) == ("refund.approval_recorded", "agent:ada")
    assert (history[3].actor, history[3].to_status, history[3].data) == (
        "agent:ada",
        "approved",
        {"note": "goodwill", "approvers": ["agent:ada"]},
    )
    assert event_trail(container, tenant.id, created.id)[1] == (
        "refund.status_changed",
        "pending_review",
    )
    assert len(jobs(container)) == 1

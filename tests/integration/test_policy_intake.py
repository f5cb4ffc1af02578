"""Intake decided by each tenant's active policy: status, amount, findings, version, returns."""

from __future__ import annotations

from dataclasses import replace
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from refunddesk.bootstrap import Container
from refunddesk.db.prepared import Driver
from refunddesk.policy import evaluate
from refunddesk.policy.document import example_text
from refunddesk.policy.facts import (
    customer_history,
    order_facts,
    request_facts_from_refund,
)
from refunddesk.policy.service import CACHE
from refunddesk.refunds import service
from refunddesk.refunds.domain import RefundStatus
from refunddesk.returns.orm import ReturnRecord
from tests.conftest import NOW
from tests.factories import Factory, TenantHandle
from tests.integration.support import event_trail, jobs, refund, request

S = RefundStatus
RECENT = {"purchased_at": "2026-11-10T10:00:00Z", "delivered_at": "2026-11-12T10:00:00Z"}


def northwind(factory: Factory) -> TenantHandle:
    tenant = factory.tenant("Northwind", currency="EUR", timezone="Europe/Berlin")
    factory.policy(tenant.id, example_text("northwind"))
    return tenant


def sakura(factory: Factory) -> TenantHandle:
    tenant = factory.tenant("Sakura", currency="JPY", timezone="Asia/Tokyo")
    factory.policy(tenant.id, example_text("sakura"))
    return tenant


def yen_order(factory: Factory, tenant_id: str, **overrides: Any) -> str:
    """A camera at 40,000 JPY (electronics), shipping 500, tax 4,000."""
    body: dict[str, Any] = {
        "currency": "JPY",
        "lines": [
            {
                "sku": "CAM-1",
                "name": "Camera",
                "category": "electronics",
                "quantity": 1,
                "unit_price_minor": 40_000,
            }
        ],
        "shipping_minor": 500,
        "tax_minor": 4_000,
        **RECENT,
    }
    body.update(overrides)
    return factory.order(tenant_id, **body)


def test_the_same_damaged_item_is_refunded_at_once_by_one_retailer_and_returned_first_by_another(
    container: Container, factory: Factory
) -> None:
    # given Northwind (small refunds paid now) and Sakura (goods back first)
    nw, sk = northwind(factory), sakura(factory)
    nw_order = factory.order(nw.id, **RECENT)
    sk_order = yen_order(factory, sk.id)
    evidence = ["photo", "receipt"]
    # when each customer asks for one damaged item back, with photo and receipt
    instant, _ = request(
        container,
        nw.id,
        order_id=nw_order,
        lines=[{"sku": "SKU-A", "quantity": 1}],
        evidence=evidence,
    )
    returned, _ = request(
        container,
        sk.id,
        order_id=sk_order,
        lines=[{"sku": "CAM-1", "quantity": 1}],
        evidence=evidence,
    )
    # then Northwind approves and pays: the item, its shipping and its tax share
    assert instant.status == S.APPROVED
    assert instant.amount_minor == 1000 + 490 + 120
    assert "instant_refund" in [f["code"] for f in instant.findings or []]
    # and Sakura waits for the goods, with a return authorized in the same transaction
    assert returned.status == S.AWAITING_RETURN
    assert "return_required" in [f["code"] for f in returned.findings or []]
    with container.db.read() as session:
        [rma] = session.scalars(select(ReturnRecord).where(ReturnRecord.refund_id == returned.id))
        assert rma.status == "authorized"
        assert [(li.sku, li.quantity, li.unit_refund_minor) for li in rma.lines] == [
            ("CAM-1", 1, 40_000)
        ]
    assert [t for t, _ in event_trail(container, sk.id, returned.id)] == [
        "refund.requested",
        "refund.status_changed",
        "return.authorized",
    ]
    assert refund(container, sk.id, returned.id).event_count == 3
    # only the approved refund's payout is queued
    assert [j.payload["refund_id"] for j in jobs(container)] == [instant.id]


def test_a_hard_finding_stores_the_refund_rejected_with_its_reasons(
    container: Container, factory: Factory
) -> None:
    # given Sakura, whose 14-day window is a hard rule, and an order delivered in September
    sk = sakura(factory)
    order = yen_order(
        factory, sk.id, purchased_at="2026-09-01T10:00:00Z", delivered_at="2026-09-02T10:00:00Z"
    )
    # when a refund is asked in November
    created, is_new = request(
        container,
        sk.id,
        order_id=order,
        lines=[{"sku": "CAM-1", "quantity": 1}],
        evidence=["photo", "receipt"],
    )
    # then it is stored, rejected, saying why; nothing is paid and no budget is held
    assert is_new
    stored = refund(container, sk.id, created.id)
    assert stored.status == S.REJECTED
    assert stored.decision_reasons == [
        "outside_return_window: delivered 2026-09-02, window 14 days ended 2026-09-16"
    ]
    assert stored.findings == [
        {
            "code": "outside_return_window",
            "severity": "hard",
            "message": "delivered 2026-09-02, window 14 days ended 2026-09-16",
        }
    ]
    assert stored.approvals_required == 0
    assert jobs(container) == []
    with container.db.read() as session:
        assert session.scalars(select(ReturnRecord)).all() == []


def test_a_soft_finding_sends_the_refund_to_review(container: Container, factory: Factory) -> None:
    # given Northwind, where a late request goes to a person, and an order from August
    nw = northwind(factory)
    order = factory.order(
        nw.id, purchased_at="2026-08-01T10:00:00Z", delivered_at="2026-08-03T10:00:00Z"
    )
    created, _ = request(container, nw.id, order_id=order, amount_minor=700, reason="other")
    assert created.status == S.PENDING_REVIEW
    assert created.approvals_required == 1
    assert [(f["code"], f["severity"]) for f in created.findings or []] == [
        ("outside_return_window", "soft")
    ]
    assert jobs(container) == []


def test_restocking_and_return_label_fees_reduce_the_amount(
    container: Container, factory: Factory
) -> None:
    # given Sakura: 15% restocking on electronics and an 800 JPY label for a change of mind
    sk = sakura(factory)
    order = yen_order(factory, sk.id)
    created, _ = request(
        container,
        sk.id,
        order_id=order,
        reason="changed_mind",
        lines=[{"sku": "CAM-1", "quantity": 1, "condition": "unopened"}],
        evidence=["receipt"],
    )
    # then the refund is the item and its tax, less 6,000 restocking and the 800 label
    assert created.status == S.AWAITING_RETURN
    assert created.amount_minor == 40_000 + 4_000 - 6_000 - 800
    assert created.requested_minor is None
    breakdown = created.breakdown or {}
    assert (breakdown["restocking_fee_minor"], breakdown["return_shipping_minor"]) == (6_000, 800)
    # the line as ordered keeps its price; the return credits the line net of restocking
    assert [li.amount_minor for li in refund(container, sk.id, created.id).lines] == [40_000]
    with container.db.read() as session:
        [rma] = session.scalars(select(ReturnRecord))
        assert [li.unit_refund_minor for li in rma.lines] == [34_000]


def test_the_deciding_version_is_kept_when_a_new_version_is_activated(
    container: Container, factory: Factory
) -> None:
    tenant = factory.tenant()
    first = factory.policy(tenant.id, "name: v1\nreturns: {default: instant}\n")
    before, _ = request(
        container,
        tenant.id,
        order_id=factory.order(tenant.id, **RECENT),
        lines=[{"sku": "SKU-A", "quantity": 1}],
    )
    second = factory.policy(tenant.id, "name: v2\nreturns: {default: return}\n")
    after, _ = request(
        container,
        tenant.id,
        order_id=factory.order(tenant.id, **RECENT),
        lines=[{"sku": "SKU-A", "quantity": 1}],
    )
    assert (first, second) == (1, 2)
    assert (before.policy_version, before.status) == (1, S.APPROVED)
    assert (after.policy_version, after.status) == (2, S.AWAITING_RETURN)
    assert refund(container, tenant.id, before.id).policy_version == 1


def test_a_tenant_without_a_policy_is_decided_by_the_default_version_0(
    container: Container, factory: Factory
) -> None:
    tenant = factory.tenant()
    created, _ = request(
        container,
        tenant.id,
        order_id=factory.order(tenant.id),
        lines=[{"sku": "SKU-A", "quantity": 2}],
    )
    assert (created.policy_version, created.status, created.amount_minor) == (0, S.APPROVED, 2000)
    assert created.refund_method == "original"


def test_a_customer_who_returns_often_sends_the_goods_back_first(
    container: Container, factory: Factory
) -> None:
    # given a Northwind customer with three refunds this year (instant is for fewer than 3)
    nw = northwind(factory)
    customer = {"email": "often@example.com", "name": "Ofelia Often"}
    for _ in range(3):
        order = factory.order(nw.id, customer=customer, **RECENT)
        request(container, nw.id, order_id=order, amount_minor=100, reason="price_adjustment")
    order = factory.order(nw.id, customer=customer, **RECENT)
    with container.db.read() as session:
        db = Driver.of(session)
        history = customer_history(db, tenant_id=nw.id, email=customer["email"], before=NOW)
        latest = customer_history(
            db, tenant_id=nw.id, email=customer["email"], before=NOW, newest=2
        )
    assert len(history.refund_times) == 3
    assert latest.refund_times == history.refund_times[-2:]
    # when the customer asks for a small refund by lines
    created, _ = request(
        container,
        nw.id,
        order_id=order,
        lines=[{"sku": "SKU-B", "quantity": 1}],
        evidence=["photo"],
    )
    # then the goods must come back first
    assert created.status == S.AWAITING_RETURN


def test_findings_policy_version_and_breakdown_are_in_every_api_response(
    container: Container, factory: Factory, client: TestClient
) -> None:
    sk = sakura(factory)
    order = yen_order(factory, sk.id)
    response = client.post(
        "/v1/refunds",
        headers=sk.headers,
        json={
            "order_id": order,
            "reason": "damaged",
            "lines": [{"sku": "CAM-1", "quantity": 1}],
            "evidence": ["photo", "receipt"],
        },
    )
    assert response.status_code == 201, response.text
    made = response.json()
    read = client.get(f"/v1/refunds/{made['id']}", headers=sk.headers).json()
    [listed] = client.get("/v1/refunds", headers=sk.headers).json()["items"]
    for body in (made, read, listed):
        assert body["policy_version"] == 1
        assert body["status"] == "awaiting_return"
        assert "return_required" in [f["code"] for f in body["findings"]]
        assert body["breakdown"]["lines_minor"] == 40_000
        assert body["refund_method"] == "original"
    assert read == listed


@pytest.mark.parametrize("policy", ["northwind", "sakura"])
def test_a_stored_refund_replays_to_the_same_decision(
    container: Container, factory: Factory, policy: str
) -> None:
    tenant = northwind(factory) if policy == "northwind" else sakura(factory)
    order = (
        factory.order(tenant.id, **RECENT)
        if policy == "northwind"
        else yen_order(factory, tenant.id)
    )
    sku = "SKU-A" if policy == "northwind" else "CAM-1"
    created, _ = request(
        container,
        tenant.id,
        order_id=order,
        reason="changed_mind",
        lines=[{"sku": sku, "quantity": 1, "condition": "unopened"}],
        evidence=["receipt"],
        refund_method="store_credit",
    )
    with container.db.read() as session:
        stored = service.get_refund(session, tenant_id=tenant.id, refund_id=created.id)
        facts = order_facts(Driver.of(session), tenant_id=tenant.id, order_id=stored.order_id)
        # the order as it was before this refund took its share
        before = replace(facts, refunded_quantities={}, committed_minor=0)
        replayed = evaluate(
            CACHE.parsed(session, tenant.id, stored.policy_version or 0),
            order=before,
            request=request_facts_from_refund(stored, stored.lines),
            now=NOW,
            tz=ZoneInfo("Europe/Berlin" if policy == "northwind" else "Asia/Tokyo"),
            policy_version=stored.policy_version or 0,
        )
    assert stored.status in ("approved", "awaiting_return")
    assert str(replayed.decision) == stored.status
    assert replayed.amount_minor == stored.amount_minor
    assert list(replayed.reasons) == stored.decision_reasons

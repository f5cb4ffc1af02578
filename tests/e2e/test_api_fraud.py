"""Fraud over HTTP: signals on orders, risk on every refund, a ring held, labels, the queue."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from refunddesk.auth.domain import Role
from refunddesk.bootstrap import Container
from refunddesk.fraud import scoring
from refunddesk.fraud.orm import FraudLabel, IdentityKey
from refunddesk.payouts import disputes
from refunddesk.payouts.gateways.base import GatewayNotification, NotificationKind
from refunddesk.refunds.orm import Refund
from tests.e2e.support import assert_problem, bearer
from tests.factories import Factory, TenantHandle, order_payload
from tests.fraud_support import tiny_model


@pytest.fixture(autouse=True)
def _model(monkeypatch: pytest.MonkeyPatch) -> None:
    """Score with a model trained here, whatever model the desk ships."""
    monkeypatch.setattr(scoring, "active_model", lambda session, *, tenant_id: tiny_model())


def place_order(client: TestClient, tenant: TenantHandle, **overrides: Any) -> str:
    body = order_payload(**overrides)
    response = client.post("/v1/orders", headers=tenant.headers, json=body)
    assert response.status_code == 201, response.text
    return str(body["external_id"])


def ask_refund(client: TestClient, tenant: TenantHandle, order: str, **body: Any) -> Any:
    payload: dict[str, Any] = {"order_id": order, "reason": "damaged", "amount_minor": 900}
    payload.update(body)
    response = client.post("/v1/refunds", headers=tenant.headers, json=payload)
    assert response.status_code == 201, response.text
    return response.json()


def ring_member(n: int) -> dict[str, Any]:
    """Orders of different accounts that share one device and one payment card."""
    return {
        "customer": {"email": f"ring{n}@example.net", "name": f"Ring {n}", "ref": f"acct-{n}"},
        "device_id": "dev-ring-1",
        "payment": {
            "method": "card",
            "gateway": "sandbox",
            "reference": f"pi_ring_{n}",
            "fingerprint": "fp-ring-card",
            "last4": "4242",
        },
    }


def test_an_honest_first_time_refund_sails_through_with_its_risk(
    client: TestClient, factory: Factory
) -> None:
    tenant = factory.tenant()
    order = place_order(client, tenant, device_id="dev-honest")
    refund = ask_refund(client, tenant, order)
    assert refund["status"] == "approved"
    risk = refund["risk"]
    assert risk["level"] == "low"
    assert 0 <= risk["score"] < 0.5
    assert risk["model_version"] == "test-tiny-1"
    assert risk["rules_version"].startswith("rules-")
    # The same risk when read back.
    read = client.get(f"/v1/refunds/{refund['id']}", headers=tenant.headers).json()
    assert read["risk"] == risk


def test_a_refund_from_a_linked_account_ring_is_held_with_readable_reasons(
    client: TestClient, factory: Factory
) -> None:
    tenant = factory.tenant()
    first = [
        ask_refund(client, tenant, place_order(client, tenant, **ring_member(n))) for n in (1, 2, 3)
    ]
    assert first[0]["status"] == "approved"  # alone, the first account is nothing unusual
    held = ask_refund(client, tenant, place_order(client, tenant, **ring_member(4)))
    assert held["status"] == "pending_review"
    assert held["risk"]["level"] == "high"
    codes = [f["code"] for f in held["findings"]]
    assert "fraud_hold" in codes
    assert any(r.startswith("fraud_hold: fraud risk high") for r in held["decision_reasons"])
    messages = [r["message"] for r in held["risk"]["reasons"]]
    assert held["risk"]["reasons"][0]["code"] == "linked_ring"
    assert "3 refunds in 30 days from linked accounts" in messages[0]
    assert "linked to 3 other accounts" in messages[0]
    # On the fraud review queue (with ring members the model already found suspicious).
    queue = client.get("/v1/fraud/review-queue", headers=tenant.headers).json()
    assert held["id"] in [r["id"] for r in queue["items"]]
    assert first[0]["id"] not in [r["id"] for r in queue["items"]]
    assert {r["risk"]["level"] for r in queue["items"]} <= {"medium", "high"}
    high = client.get("/v1/fraud/review-queue?level=high", headers=tenant.headers).json()
    assert {r["risk"]["level"] for r in high["items"]} == {"high"}


def test_orders_accept_and_show_optional_signals_and_store_identity_keys(
    client: TestClient, factory: Factory, container: Container
) -> None:
    tenant = factory.tenant()
    address = {"line1": "12 Main Street", "postal_code": "10115", "country": "DE", "city": "Berlin"}
    order = place_order(
        client,
        tenant,
        shipping_address=address,
        billing_address=address,
        ip_address="203.0.113.7",
        **ring_member(9),
    )
    shown = client.get(f"/v1/orders/{order}", headers=tenant.headers).json()
    assert shown["shipping_address"] == {**address, "line2": None, "region": None}
    assert shown["ip_address"] == "203.0.113.7"
    assert shown["device_id"] == "dev-ring-1"
    assert shown["customer"]["ref"] == "acct-9"
    assert shown["payment"]["last4"] == "4242"
    with container.db.read() as session:
        kinds = sorted(
            session.scalars(select(IdentityKey.kind).where(IdentityKey.tenant_id == tenant.id))
        )
    assert kinds == ["account", "address", "device", "email", "payment"]


@pytest.mark.parametrize(
    "bad",
    [
        {"payment": {"method": "card", "gateway": "s", "reference": "r", "last4": "42a2"}},
        {"shipping_address": {"line1": "x", "country": "Germany"}},
        {"ip_address": "not-an-ip"},
        {
            "lines": [
                {"sku": "A", "name": "A", "quantity": 1, "unit_price_minor": 1, "weight_grams": -1}
            ]
        },
    ],
)
def test_bad_signals_are_refused_naming_the_field(
    client: TestClient, factory: Factory, bad: dict[str, Any]
) -> None:
    tenant = factory.tenant()
    response = client.post("/v1/orders", headers=tenant.headers, json=order_payload(**bad))
    assert_problem(response, 422)


def test_agent_labels_feed_the_refunds_history_and_the_latest_counts(
    client: TestClient, factory: Factory, container: Container
) -> None:
    tenant = factory.tenant()
    refund = ask_refund(client, tenant, place_order(client, tenant))
    url = f"/v1/refunds/{refund['id']}/fraud-label"
    agent = bearer(factory.key(tenant.id, Role.AGENT))
    refused = client.post(url, headers=tenant.headers, json={"label": "fraud"})
    assert_problem(refused, 403)  # the retailer's integration key does not judge refunds
    first = client.post(url, headers=agent, json={"label": "fraud", "note": "ring"})
    assert first.status_code == 201, first.text
    assert first.json()["source"] == "agent"
    assert first.json()["actor"].startswith("agent:")
    client.post(url, headers=agent, json={"label": "legit"})
    labels = client.get(f"/v1/refunds/{refund['id']}/fraud-labels", headers=tenant.headers)
    assert [x["label"] for x in labels.json()] == ["fraud", "legit"]
    events = client.get(f"/v1/refunds/{refund['id']}/events", headers=tenant.headers).json()
    assert [e["data"]["label"] for e in events if e["type"] == "fraud.labelled"] == [
        "fraud",
        "legit",
    ]
    from refunddesk.fraud.labels import latest_labels

    with container.db.read() as session:
        assert latest_labels(session, tenant_id=tenant.id) == {refund["id"]: "legit"}


def test_labels_are_refused_for_unknown_refunds_and_values(
    client: TestClient, factory: Factory
) -> None:
    tenant = factory.tenant()
    refund = ask_refund(client, tenant, place_order(client, tenant))
    agent = bearer(factory.key(tenant.id, Role.AGENT))
    missing = client.post(
        "/v1/refunds/01ARZ3NDEKTSV4RRFFQ69G5FAV/fraud-label",
        headers=agent,
        json={"label": "fraud"},
    )
    assert_problem(missing, 404)
    bad = client.post(
        f"/v1/refunds/{refund['id']}/fraud-label", headers=agent, json={"label": "maybe"}
    )
    assert_problem(bad, 422, field="label")
    other = factory.tenant(name="Other")
    foreign = client.get(f"/v1/refunds/{refund['id']}/fraud-labels", headers=other.headers)
    assert_problem(foreign, 404)


@pytest.mark.parametrize(
    ("detail", "labelled"),
    [
        ("stripe: dispute needs_response: fraudulent", True),
        ("stripe: dispute lost: duplicate", False),
    ],
)
def test_a_chargeback_for_fraud_labels_the_payments_refunds_fraud(
    client: TestClient, factory: Factory, container: Container, detail: str, labelled: bool
) -> None:
    tenant = factory.tenant()
    order = place_order(client, tenant, **ring_member(5))
    refund = ask_refund(client, tenant, order)
    notification = GatewayNotification(
        event_id="evt_1",
        type="charge.dispute.created",
        kind=NotificationKind.DISPUTE_OPENED,
        gateway_reference="dp_1",
        failure_message=detail,
        payment_references=("pi_ring_5",),
    )
    for _ in range(2):  # a redelivered webhook labels once
        with container.db.write() as session:
            disputes.record(
                session,
                tenant_id=tenant.id,
                gateway="sandbox",
                notification=notification,
                now=container.clock.now(),
                max_attempts=3,
            )
    with container.db.read() as session:
        rows = list(session.scalars(select(FraudLabel).where(FraudLabel.tenant_id == tenant.id)))
    if labelled:
        assert [(r.refund_id, r.label, r.source, r.actor) for r in rows] == [
            (refund["id"], "fraud", "chargeback", "chargeback:dp_1")
        ]
    else:
        assert rows == []


def test_every_score_names_its_model_and_rules(
    client: TestClient, factory: Factory, container: Container
) -> None:
    tenant = factory.tenant()
    for n in range(1, 5):
        ask_refund(client, tenant, place_order(client, tenant, **ring_member(n)))
    ask_refund(client, tenant, place_order(client, tenant))
    with container.db.read() as session:
        rows = session.execute(
            select(Refund.risk_score, Refund.risk_model_version, Refund.risk_rules_version).where(
                Refund.tenant_id == tenant.id
            )
        ).all()
    assert len(rows) == 5
    for score, model_version, rules_version in rows:
        assert score is not None
        assert model_version
        assert rules_version

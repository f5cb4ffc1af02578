"""The returns API over HTTP: /v1/refunds/{id}/return and its moves."""

from __future__ import annotations

from fastapi.testclient import TestClient

from refunddesk.auth.domain import Role
from refunddesk.bootstrap import Container
from tests.e2e.support import assert_problem, bearer, row_counts
from tests.factories import Factory
from tests.integration.returns_support import returns_tenant


def _refund_awaiting_return(client: TestClient, factory: Factory, tenant_id: str, key: str) -> str:
    response = client.post(
        "/v1/refunds",
        headers=bearer(key),
        json={
            "order_id": factory.order(tenant_id),
            "reason": "damaged",
            "lines": [{"sku": "SKU-A", "quantity": 2}, {"sku": "SKU-B", "quantity": 1}],
        },
    )
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "awaiting_return"
    refund_id: str = response.json()["id"]
    return refund_id


def test_a_return_moves_from_shipping_to_an_adjusted_approved_refund_over_http(
    client: TestClient, container: Container, factory: Factory
) -> None:
    tenant = returns_tenant(container, factory)
    agent = bearer(factory.key(tenant.id, Role.AGENT))
    refund_id = _refund_awaiting_return(client, factory, tenant.id, tenant.key)
    base = f"/v1/refunds/{refund_id}/return"

    shown = client.get(base, headers=tenant.headers)
    assert shown.status_code == 200, shown.text
    assert shown.json()["status"] == "authorized"
    assert shown.json()["authorized_minor"] == 2500

    # the integration (the shop) reports the parcel shipped
    shipped = client.post(
        f"{base}/ship", headers=tenant.headers, json={"carrier": "DHL", "tracking_number": "dh 1"}
    )
    assert shipped.status_code == 200, shipped.text
    assert (shipped.json()["status"], shipped.json()["tracking_number"]) == ("in_transit", "DH1")

    # an agent records the receipt: one SKU-A short
    received = client.post(
        f"{base}/receive",
        headers=agent,
        json={
            "lines": [
                {"sku": "SKU-A", "quantity": 1, "condition": "unused"},
                {"sku": "SKU-B", "quantity": 1, "condition": "damaged"},
            ]
        },
    )
    assert received.status_code == 200, received.text
    assert received.json()["status"] == "received"
    refund = client.get(f"/v1/refunds/{refund_id}", headers=tenant.headers).json()
    assert refund["status"] == "return_received"

    # and inspects: SKU-A accepted, SKU-B credited 2.00
    inspected = client.post(
        f"{base}/inspect",
        headers=agent,
        json={
            "lines": [
                {"sku": "SKU-A", "verdict": "accept"},
                {"sku": "SKU-B", "verdict": "partial", "credit_minor": 200, "reason": "dented"},
            ]
        },
    )
    assert inspected.status_code == 200, inspected.text
    body = inspected.json()
    assert body["status"] == "inspected"
    assert body["settlement"]["status"] == "approved"
    assert body["settlement"]["refund_amount_after_minor"] == 1000 + 200
    refund = client.get(f"/v1/refunds/{refund_id}", headers=tenant.headers).json()
    assert (refund["status"], refund["amount_minor"]) == ("approved", 1200)
    types = [
        e["type"]
        for e in client.get(f"/v1/refunds/{refund_id}/events", headers=tenant.headers).json()
    ]
    assert {"return.in_transit", "return.received", "return.inspected"} <= set(types)
    assert "refund.amount_adjusted" in types


def test_illegal_return_moves_answer_409_problems_and_change_nothing(
    client: TestClient, container: Container, factory: Factory
) -> None:
    tenant = returns_tenant(container, factory)
    agent = bearer(factory.key(tenant.id, Role.AGENT))
    refund_id = _refund_awaiting_return(client, factory, tenant.id, tenant.key)
    base = f"/v1/refunds/{refund_id}/return"
    before = row_counts(container)
    inspect = client.post(
        f"{base}/inspect", headers=agent, json={"lines": [{"sku": "SKU-A", "verdict": "accept"}]}
    )
    assert_problem(inspect, 409)
    lost = client.post(f"{base}/lost", headers=agent)  # never shipped: cannot be lost
    assert_problem(lost, 409)
    assert row_counts(container) == before
    # more than authorized is a 422, an unknown verdict shape too
    over = client.post(
        f"{base}/receive", headers=agent, json={"lines": [{"sku": "SKU-A", "quantity": 3}]}
    )
    assert_problem(over, 422)
    assert over.json()["code"] == "over_receipt"
    bad = client.post(
        f"{base}/inspect",
        headers=agent,
        json={"lines": [{"sku": "SKU-A", "verdict": "accept", "bonus": 1}]},
    )
    assert_problem(bad, 422)


def test_the_integration_key_may_ship_but_not_receive_or_inspect(
    client: TestClient, container: Container, factory: Factory
) -> None:
    tenant = returns_tenant(container, factory)
    refund_id = _refund_awaiting_return(client, factory, tenant.id, tenant.key)
    base = f"/v1/refunds/{refund_id}/return"
    receive = client.post(
        f"{base}/receive",
        headers=tenant.headers,
        json={"lines": [{"sku": "SKU-A", "quantity": 1, "condition": "used"}]},
    )
    assert_problem(receive, 403)
    viewer = bearer(factory.key(tenant.id, Role.CLIENT_VIEWER))
    ship = client.post(
        f"{base}/ship", headers=viewer, json={"carrier": "UPS", "tracking_number": "1Z"}
    )
    assert_problem(ship, 403)
    assert client.get(base, headers=viewer).status_code == 200


def test_another_tenants_return_is_404(
    client: TestClient, container: Container, factory: Factory
) -> None:
    ours = returns_tenant(container, factory, "Ours")
    theirs = returns_tenant(container, factory, "Theirs")
    refund_id = _refund_awaiting_return(client, factory, ours.id, ours.key)
    their_agent = bearer(factory.key(theirs.id, Role.AGENT))
    base = f"/v1/refunds/{refund_id}/return"
    assert_problem(client.get(base, headers=theirs.headers), 404)
    assert_problem(
        client.post(
            f"{base}/ship", headers=theirs.headers, json={"carrier": "X", "tracking_number": "T"}
        ),
        404,
    )
    assert_problem(
        client.post(
            f"{base}/receive",
            headers=their_agent,
            json={"lines": [{"sku": "SKU-A", "quantity": 1, "condition": "used"}]},
        ),
        404,
    )
    assert client.get(base, headers=ours.headers).json()["status"] == "authorized"


def test_a_refund_paid_at_once_has_no_return(
    client: TestClient, container: Container, factory: Factory
) -> None:
    tenant = factory.tenant()
    created = client.post(
        "/v1/refunds",
        headers=tenant.headers,
        json={"order_id": factory.order(tenant.id), "amount_minor": 100, "reason": "damaged"},
    )
    assert created.status_code == 201, created.text
    missing = client.get(f"/v1/refunds/{created.json()['id']}/return", headers=tenant.headers)
    assert assert_problem(missing, 404)["code"] == "return_not_found"

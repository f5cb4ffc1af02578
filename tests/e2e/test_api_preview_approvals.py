"""Preview (a dry run of intake) and approvals (role limits, four eyes, the queue) over HTTP."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from refunddesk.auth.domain import Role
from refunddesk.bootstrap import Container
from refunddesk.policy.document import example_text
from tests.e2e.support import assert_problem, bearer, row_counts
from tests.factories import Factory, TenantHandle

RECENT = {"purchased_at": "2026-11-10T10:00:00Z", "delivered_at": "2026-11-12T10:00:00Z"}


def sakura(factory: Factory) -> TenantHandle:
    """Sakura's policy: agents approve up to 30,000 JPY, supervisors 150,000, four eyes above
    100,000, auto-approve below 5,000."""
    tenant = factory.tenant("Sakura", currency="JPY", timezone="Asia/Tokyo")
    factory.policy(tenant.id, example_text("sakura"))
    return tenant


def yen_order(factory: Factory, tenant_id: str, price: int, *, delivered: bool = True) -> str:
    dates = RECENT if delivered else {**RECENT, "delivered_at": None}
    return factory.order(
        tenant_id,
        currency="JPY",
        lines=[
            {
                "sku": "CAM-1",
                "name": "Camera",
                "category": "electronics",
                "quantity": 1,
                "unit_price_minor": price,
            }
        ],
        shipping_minor=0,
        tax_minor=0,
        **dates,
    )


def not_received(order: str) -> dict[str, Any]:
    """Nothing to send back, no evidence needed: instant, then decided by the amount."""
    return {"order_id": order, "reason": "not_received", "lines": [{"sku": "CAM-1", "quantity": 1}]}


def create(client: TestClient, tenant: TenantHandle, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/v1/refunds", headers=tenant.headers, json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def approve(client: TestClient, key: str, refund_id: str) -> Any:
    return client.post(f"/v1/refunds/{refund_id}/approve", headers=bearer(key))


# --- preview --------------------------------------------------------------------------------


def test_a_preview_tells_the_decision_and_amount_and_changes_nothing(
    client: TestClient, container: Container, factory: Factory
) -> None:
    # given Sakura and a camera order
    tenant = sakura(factory)
    order = yen_order(factory, tenant.id, 40_000)
    before = row_counts(container)
    # when a change of mind is previewed
    response = client.post(
        "/v1/refunds/preview",
        headers=tenant.headers,
        json={
            "order_id": order,
            "reason": "changed_mind",
            "lines": [{"sku": "CAM-1", "quantity": 1, "condition": "unopened"}],
            "evidence": ["receipt"],
        },
    )
    # then it says what intake would do, and nothing was stored
    assert response.status_code == 200, response.text
    preview = response.json()
    assert (preview["decision"], preview["status"]) == ("awaiting_return", "awaiting_return")
    assert preview["amount_minor"] == 40_000 - 6_000 - 800
    assert preview["currency"] == "JPY"
    assert preview["return_required"] is True
    assert preview["return_by"] == "2026-11-30"  # 10 days from today in Tokyo
    assert preview["policy_version"] == 1
    assert preview["refund_method"] == "original"
    assert preview["approvals_required"] == 1
    assert preview["breakdown"]["restocking_fee_minor"] == 6_000
    assert "return_required" in [f["code"] for f in preview["findings"]]
    assert row_counts(container) == before


def test_a_preview_refuses_bad_input_as_create_does(
    client: TestClient, container: Container, factory: Factory
) -> None:
    tenant = sakura(factory)
    order = yen_order(factory, tenant.id, 40_000)
    before = row_counts(container)
    bodies: list[tuple[dict[str, Any], str]] = [
        ({"order_id": "NOPE", "reason": "damaged", "amount_minor": 1}, "order_id"),
        ({"order_id": order, "reason": "damaged", "amount_minor": 40_001}, "amount_minor"),
        (
            {"order_id": order, "reason": "damaged", "lines": [{"sku": "CAM-1", "quantity": 2}]},
            "lines[0].quantity",
        ),
        (
            {"order_id": order, "reason": "damaged", "amount_minor": 1, "currency": "EUR"},
            "currency",
        ),
    ]
    for body, field in bodies:
        for path in ("/v1/refunds/preview", "/v1/refunds"):
            response = client.post(path, headers=tenant.headers, json=body)
            assert_problem(response, 422, field=field)
    assert row_counts(container) == before


def test_a_preview_of_a_late_request_shows_the_rejection_it_would_get(
    client: TestClient, factory: Factory
) -> None:
    tenant = sakura(factory)
    order = factory.order(
        tenant.id,
        currency="JPY",
        lines=[{"sku": "X", "name": "X", "quantity": 1, "unit_price_minor": 1000}],
        shipping_minor=0,
        tax_minor=0,
        purchased_at="2026-09-01T00:00:00Z",
        delivered_at=None,
    )
    body = {"order_id": order, "reason": "other", "amount_minor": 1000, "evidence": ["receipt"]}
    preview = client.post("/v1/refunds/preview", headers=tenant.headers, json=body).json()
    assert preview["decision"] == "rejected"
    assert [f["code"] for f in preview["findings"]] == ["outside_return_window"]
    # and creating it stores exactly that: a rejected refund with its reasons, 201
    made = create(client, tenant, body)
    assert made["status"] == "rejected"
    assert made["findings"] == preview["findings"]


# --- approvals ------------------------------------------------------------------------------


def test_an_agent_may_not_approve_above_the_role_limit_but_a_supervisor_may(
    client: TestClient, factory: Factory
) -> None:
    # given a 40,000 JPY refund in review (agents may approve up to 30,000)
    tenant = sakura(factory)
    made = create(client, tenant, not_received(yen_order(factory, tenant.id, 40_000)))
    assert (made["status"], made["approvals_required"]) == ("pending_review", 1)
    agent = factory.key(tenant.id, Role.AGENT)
    supervisor = factory.key(tenant.id, Role.SUPERVISOR)
    # when the agent approves, then it is a 403 naming the limit, and nothing changed
    body = assert_problem(approve(client, agent, made["id"]), 403)
    assert body["code"] == "approval_limit_exceeded"
    assert body["detail"] == (
        "role agent may approve up to 30000 JPY under policy version 1; this refund is 40000 JPY"
    )
    refund = client.get(f"/v1/refunds/{made['id']}", headers=tenant.headers).json()
    assert (refund["status"], refund["approvals"]) == ("pending_review", [])
    # when the supervisor approves, then it is approved, with who approved it
    response = approve(client, supervisor, made["id"])
    assert response.status_code == 200, response.text
    approved = response.json()
    assert approved["status"] == "approved"
    assert [a["role"] for a in approved["approvals"]] == ["supervisor"]


def test_an_admin_approves_whatever_the_tenants_limits(
    client: TestClient, factory: Factory
) -> None:
    tenant = sakura(factory)
    made = create(client, tenant, not_received(yen_order(factory, tenant.id, 40_000)))
    admin = factory.key(None, Role.ADMIN)
    response = client.post(f"/v1/refunds/{made['id']}/approve", headers=bearer(admin, tenant.id))
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "approved"


def test_four_eyes_needs_two_different_approvers_and_then_the_worker_pays(
    client: TestClient, container: Container, factory: Factory
) -> None:
    # given a 200,000 JPY refund: above 100,000 it needs two different approvers
    tenant = sakura(factory)
    made = create(client, tenant, not_received(yen_order(factory, tenant.id, 200_000)))
    assert (made["status"], made["approvals_required"]) == ("pending_review", 2)
    first, second = factory.key(tenant.id, Role.FINANCE), factory.key(tenant.id, Role.FINANCE)
    # when the first approves, it stays in review with one approval
    once = approve(client, first, made["id"]).json()
    assert once["status"] == "pending_review"
    assert len(once["approvals"]) == 1
    # when the same person approves again, it is a 409 and still one approval
    body = assert_problem(approve(client, first, made["id"]), 409)
    assert body["code"] == "same_approver"
    again = client.get(f"/v1/refunds/{made['id']}", headers=tenant.headers).json()
    assert (again["status"], len(again["approvals"])) == ("pending_review", 1)
    # when a different person approves, it is approved
    twice = approve(client, second, made["id"]).json()
    assert twice["status"] == "approved"
    assert len({a["actor"] for a in twice["approvals"]}) == 2
    # and the worker pays it
    container.worker().drain()
    paid = client.get(f"/v1/refunds/{made['id']}", headers=tenant.headers).json()
    assert paid["status"] == "succeeded"
    events = client.get(f"/v1/refunds/{made['id']}/events", headers=tenant.headers).json()
    assert [e["type"] for e in events].count("refund.approval_recorded") == 2


def test_the_approval_queue_lists_refunds_in_review_oldest_first_page_by_page(
    client: TestClient, container: Container, factory: Factory
) -> None:
    # given three refunds in review and one approved at once
    tenant = sakura(factory)
    waiting = [
        create(client, tenant, not_received(yen_order(factory, tenant.id, price)))["id"]
        for price in (40_000, 200_000, 60_000)
    ]
    # (on an order the carrier never confirmed delivered: "not received" against a delivery
    # scan would go to fraud review)
    create(client, tenant, not_received(yen_order(factory, tenant.id, 1_000, delivered=False)))
    finance = factory.key(tenant.id, Role.FINANCE)
    approve(client, finance, waiting[1])  # the four-eyes one: one of two approvals
    # when the queue is read two at a time
    pages: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get("/v1/approvals", headers=tenant.headers, params=params).json()
        pages.append(page)
        cursor = page["next_cursor"]
        if cursor is None:
            break
    # then every refund in review appears once, oldest first, with what it still needs
    items = [item for page in pages for item in page["items"]]
    assert [len(p["items"]) for p in pages] == [2, 1]
    assert [i["id"] for i in items] == waiting
    assert [i["approvals_required"] for i in items] == [1, 2, 1]
    assert [len(i["approvals"]) for i in items] == [0, 1, 0]
    assert all(i["findings"] for i in items)
    assert [i["amount_minor"] for i in items] == [40_000, 200_000, 60_000]
    # and a client viewer may read it too; another retailer sees none of it
    viewer = factory.key(tenant.id, Role.CLIENT_VIEWER)
    assert len(client.get("/v1/approvals", headers=bearer(viewer)).json()["items"]) == 3
    other = factory.tenant("Other")
    assert client.get("/v1/approvals", headers=other.headers).json()["items"] == []

"""Authentication and the role matrix over HTTP."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from refunddesk.auth.domain import Role
from tests.e2e.support import assert_problem, bearer
from tests.factories import Factory, TenantHandle, order_payload

OLD = {"purchased_at": "2026-08-01T10:00:00Z", "delivered_at": "2026-08-03T10:00:00Z"}


def test_a_request_without_a_key_is_a_401_asking_for_a_bearer_token(
    client: TestClient, factory: Factory
) -> None:
    factory.tenant()
    response = client.get("/v1/refunds")
    body = assert_problem(response, 401)
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert "Bearer" in body["detail"]


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer rd_not-a-real-key",
        "Bearer ",
        "Basic dXNlcjpwYXNz",
        "rd_no-scheme",
        "Bearer " + "x" * 500,
    ],
)
def test_an_unknown_or_malformed_key_is_a_401(
    client: TestClient, factory: Factory, authorization: str
) -> None:
    factory.tenant()
    response = client.get("/v1/refunds", headers={"Authorization": authorization})
    assert_problem(response, 401)
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_a_tenant_key_ignores_an_x_tenant_id_naming_another_retailer(
    client: TestClient, factory: Factory
) -> None:
    # given two retailers, each with an order
    mine, theirs = factory.tenant("A"), factory.tenant("B")
    my_order, their_order = factory.order(mine.id), factory.order(theirs.id)
    # when A's key names B in X-Tenant-Id
    headers = {**mine.headers, "X-Tenant-Id": theirs.id}
    # then the key still acts for A only
    assert client.get(f"/v1/orders/{my_order}", headers=headers).status_code == 200
    assert_problem(client.get(f"/v1/orders/{their_order}", headers=headers), 404)


def test_an_admin_key_without_x_tenant_id_is_told_to_send_it(
    client: TestClient, factory: Factory
) -> None:
    factory.tenant()
    admin = bearer(factory.key(None, Role.ADMIN))
    for response in (
        client.get("/v1/refunds", headers=admin),
        client.post("/v1/orders", headers=admin, json=order_payload()),
        client.get("/v1/orders/ORD-1", headers=admin),
    ):
        body = assert_problem(response, 403, field="X-Tenant-Id")
        assert "X-Tenant-Id" in body["detail"]


def test_an_admin_key_naming_an_unknown_tenant_is_a_404(
    client: TestClient, factory: Factory
) -> None:
    factory.tenant()
    admin = factory.key(None, Role.ADMIN)
    response = client.get("/v1/refunds", headers=bearer(admin, "01JZZZZZZZZZZZZZZZZZZZZZZZ"))
    assert_problem(response, 404, field="X-Tenant-Id")


def test_an_admin_acting_for_a_tenant_sees_that_tenants_data(
    client: TestClient, factory: Factory
) -> None:
    tenant = factory.tenant()
    order = factory.order(tenant.id)
    admin = bearer(factory.key(None, Role.ADMIN), tenant.id)
    assert client.get(f"/v1/orders/{order}", headers=admin).status_code == 200
    response = client.post(
        "/v1/refunds",
        headers=admin,
        json={"order_id": order, "amount_minor": 100, "reason": "other"},
    )
    assert response.status_code == 201, response.text


# --- the role matrix ----------------------------------------------------------------------

Action = Callable[[TestClient, dict[str, str]], httpx.Response]


class Desk:
    """A retailer with orders and refunds to act on, created with its integration key."""

    def __init__(self, client: TestClient, factory: Factory) -> None:
        self.client = client
        self.factory = factory
        self.tenant: TenantHandle = factory.tenant()

    def refund(self, *, review: bool) -> str:
        order = self.factory.order(self.tenant.id, **(OLD if review else {}))
        response = self.client.post(
            "/v1/refunds",
            headers=self.tenant.headers,
            json={"order_id": order, "amount_minor": 100, "reason": "damaged"},
        )
        assert response.status_code == 201, response.text
        refund_id: str = response.json()["id"]
        return refund_id


def _actions(desk: Desk) -> dict[str, tuple[Action, int]]:
    """Each action with the status it returns when allowed."""
    order = desk.factory.order(desk.tenant.id)

    def create_order(c: TestClient, h: dict[str, str]) -> httpx.Response:
        return c.post("/v1/orders", headers=h, json=order_payload())

    def create_refund(c: TestClient, h: dict[str, str]) -> httpx.Response:
        body = {"order_id": order, "amount_minor": 10, "reason": "damaged"}
        return c.post("/v1/refunds", headers=h, json=body)

    def approve(c: TestClient, h: dict[str, str]) -> httpx.Response:
        return c.post(f"/v1/refunds/{desk.refund(review=True)}/approve", headers=h)

    def reject(c: TestClient, h: dict[str, str]) -> httpx.Response:
        refund_id = desk.refund(review=True)
        return c.post(f"/v1/refunds/{refund_id}/reject", headers=h, json={"reason": "no"})

    def cancel(c: TestClient, h: dict[str, str]) -> httpx.Response:
        return c.post(f"/v1/refunds/{desk.refund(review=False)}/cancel", headers=h)

    def read(c: TestClient, h: dict[str, str]) -> httpx.Response:
        return c.get(f"/v1/orders/{order}", headers=h)

    def list_refunds(c: TestClient, h: dict[str, str]) -> httpx.Response:
        return c.get("/v1/refunds", headers=h)

    def list_jobs(c: TestClient, h: dict[str, str]) -> httpx.Response:
        return c.get("/v1/jobs", headers=h)

    return {
        "create order": (create_order, 201),
        "create refund": (create_refund, 201),
        "approve": (approve, 200),
        "reject": (reject, 200),
        "cancel": (cancel, 200),
        "read order": (read, 200),
        "list refunds": (list_refunds, 200),
        "list jobs": (list_jobs, 200),
    }


ALLOWED: dict[Role, set[str]] = {
    Role.AGENT: {"create refund", "approve", "reject", "cancel", "read order", "list refunds"},
    Role.SUPERVISOR: {"create refund", "approve", "reject", "cancel", "read order", "list refunds"},
    Role.FINANCE: {"approve", "reject", "read order", "list refunds"},
    Role.CLIENT_VIEWER: {"read order", "list refunds"},
    Role.INTEGRATION: {"create order", "create refund", "cancel", "read order", "list refunds"},
    Role.ADMIN: {
        "create order",
        "create refund",
        "approve",
        "reject",
        "cancel",
        "read order",
        "list refunds",
        "list jobs",
    },
}


@pytest.mark.parametrize("role", list(Role), ids=str)
def test_each_role_may_do_what_it_is_allowed_and_gets_403_for_the_rest(
    client: TestClient, factory: Factory, role: Role
) -> None:
    # given a retailer and a key of this role (an admin acts for the retailer)
    desk = Desk(client, factory)
    if role is Role.ADMIN:
        headers = bearer(factory.key(None, role), desk.tenant.id)
    else:
        headers = bearer(factory.key(desk.tenant.id, role))
    outcomes: dict[str, Any] = {}
    # when it tries every action
    for name, (action, success) in _actions(desk).items():
        response = action(client, headers)
        if name in ALLOWED[role]:
            outcomes[name] = response.status_code == success or response.text
        else:
            # then what it may not do is refused as forbidden, as a problem
            body = assert_problem(response, 403)
            outcomes[name] = str(role) in body["detail"] or body["detail"]
    # and what it may do succeeds
    assert outcomes == dict.fromkeys(outcomes, True)


def test_a_refused_action_changes_nothing(client: TestClient, factory: Factory) -> None:
    # given a refund under review and a read-only key
    desk = Desk(client, factory)
    refund_id = desk.refund(review=True)
    viewer = bearer(factory.key(desk.tenant.id, Role.CLIENT_VIEWER))
    # when the viewer tries to approve and cancel it
    assert_problem(client.post(f"/v1/refunds/{refund_id}/approve", headers=viewer), 403)
    assert_problem(client.post(f"/v1/refunds/{refund_id}/cancel", headers=viewer), 403)
    # then it is still under review, with no events beyond its intake
    refund = client.get(f"/v1/refunds/{refund_id}", headers=viewer).json()
    assert refund["status"] == "pending_review"
    events = client.get(f"/v1/refunds/{refund_id}/events", headers=viewer).json()
    assert [e["to_status"] for e in events] == ["requested", "pending_review"]


def test_only_finance_supervisors_and_admins_may_retry_payouts(
    client: TestClient, factory: Factory
) -> None:
    desk = Desk(client, factory)
    refund_id = desk.refund(review=False)
    for role in (Role.AGENT, Role.CLIENT_VIEWER, Role.INTEGRATION):
        headers = bearer(factory.key(desk.tenant.id, role))
        assert_problem(client.post(f"/v1/refunds/{refund_id}/retry", headers=headers), 403)
    for role in (Role.FINANCE, Role.SUPERVISOR):
        headers = bearer(factory.key(desk.tenant.id, role))
        # allowed, but the refund has not failed: a conflict, not a refusal
        assert_problem(client.post(f"/v1/refunds/{refund_id}/retry", headers=headers), 409)


def test_an_admin_lists_jobs_without_naming_a_tenant(client: TestClient, factory: Factory) -> None:
    desk = Desk(client, factory)
    refund_id = desk.refund(review=False)
    admin = bearer(factory.key(None, Role.ADMIN))
    response = client.get("/v1/jobs", headers=admin)
    assert response.status_code == 200, response.text
    jobs = response.json()
    assert [(j["kind"], j["status"], j["payload"]) for j in jobs] == [
        ("payout", "queued", {"refund_id": refund_id})
    ]

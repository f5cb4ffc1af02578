"""The customer's signed link to choose how a failed refund is paid instead."""

from __future__ import annotations

from urllib.parse import urlparse

from fastapi.testclient import TestClient

from refunddesk.auth.domain import Role
from refunddesk.bootstrap import Container
from refunddesk.payouts.gateways.sandbox import SandboxGateway
from tests.e2e.support import assert_problem, bearer, row_counts
from tests.e2e.test_web import csrf
from tests.factories import Factory, TenantHandle
from tests.integration.support import payouts


def _failed_refund(
    client: TestClient, factory: Factory, container: Container, sandbox: SandboxGateway
) -> tuple[TenantHandle, str]:
    tenant = factory.tenant(name="Northwind")
    sandbox.failure_rate = 1.0
    order = factory.order(tenant.id)
    made = client.post(
        "/v1/refunds",
        headers=tenant.headers,
        json={"order_id": order, "reason": "damaged", "amount_minor": 700},
    ).json()
    container.worker().drain()
    sandbox.failure_rate = 0.0
    return tenant, made["id"]


def _link(client: TestClient, factory: Factory, tenant: TenantHandle, refund_id: str) -> str:
    finance = factory.key(tenant.id, Role.FINANCE)
    response = client.post(f"/v1/refunds/{refund_id}/payout-choice-link", headers=bearer(finance))
    assert response.status_code == 200, response.text
    return urlparse(response.json()["url"]).path


def test_a_customer_takes_store_credit_through_the_link_and_it_is_paid(
    client: TestClient, factory: Factory, container: Container, sandbox: SandboxGateway
) -> None:
    # given a refund whose card payout failed, and the link finance sent the customer
    tenant, refund_id = _failed_refund(client, factory, container, sandbox)
    path = _link(client, factory, tenant, refund_id)
    page = client.get(path)
    assert page.status_code == 200
    assert "Northwind" in page.text
    assert "Take it as store credit" in page.text
    # when the customer picks store credit
    done = client.post(path, data={"csrf_token": csrf(client, path), "method": "store_credit"})
    # then the page confirms, and the worker pays it from the store credit ledger
    assert done.status_code == 200
    assert 'data-choice="done"' in done.text
    container.worker().drain()
    attempts = payouts(container, tenant.id, refund_id)
    assert [(p.gateway, p.status) for p in attempts] == [
        ("sandbox", "failed"),
        ("store_credit", "succeeded"),
    ]
    # and the link cannot be used a second time
    again = client.get(path)
    assert 'data-choice="closed"' in again.text
    assert "Take it as store credit" not in again.text


def test_the_link_refuses_the_failed_method_a_bad_iban_and_a_forged_token(
    client: TestClient, factory: Factory, container: Container, sandbox: SandboxGateway
) -> None:
    tenant, refund_id = _failed_refund(client, factory, container, sandbox)
    path = _link(client, factory, tenant, refund_id)
    token = csrf(client, path)
    before = row_counts(container)
    same = client.post(path, data={"csrf_token": token, "method": "original"})
    assert "Choose store credit or a bank transfer." in same.text
    bad = client.post(
        path,
        data={
            "csrf_token": token,
            "method": "bank_transfer",
            "iban": "DE89370400440532013001",
            "holder": "Ada",
        },
    )
    assert "IBAN" in bad.text
    assert 'role="alert"' in bad.text
    forged = path[:-3] + ("aaa" if not path.endswith("aaa") else "bbb")
    assert client.get(forged).status_code == 404
    assert client.post(forged, data={"csrf_token": token, "method": "store_credit"}).status_code
    assert client.get("/refund-choice/" + "x" * 2000).status_code == 404
    assert row_counts(container) == before


def test_only_a_failed_refund_gets_a_link(
    client: TestClient, factory: Factory, container: Container
) -> None:
    tenant = factory.tenant()
    order = factory.order(tenant.id)
    made = client.post(
        "/v1/refunds",
        headers=tenant.headers,
        json={"order_id": order, "reason": "damaged", "amount_minor": 700},
    ).json()
    finance = factory.key(tenant.id, Role.FINANCE)
    response = client.post(f"/v1/refunds/{made['id']}/payout-choice-link", headers=bearer(finance))
    assert_problem(response, 409)
    assert_problem(
        client.post(f"/v1/refunds/{made['id']}/payout-choice-link", headers=tenant.headers), 403
    )

"""The fixtures themselves: a refund flows to succeeded on each backend."""

from fastapi.testclient import TestClient

from refunddesk.bootstrap import Container
from refunddesk.payouts.gateways.sandbox import SandboxGateway
from tests.factories import Factory


def test_an_approved_refund_is_paid_once_by_the_worker(
    client: TestClient, container: Container, factory: Factory, sandbox: SandboxGateway
) -> None:
    tenant = factory.tenant()
    order = factory.order(tenant.id)
    response = client.post(
        "/v1/refunds",
        headers=tenant.headers,
        json={"order_id": order, "amount_minor": 700, "reason": "damaged"},
    )
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "approved"
    assert container.worker().drain() == 1
    refund = client.get(f"/v1/refunds/{response.json()['id']}", headers=tenant.headers).json()
    assert refund["status"] == "succeeded"
    assert sandbox.paid_refund_ids() == [refund["id"]]

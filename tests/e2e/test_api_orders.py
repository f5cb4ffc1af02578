"""Orders over HTTP: create one, create a batch, read one back."""

from __future__ import annotations

from fastapi.testclient import TestClient

from refunddesk.auth.domain import Role
from tests.e2e.support import assert_problem, bearer
from tests.factories import ORDER_TOTAL, Factory, order_payload


def test_creating_an_order_returns_201_with_its_totals(
    client: TestClient, factory: Factory
) -> None:
    # given a retailer
    tenant = factory.tenant()
    body = order_payload()
    # when its integration posts an order
    response = client.post("/v1/orders", headers=tenant.headers, json=body)
    # then it is stored with its totals and all of it refundable
    assert response.status_code == 201, response.text
    order = response.json()
    assert order["external_id"] == body["external_id"]
    assert order["currency"] == "EUR"
    assert order["total_minor"] == ORDER_TOTAL
    assert order["refunded_minor"] == 0
    assert order["refundable_minor"] == ORDER_TOTAL
    assert [line["sku"] for line in order["lines"]] == ["SKU-A", "SKU-B"]
    assert order["customer"]["email"] == body["customer"]["email"]


def test_posting_an_external_id_twice_is_a_409_naming_the_field(
    client: TestClient, factory: Factory
) -> None:
    tenant = factory.tenant()
    body = order_payload()
    assert client.post("/v1/orders", headers=tenant.headers, json=body).status_code == 201
    response = client.post("/v1/orders", headers=tenant.headers, json=body)
    assert_problem(response, 409, field="external_id")


def test_two_retailers_may_use_the_same_external_id(client: TestClient, factory: Factory) -> None:
    first, second = factory.tenant("A"), factory.tenant("B")
    body = order_payload()
    assert client.post("/v1/orders", headers=first.headers, json=body).status_code == 201
    assert client.post("/v1/orders", headers=second.headers, json=body).status_code == 201


def test_a_batch_of_1000_orders_is_stored_and_resending_it_reports_exists(
    client: TestClient, factory: Factory
) -> None:
    # given a batch of the largest allowed size
    tenant = factory.tenant()
    orders = [order_payload(external_id=f"B-{n}") for n in range(1000)]
    # when it is posted
    response = client.post("/v1/orders/batch", headers=tenant.headers, json={"orders": orders})
    # then every order is created
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["created"] == 1000
    assert result["existing"] == 0
    assert {r["result"] for r in result["results"]} == {"created"}
    # and when it is posted again, every order is reported as already there, with its id
    again = client.post("/v1/orders/batch", headers=tenant.headers, json={"orders": orders})
    assert again.status_code == 200, again.text
    replay = again.json()
    assert replay["created"] == 0
    assert replay["existing"] == 1000
    assert {r["result"] for r in replay["results"]} == {"exists"}
    assert [r["id"] for r in replay["results"]] == [r["id"] for r in result["results"]]


def test_a_batch_mixing_new_and_stored_orders_creates_only_the_new(
    client: TestClient, factory: Factory
) -> None:
    tenant = factory.tenant()
    stored = factory.order(tenant.id)
    orders = [order_payload(external_id=stored), order_payload(external_id="NEW-1")]
    response = client.post("/v1/orders/batch", headers=tenant.headers, json={"orders": orders})
    assert response.status_code == 200, response.text
    assert [r["result"] for r in response.json()["results"]] == ["exists", "created"]
    assert client.get("/v1/orders/NEW-1", headers=tenant.headers).status_code == 200


def test_a_batch_of_1001_orders_is_refused_with_422(client: TestClient, factory: Factory) -> None:
    tenant = factory.tenant()
    orders = [order_payload(external_id=f"B-{n}") for n in range(1001)]
    response = client.post("/v1/orders/batch", headers=tenant.headers, json={"orders": orders})
    assert_problem(response, 422, field="orders")
    assert client.get("/v1/orders/B-0", headers=tenant.headers).status_code == 404


def test_an_external_id_twice_inside_one_batch_is_a_409_and_stores_nothing(
    client: TestClient, factory: Factory
) -> None:
    tenant = factory.tenant()
    orders = [order_payload(external_id="D-1"), order_payload(external_id="D-2")]
    orders.append(order_payload(external_id="D-1"))
    response = client.post("/v1/orders/batch", headers=tenant.headers, json={"orders": orders})
    assert_problem(response, 409, field="orders[2].external_id")
    assert client.get("/v1/orders/D-2", headers=tenant.headers).status_code == 404


def test_an_empty_batch_is_refused(client: TestClient, factory: Factory) -> None:
    tenant = factory.tenant()
    response = client.post("/v1/orders/batch", headers=tenant.headers, json={"orders": []})
    assert_problem(response, 422, field="orders")


def test_reading_an_order_shows_refundable_shrinking_after_a_refund(
    client: TestClient, factory: Factory
) -> None:
    # given an order
    tenant = factory.tenant()
    external_id = factory.order(tenant.id)
    before = client.get(f"/v1/orders/{external_id}", headers=tenant.headers)
    assert before.status_code == 200, before.text
    assert before.json()["refundable_minor"] == ORDER_TOTAL
    # when part of it is refunded
    refund = client.post(
        "/v1/refunds",
        headers=tenant.headers,
        json={"order_id": external_id, "amount_minor": 1200, "reason": "damaged"},
    )
    assert refund.status_code == 201, refund.text
    # then the order shows less left to refund
    after = client.get(f"/v1/orders/{external_id}", headers=tenant.headers).json()
    assert after["refunded_minor"] == 1200
    assert after["refundable_minor"] == ORDER_TOTAL - 1200


def test_an_unknown_order_is_a_404_problem(client: TestClient, factory: Factory) -> None:
    tenant = factory.tenant()
    assert_problem(client.get("/v1/orders/NOPE", headers=tenant.headers), 404)


def test_another_retailers_order_is_not_found_rather_than_forbidden(
    client: TestClient, factory: Factory
) -> None:
    # given an order of retailer A
    owner, other = factory.tenant("A"), factory.tenant("B")
    external_id = factory.order(owner.id)
    # when retailer B, or an admin acting as B, asks for it
    as_other = client.get(f"/v1/orders/{external_id}", headers=other.headers)
    admin = factory.key(None, Role.ADMIN)
    as_admin_for_other = client.get(f"/v1/orders/{external_id}", headers=bearer(admin, other.id))
    # then it does not exist for them
    assert_problem(as_other, 404)
    assert_problem(as_admin_for_other, 404)
    # while an admin acting as A sees it
    as_admin_for_owner = client.get(f"/v1/orders/{external_id}", headers=bearer(admin, owner.id))
    assert as_admin_for_owner.status_code == 200

"""Refunds over HTTP: create, read, list, decide, cancel, retry, and the worker paying them."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient

from refunddesk.auth.domain import Role
from refunddesk.bootstrap import Container
from refunddesk.core.clock import FrozenClock
from refunddesk.payouts.gateways.sandbox import SandboxGateway
from tests.conftest import NOW
from tests.e2e.support import assert_problem, bearer, row_counts
from tests.factories import ORDER_TOTAL, Factory, TenantHandle

REFERENCE = re.compile(r"^RF-[0-9A-Z]{8}$")
# Delivered long before the frozen clock's now: outside the 30-day window, so it needs review.
OLD = {"purchased_at": "2026-08-01T10:00:00Z", "delivered_at": "2026-08-03T10:00:00Z"}


def post_refund(
    client: TestClient,
    tenant: TenantHandle,
    order_id: str,
    *,
    headers: dict[str, str] | None = None,
    **body: Any,
) -> Any:
    payload: dict[str, Any] = {"order_id": order_id, "reason": "damaged"}
    if "lines" not in body:
        payload["amount_minor"] = 500
    payload.update(body)
    return client.post("/v1/refunds", headers={**tenant.headers, **(headers or {})}, json=payload)


def created(response: Any) -> dict[str, Any]:
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


# --- create -------------------------------------------------------------------------------


def test_creating_a_refund_returns_201_with_its_public_fields(
    client: TestClient, factory: Factory
) -> None:
    # given an order delivered within the return window
    tenant = factory.tenant()
    order = factory.order(tenant.id)
    # when a refund of part of it is requested
    refund = created(post_refund(client, tenant, order, amount_minor=700))
    # then it is approved at once and carries every public field
    assert REFERENCE.match(refund["reference"]), refund["reference"]
    assert refund["status"] == "approved"
    assert refund["amount_minor"] == 700
    assert refund["currency"] == "EUR"
    assert refund["order_id"] == order
    assert refund["reason"] == "damaged"
    assert refund["id"]
    assert refund["created_at"].startswith("2026-11-20T12:00:00")
    assert refund["updated_at"].startswith("2026-11-20T12:00:00")
    # decided by the built-in default policy (version 0)
    assert refund["decision_reasons"] == [
        "within_return_window: delivered 2026-11-12, window 30 days ends 2026-12-12"
    ]
    assert refund["policy_version"] == 0
    assert refund["findings"] == [
        {
            "code": "within_return_window",
            "severity": "info",
            "message": "delivered 2026-11-12, window 30 days ends 2026-12-12",
        }
    ]
    assert (refund["approvals_required"], refund["approvals"]) == (0, [])


def test_a_refund_by_lines_is_priced_from_the_order(client: TestClient, factory: Factory) -> None:
    tenant = factory.tenant()
    order = factory.order(tenant.id)
    refund = created(post_refund(client, tenant, order, lines=[{"sku": "SKU-A", "quantity": 2}]))
    assert refund["amount_minor"] == 2000
    assert refund["lines"] == [
        {
            "sku": "SKU-A",
            "quantity": 2,
            "reason": "damaged",
            "condition": None,
            "amount_minor": 2000,
        }
    ]


def test_a_refund_on_a_yen_order_is_in_whole_yen(client: TestClient, factory: Factory) -> None:
    # given an order in a currency without minor units
    tenant = factory.tenant("Sakura", currency="JPY", timezone="Asia/Tokyo")
    order = factory.order(tenant.id, currency="JPY")
    # when one line is refunded, naming the currency
    refund = created(
        post_refund(client, tenant, order, currency="JPY", lines=[{"sku": "SKU-B", "quantity": 1}])
    )
    # then the amount is the line's price in yen
    assert refund["currency"] == "JPY"
    assert refund["amount_minor"] == 500
    assert refund["status"] == "approved"


def test_replaying_an_idempotency_key_returns_the_same_refund_with_200(
    client: TestClient, container: Container, factory: Factory
) -> None:
    tenant = factory.tenant()
    order = factory.order(tenant.id)
    key = {"Idempotency-Key": "req-1"}
    first = created(post_refund(client, tenant, order, headers=key))
    counts = row_counts(container)
    replay = post_refund(client, tenant, order, headers=key)
    assert replay.status_code == 200, replay.text
    assert replay.json()["id"] == first["id"]
    assert replay.json()["reference"] == first["reference"]
    assert row_counts(container) == counts


def test_reusing_an_idempotency_key_for_another_body_is_a_409(
    client: TestClient, container: Container, factory: Factory
) -> None:
    tenant = factory.tenant()
    order = factory.order(tenant.id)
    key = {"Idempotency-Key": "req-1"}
    created(post_refund(client, tenant, order, headers=key))
    counts = row_counts(container)
    response = post_refund(client, tenant, order, headers=key, amount_minor=501)
    body = assert_problem(response, 409, field="Idempotency-Key")
    assert body["code"] == "idempotency_key_reused"
    assert row_counts(container) == counts


def test_a_refund_needs_lines_or_an_amount_but_not_both(
    client: TestClient, factory: Factory
) -> None:
    tenant = factory.tenant()
    order = factory.order(tenant.id)
    both = post_refund(
        client, tenant, order, amount_minor=100, lines=[{"sku": "SKU-A", "quantity": 1}]
    )
    neither = client.post(
        "/v1/refunds", headers=tenant.headers, json={"order_id": order, "reason": "damaged"}
    )
    assert_problem(both, 422)
    assert_problem(neither, 422)


def test_an_unknown_reason_is_a_422_naming_the_field(client: TestClient, factory: Factory) -> None:
    tenant = factory.tenant()
    order = factory.order(tenant.id)
    assert_problem(post_refund(client, tenant, order, reason="felt_like_it"), 422, field="reason")


def test_a_currency_other_than_the_orders_is_a_422(client: TestClient, factory: Factory) -> None:
    tenant = factory.tenant()
    order = factory.order(tenant.id)
    body = assert_problem(post_refund(client, tenant, order, currency="USD"), 422, field="currency")
    assert body["code"] == "currency_mismatch"


def test_a_refund_on_an_unknown_order_is_a_422_naming_order_id(
    client: TestClient, factory: Factory
) -> None:
    tenant = factory.tenant()
    assert_problem(post_refund(client, tenant, "NO-SUCH-ORDER"), 422, field="order_id")


def test_refunding_more_than_is_left_is_refused(client: TestClient, factory: Factory) -> None:
    tenant = factory.tenant()
    order = factory.order(tenant.id)
    created(post_refund(client, tenant, order, amount_minor=ORDER_TOTAL - 10))
    response = post_refund(client, tenant, order, amount_minor=11)
    body = assert_problem(response, 422, field="amount_minor")
    assert body["remaining_minor"] == 10


# --- read and list ------------------------------------------------------------------------


def test_a_refund_reads_back_as_it_was_created(client: TestClient, factory: Factory) -> None:
    tenant = factory.tenant()
    order = factory.order(tenant.id)
    refund = created(post_refund(client, tenant, order))
    response = client.get(f"/v1/refunds/{refund['id']}", headers=tenant.headers)
    assert response.status_code == 200
    assert response.json() == refund


def test_an_unknown_refund_is_a_404_problem(client: TestClient, factory: Factory) -> None:
    tenant = factory.tenant()
    assert_problem(
        client.get("/v1/refunds/01JZZZZZZZZZZZZZZZZZZZZZZZ", headers=tenant.headers), 404
    )


def test_listing_walks_every_page_once_newest_first(client: TestClient, factory: Factory) -> None:
    # given 25 refunds
    tenant = factory.tenant()
    order = factory.order(tenant.id)
    made = [created(post_refund(client, tenant, order, amount_minor=100))["id"] for _ in range(25)]
    # when the list is walked 7 at a time
    seen: list[str] = []
    sizes: list[int] = []
    cursor: str | None = None
    for _ in range(10):
        params: dict[str, Any] = {"limit": 7}
        if cursor:
            params["cursor"] = cursor
        page = client.get("/v1/refunds", headers=tenant.headers, params=params)
        assert page.status_code == 200, page.text
        sizes.append(len(page.json()["items"]))
        seen += [item["id"] for item in page.json()["items"]]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    # then each refund comes exactly once, newest first, and the last page says so
    assert sizes == [7, 7, 7, 4]
    assert len(seen) == len(set(seen)) == 25
    assert set(seen) == set(made)
    assert seen == sorted(made, reverse=True)


def test_listing_filters_by_status_order_and_creation_time(
    client: TestClient, factory: Factory, clock: FrozenClock
) -> None:
    # given an approved refund and one under review on two orders, then a later one
    tenant = factory.tenant()
    fresh = factory.order(tenant.id)
    old = factory.order(tenant.id, **OLD)
    approved = created(post_refund(client, tenant, fresh))
    review = created(post_refund(client, tenant, old))
    assert review["status"] == "pending_review"
    clock.advance(timedelta(hours=1))
    later = created(post_refund(client, tenant, fresh))

    def ids(**params: Any) -> list[str]:
        response = client.get("/v1/refunds", headers=tenant.headers, params=params)
        assert response.status_code == 200, response.text
        return [item["id"] for item in response.json()["items"]]

    # then each filter narrows the list
    assert ids(status="pending_review") == [review["id"]]
    assert ids(status="approved") == [later["id"], approved["id"]]
    assert ids(order_id=old) == [review["id"]]
    assert ids(order_id="NO-SUCH-ORDER") == []
    after = (NOW + timedelta(minutes=30)).isoformat()
    assert ids(created_after=after) == [later["id"]]
    assert ids(status="approved", order_id=fresh, created_after=after) == [later["id"]]


def test_a_cursor_this_api_did_not_give_out_is_a_400(client: TestClient, factory: Factory) -> None:
    tenant = factory.tenant()
    for cursor in ("not-a-cursor", "eyJhZnRlciI6IDF9", "%%%"):
        response = client.get("/v1/refunds", headers=tenant.headers, params={"cursor": cursor})
        assert_problem(response, 400, field="cursor")


def test_a_page_size_outside_1_to_200_is_a_422(client: TestClient, factory: Factory) -> None:
    tenant = factory.tenant()
    for limit in (0, 201, -1):
        response = client.get("/v1/refunds", headers=tenant.headers, params={"limit": limit})
        assert_problem(response, 422, field="limit")
    assert client.get("/v1/refunds?limit=200", headers=tenant.headers).status_code == 200


# --- lifecycle ----------------------------------------------------------------------------


def test_the_worker_pays_an_approved_refund(
    client: TestClient, container: Container, factory: Factory, sandbox: SandboxGateway
) -> None:
    tenant = factory.tenant()
    order = factory.order(tenant.id)
    refund = created(post_refund(client, tenant, order))
    container.worker().drain()
    after = client.get(f"/v1/refunds/{refund['id']}", headers=tenant.headers).json()
    assert after["status"] == "succeeded"
    assert sandbox.paid_refund_ids() == [refund["id"]]


def test_events_tell_the_refunds_story_in_order_with_actors(
    client: TestClient, container: Container, factory: Factory
) -> None:
    # given a refund under review, approved by a supervisor and paid by the worker
    tenant = factory.tenant()
    order = factory.order(tenant.id, **OLD)
    supervisor = bearer(factory.key(tenant.id, Role.SUPERVISOR))
    refund = created(post_refund(client, tenant, order))
    approved = client.post(
        f"/v1/refunds/{refund['id']}/approve", headers=supervisor, json={"note": "photos ok"}
    )
    assert approved.status_code == 200, approved.text
    container.worker().drain()
    # when its events are read
    response = client.get(f"/v1/refunds/{refund['id']}/events", headers=tenant.headers)
    assert response.status_code == 200
    events = response.json()
    # then they run oldest first and say who did what
    assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)
    statuses = [e["to_status"] for e in events if e["type"] == "refund.status_changed"]
    assert statuses == ["pending_review", "approved", "processing", "succeeded"]
    assert events[0]["type"] == "refund.requested"
    assert events[0]["actor"].startswith("integration:")
    approval = next(e for e in events if e["to_status"] == "approved")
    assert approval["actor"].startswith("supervisor:")
    assert approval["from_status"] == "pending_review"
    assert approval["data"]["note"] == "photos ok"
    assert any(e["actor"].startswith("system") for e in events)


def test_a_supervisor_rejects_a_refund_under_review_with_a_reason(
    client: TestClient, factory: Factory
) -> None:
    tenant = factory.tenant()
    order = factory.order(tenant.id, **OLD)
    supervisor = bearer(factory.key(tenant.id, Role.SUPERVISOR))
    refund = created(post_refund(client, tenant, order))
    response = client.post(
        f"/v1/refunds/{refund['id']}/reject", headers=supervisor, json={"reason": "used item"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "rejected"
    # and a rejected refund frees the order's budget
    order_now = client.get(f"/v1/orders/{order}", headers=tenant.headers).json()
    assert order_now["refundable_minor"] == ORDER_TOTAL


def test_rejecting_needs_a_reason(client: TestClient, factory: Factory) -> None:
    tenant = factory.tenant()
    order = factory.order(tenant.id, **OLD)
    supervisor = bearer(factory.key(tenant.id, Role.SUPERVISOR))
    refund = created(post_refund(client, tenant, order))
    url = f"/v1/refunds/{refund['id']}/reject"
    assert_problem(client.post(url, headers=supervisor, json={}), 422, field="reason")
    assert_problem(client.post(url, headers=supervisor, json={"reason": ""}), 422, field="reason")
    assert_problem(client.post(url, headers=supervisor), 422)
    still = client.get(f"/v1/refunds/{refund['id']}", headers=tenant.headers).json()
    assert still["status"] == "pending_review"


def test_cancelling_an_approved_refund_stops_its_payout(
    client: TestClient, container: Container, factory: Factory, sandbox: SandboxGateway
) -> None:
    tenant = factory.tenant()
    order = factory.order(tenant.id)
    refund = created(post_refund(client, tenant, order))
    response = client.post(f"/v1/refunds/{refund['id']}/cancel", headers=tenant.headers)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "canceled"
    container.worker().drain()
    after = client.get(f"/v1/refunds/{refund['id']}", headers=tenant.headers).json()
    assert after["status"] == "canceled"
    assert sandbox.paid_refund_ids() == []


def test_cancelling_a_succeeded_refund_is_a_409_problem(
    client: TestClient, container: Container, factory: Factory
) -> None:
    # given a refund that has been paid
    tenant = factory.tenant()
    order = factory.order(tenant.id)
    refund = created(post_refund(client, tenant, order))
    container.worker().drain()
    counts = row_counts(container)
    # when it is canceled
    response = client.post(f"/v1/refunds/{refund['id']}/cancel", headers=tenant.headers)
    # then the move is refused as illegal, and nothing changes
    body = assert_problem(response, 409)
    assert body["code"] == "illegal_transition"
    assert body["current"] == "succeeded"
    assert body["target"] == "canceled"
    assert row_counts(container) == counts


def test_approving_an_already_approved_refund_is_a_409(
    client: TestClient, factory: Factory
) -> None:
    tenant = factory.tenant()
    order = factory.order(tenant.id)
    supervisor = bearer(factory.key(tenant.id, Role.SUPERVISOR))
    refund = created(post_refund(client, tenant, order))
    response = client.post(f"/v1/refunds/{refund['id']}/approve", headers=supervisor)
    assert assert_problem(response, 409)["code"] == "illegal_transition"


def test_rejecting_a_canceled_refund_is_a_409(client: TestClient, factory: Factory) -> None:
    tenant = factory.tenant()
    order = factory.order(tenant.id, **OLD)
    supervisor = bearer(factory.key(tenant.id, Role.SUPERVISOR))
    refund = created(post_refund(client, tenant, order))
    assert client.post(f"/v1/refunds/{refund['id']}/cancel", headers=supervisor).status_code == 200
    response = client.post(
        f"/v1/refunds/{refund['id']}/reject", headers=supervisor, json={"reason": "late"}
    )
    assert_problem(response, 409)


def test_a_failed_payout_is_retried_and_then_succeeds(
    client: TestClient, container: Container, factory: Factory, sandbox: SandboxGateway
) -> None:
    # given a refund whose payout the gateway declined
    tenant = factory.tenant()
    order = factory.order(tenant.id)
    finance = bearer(factory.key(tenant.id, Role.FINANCE))
    refund = created(post_refund(client, tenant, order))
    sandbox.failure_rate = 1
    container.worker().drain()
    failed = client.get(f"/v1/refunds/{refund['id']}", headers=tenant.headers).json()
    assert failed["status"] == "failed"
    # when the gateway recovers and finance retries
    sandbox.failure_rate = 0
    retried = client.post(f"/v1/refunds/{refund['id']}/retry", headers=finance)
    assert retried.status_code == 200, retried.text
    assert retried.json()["status"] == "processing"
    container.worker().drain()
    # then it is paid
    paid = client.get(f"/v1/refunds/{refund['id']}", headers=tenant.headers).json()
    assert paid["status"] == "succeeded"
    assert sandbox.paid_refund_ids() == [refund["id"]]


def test_retrying_a_refund_that_did_not_fail_is_a_409(client: TestClient, factory: Factory) -> None:
    tenant = factory.tenant()
    order = factory.order(tenant.id)
    finance = bearer(factory.key(tenant.id, Role.FINANCE))
    refund = created(post_refund(client, tenant, order))
    assert_problem(client.post(f"/v1/refunds/{refund['id']}/retry", headers=finance), 409)


# --- tenancy ------------------------------------------------------------------------------


def test_another_retailers_refund_is_not_found_on_every_route(
    client: TestClient, factory: Factory
) -> None:
    # given a refund of retailer A under review
    owner, other = factory.tenant("A"), factory.tenant("B")
    order = factory.order(owner.id, **OLD)
    refund = created(post_refund(client, owner, order))
    admin = factory.key(None, Role.ADMIN)
    strangers = [
        bearer(factory.key(other.id, Role.SUPERVISOR)),
        bearer(admin, other.id),
    ]
    base = f"/v1/refunds/{refund['id']}"
    for headers in strangers:
        # when retailer B (or an admin acting as B) touches it, it does not exist for them
        assert_problem(client.get(base, headers=headers), 404)
        assert_problem(client.get(f"{base}/events", headers=headers), 404)
        assert_problem(client.post(f"{base}/approve", headers=headers), 404)
        assert_problem(client.post(f"{base}/reject", headers=headers, json={"reason": "x"}), 404)
        assert_problem(client.post(f"{base}/cancel", headers=headers), 404)
        assert_problem(client.post(f"{base}/retry", headers=headers), 404)
        listing = client.get("/v1/refunds", headers=headers)
        assert listing.status_code == 200
        assert listing.json()["items"] == []
        # nor can B refund A's order
        assert_problem(post_refund(client, other, order, headers=headers), 422, field="order_id")
    # and it is untouched
    still = client.get(base, headers=owner.headers).json()
    assert still["status"] == "pending_review"
    assert client.get(base, headers=bearer(admin, owner.id)).status_code == 200


def test_an_idempotency_key_is_scoped_to_its_retailer(client: TestClient, factory: Factory) -> None:
    first, second = factory.tenant("A"), factory.tenant("B")
    key = {"Idempotency-Key": "shared-key"}
    a = created(post_refund(client, first, factory.order(first.id), headers=key))
    b = created(post_refund(client, second, factory.order(second.id), headers=key))
    assert a["id"] != b["id"]

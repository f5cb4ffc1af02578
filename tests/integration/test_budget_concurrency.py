"""Simultaneous refunds on one order never together exceed what was paid (SQLite and PostgreSQL)."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from fastapi.testclient import TestClient

from refunddesk.bootstrap import Container
from refunddesk.core.errors import OverBudget
from tests.factories import ORDER_TOTAL, Factory
from tests.integration.support import refunded_sum, request

T = TypeVar("T")
AMOUNT = ORDER_TOTAL // 5  # the order's budget holds exactly five of these
assert AMOUNT * 5 == ORDER_TOTAL


def _all_at_once(n: int, call: Callable[[int], T]) -> list[T]:
    """Run call(i) on n real threads released together by a barrier."""
    barrier = threading.Barrier(n)

    def run(i: int) -> T:
        barrier.wait(timeout=10)
        return call(i)

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(run, range(n)))


def test_twenty_simultaneous_requests_accept_exactly_the_five_the_budget_allows(
    client: TestClient, container: Container, factory: Factory
) -> None:
    # given an order whose budget allows exactly five refunds of AMOUNT
    tenant = factory.tenant()
    order = factory.order(tenant.id)
    # when twenty requests for AMOUNT arrive at the same moment
    responses = _all_at_once(
        20,
        lambda i: client.post(
            "/v1/refunds",
            headers=tenant.headers,
            json={"order_id": order, "amount_minor": AMOUNT, "reason": "damaged"},
        ),
    )
    # then five are accepted, fifteen refused as over budget, and no more than paid is refunded
    assert Counter(r.status_code for r in responses) == {201: 5, 422: 15}, [
        r.text for r in responses if r.status_code not in (201, 422)
    ]
    refused = [r.json() for r in responses if r.status_code == 422]
    assert {p["code"] for p in refused} == {"over_refund_budget"}
    assert {p["remaining_minor"] for p in refused} == {0}
    assert len({r.json()["id"] for r in responses if r.status_code == 201}) == 5
    assert refunded_sum(container, tenant.id) == 5 * AMOUNT == ORDER_TOTAL
    order_view = client.get(f"/v1/orders/{order}", headers=tenant.headers).json()
    assert (order_view["refunded_minor"], order_view["refundable_minor"]) == (ORDER_TOTAL, 0)


def test_twenty_simultaneous_service_calls_in_their_own_transactions_accept_exactly_five(
    container: Container, factory: Factory
) -> None:
    tenant = factory.tenant()
    order = factory.order(tenant.id)

    def attempt(_: int) -> str:
        try:
            request(container, tenant.id, order_id=order, amount_minor=AMOUNT)
        except OverBudget:
            return "refused"
        return "accepted"

    assert Counter(_all_at_once(20, attempt)) == {"accepted": 5, "refused": 15}
    assert refunded_sum(container, tenant.id) == ORDER_TOTAL


def test_ten_simultaneous_requests_with_one_idempotency_key_create_one_refund(
    client: TestClient, container: Container, factory: Factory
) -> None:
    # given an order
    tenant = factory.tenant()
    order = factory.order(tenant.id)
    headers = {**tenant.headers, "Idempotency-Key": "same-key-from-a-retrying-client"}
    body: dict[str, Any] = {"order_id": order, "amount_minor": 700, "reason": "damaged"}
    # when ten copies of one request, with one Idempotency-Key, arrive at the same moment
    responses = _all_at_once(10, lambda i: client.post("/v1/refunds", headers=headers, json=body))
    # then one refund is created and every response returns it
    assert Counter(r.status_code for r in responses) == {201: 1, 200: 9}, [
        r.text for r in responses
    ]
    assert len({r.json()["id"] for r in responses}) == 1
    assert len({r.json()["reference"] for r in responses}) == 1
    assert refunded_sum(container, tenant.id) == 700
    listed = client.get("/v1/refunds", headers=tenant.headers).json()["items"]
    assert [r["id"] for r in listed] == [responses[0].json()["id"]]

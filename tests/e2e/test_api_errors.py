"""Refused requests over HTTP: each is a problem+json, and none changes the database."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from refunddesk.bootstrap import Container
from tests.e2e.support import PROBLEM, assert_problem, row_counts
from tests.factories import Factory, TenantHandle, order_payload

LIMIT = 1_048_576  # REFUNDDESK_MAX_BODY_BYTES by default


@pytest.fixture
def tenant(factory: Factory) -> TenantHandle:
    return factory.tenant()


@pytest.fixture
def order_id(factory: Factory, tenant: TenantHandle) -> str:
    return factory.order(tenant.id)


def refund_body(order: str, /, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"order_id": order, "amount_minor": 500, "reason": "damaged"}
    body.update(overrides)
    return body


def test_malformed_json_is_a_400_and_stores_nothing(
    client: TestClient, container: Container, tenant: TenantHandle, order_id: str
) -> None:
    counts = row_counts(container)
    for raw in (b'{"order_id": "x",', b"{'single': 'quotes'}", b"\xff\xfe", b"nul\x00"):
        response = client.post(
            "/v1/refunds",
            headers={**tenant.headers, "Content-Type": "application/json"},
            content=raw,
        )
        assert assert_problem(response, 400)["code"] == "malformed_json", raw
    assert row_counts(container) == counts


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"amount_minor": "500"}, "amount_minor"),
        ({"amount_minor": 5.5}, "amount_minor"),
        ({"amount_minor": True}, "amount_minor"),
        ({"amount_minor": -1}, "amount_minor"),
        ({"order_id": 42}, "order_id"),
        ({"reason": ["damaged"]}, "reason"),
        ({"channel": "fax"}, "channel"),
        ({"currency": "EURO"}, "currency"),
        ({"currency": "XXX"}, "currency"),
        ({"amount_minor": None, "lines": [{"sku": "SKU-A", "quantity": "1"}]}, "lines[0].quantity"),
        ({"amount_minor": None, "lines": [{"sku": "SKU-A"}]}, "lines[0].quantity"),
        ({"surprise": 1}, "surprise"),
        ({"amount_minor": None, "lines": [{"sku": "SKU-A", "quantity": 1, "x": 1}]}, "lines[0].x"),
    ],
)
def test_a_field_of_the_wrong_type_or_unknown_is_a_422_naming_it(
    client: TestClient,
    container: Container,
    tenant: TenantHandle,
    order_id: str,
    overrides: dict[str, Any],
    field: str,
) -> None:
    counts = row_counts(container)
    body = {k: v for k, v in refund_body(order_id, **overrides).items() if v is not None}
    response = client.post("/v1/refunds", headers=tenant.headers, json=body)
    problem = assert_problem(response, 422, field=field)
    assert problem["errors"][0]["message"]
    assert row_counts(container) == counts


def test_an_order_with_wrong_types_lists_every_bad_field(
    client: TestClient, tenant: TenantHandle
) -> None:
    body = order_payload(currency=7, purchased_at="yesterday", shipping_minor=-5)
    body["lines"][1]["unit_price_minor"] = "500"
    response = client.post("/v1/orders", headers=tenant.headers, json=body)
    problem = assert_problem(response, 422)
    fields = {e["field"] for e in problem["errors"]}
    assert {"currency", "purchased_at", "shipping_minor", "lines[1].unit_price_minor"} <= fields


def test_a_naive_purchase_time_is_refused(client: TestClient, tenant: TenantHandle) -> None:
    body = order_payload(purchased_at="2026-11-10T10:00:00")
    assert_problem(client.post("/v1/orders", headers=tenant.headers, json=body), 422)


@pytest.mark.parametrize("value", [10**13 + 1, 10**30, -(10**30)])
def test_huge_integers_are_a_422_not_an_overflow(
    client: TestClient, container: Container, tenant: TenantHandle, order_id: str, value: int
) -> None:
    counts = row_counts(container)
    response = client.post(
        "/v1/refunds", headers=tenant.headers, json=refund_body(order_id, amount_minor=value)
    )
    assert_problem(response, 422, field="amount_minor")
    big_order = order_payload()
    big_order["lines"][0]["unit_price_minor"] = value
    response = client.post("/v1/orders", headers=tenant.headers, json=big_order)
    assert_problem(response, 422, field="lines[0].unit_price_minor")
    response = client.get("/v1/refunds", headers=tenant.headers, params={"limit": value})
    assert_problem(response, 422, field="limit")
    assert row_counts(container) == counts


def test_an_integer_too_long_to_parse_is_refused_as_a_bad_request(
    client: TestClient, tenant: TenantHandle, order_id: str
) -> None:
    raw = b'{"order_id": "%s", "reason": "damaged", "amount_minor": %s}' % (
        order_id.encode(),
        b"9" * 5000,
    )
    response = client.post(
        "/v1/refunds", headers={**tenant.headers, "Content-Type": "application/json"}, content=raw
    )
    assert_problem(response, 400)


@pytest.mark.parametrize(
    "junk",
    [
        "A\x00B",
        "\ud800",
        "\u202e\u0000\ufeff",
        "💸" * 30,
        "Ω≈ç√∫µ≤≥÷",
        "'; DROP TABLE refunds; --",
    ],
)
def test_unicode_junk_in_a_body_is_refused_or_stored_but_never_a_500(
    client: TestClient, tenant: TenantHandle, order_id: str, junk: str
) -> None:
    headers = {**tenant.headers, "Content-Type": "application/json"}
    # a refund on an order id of junk: there is no such order
    response = client.post(
        "/v1/refunds",
        headers=headers,
        content=json.dumps(refund_body(junk)).encode(),
    )
    assert_problem(response, 422)
    # an order named with junk is either refused or stored and read back unchanged
    response = client.post(
        "/v1/orders",
        headers=headers,
        content=json.dumps(order_payload(external_id=junk[:100])).encode(),
    )
    if response.status_code == 201:
        assert response.json()["external_id"] == junk[:100].strip()
    else:
        assert_problem(response, 422)
    # junk as a note on a refund, and as an idempotency key, likewise
    response = client.post(
        "/v1/refunds",
        headers=headers,
        content=json.dumps(refund_body(order_id, amount_minor=1, note=junk)).encode(),
    )
    assert response.status_code in (201, 422), response.text
    if response.status_code == 422:
        assert_problem(response, 422)


@pytest.mark.parametrize(
    "path",
    [
        "/v1/refunds/%00",
        "/v1/refunds/A%00B",
        "/v1/refunds/..%2F..%2Fetc%2Fpasswd",
        "/v1/refunds/%27%20OR%201%3D1%20--",
        "/v1/refunds/" + "x" * 65,
        "/v1/refunds/%F0%9F%92%B8",
        "/v1/refunds/%ED%A0%80",
        "/v1/refunds/%FF%FE",
        "/v1/orders/%00",
        "/v1/orders/" + "y" * 101,
        "/v1/orders/%ED%A0%80/",
        "/v1/refunds/x/events/extra",
        "/v1/nowhere",
        "/v1/refunds?status=bogus",
        "/v1/refunds?created_after=not-a-date",
        "/v1/refunds?order_id=%00",
        "/v1/refunds?order_id=%ED%A0%80",
        "/v1/refunds?cursor=%00",
        "/v1/jobs?status=exploded",
        "/v1/track/%00?email=a%40b.c",
    ],
)
def test_junk_in_a_path_or_query_finds_nothing_or_is_a_4xx_problem(
    client: TestClient, container: Container, tenant: TenantHandle, path: str
) -> None:
    counts = row_counts(container)
    response = client.get(path, headers=tenant.headers)
    if response.status_code == 200:  # a filter that matches nothing
        assert response.json() == {"items": [], "next_cursor": None}
    else:
        assert 400 <= response.status_code < 500, (response.status_code, response.text)
        assert_problem(response, response.status_code)
    assert row_counts(container) == counts


def test_a_body_over_the_limit_is_a_413_by_content_length(
    client: TestClient, container: Container, tenant: TenantHandle
) -> None:
    counts = row_counts(container)
    body = {"orders": [order_payload(external_id=f"BIG-{n}") for n in range(1000)]}
    body["orders"][0]["customer"]["name"] = "n" * LIMIT
    raw = json.dumps(body).encode()
    assert len(raw) > LIMIT
    response = client.post(
        "/v1/orders/batch",
        headers={**tenant.headers, "Content-Type": "application/json"},
        content=raw,
    )
    assert_problem(response, 413)
    assert row_counts(container) == counts


def test_a_chunked_body_over_the_limit_is_a_413_without_content_length(
    client: TestClient, container: Container, tenant: TenantHandle
) -> None:
    counts = row_counts(container)
    sent: list[int] = []

    def chunks() -> Iterator[bytes]:
        yield b'{"orders": ['
        for n in range(2000):
            piece = json.dumps(order_payload(external_id=f"CH-{n}")).encode() + b","
            sent.append(len(piece))
            yield piece
        yield b"]}"

    response = client.post(
        "/v1/orders/batch",
        headers={**tenant.headers, "Content-Type": "application/json"},
        content=chunks(),
    )
    assert "content-length" not in {k.lower() for k in response.request.headers}
    assert sum(sent) > LIMIT
    assert_problem(response, 413)
    assert row_counts(container) == counts


def test_a_body_just_under_the_limit_is_read(client: TestClient, tenant: TenantHandle) -> None:
    body = order_payload()
    raw = json.dumps(body).encode()
    padded = raw[:-1] + b" " * (LIMIT - len(raw)) + b"}"
    assert len(padded) == LIMIT
    response = client.post(
        "/v1/orders", headers={**tenant.headers, "Content-Type": "application/json"}, content=padded
    )
    assert response.status_code == 201, response.text


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml", None]
)
def test_a_body_that_is_not_declared_json_is_a_415(
    client: TestClient,
    container: Container,
    tenant: TenantHandle,
    order_id: str,
    content_type: str | None,
) -> None:
    counts = row_counts(container)
    headers = dict(tenant.headers)
    if content_type:
        headers["Content-Type"] = content_type
    raw = json.dumps(refund_body(order_id)).encode()
    response = client.post("/v1/refunds", headers=headers, content=raw)
    assert_problem(response, 415)
    assert row_counts(container) == counts


def test_json_that_is_not_an_object_is_a_422(
    client: TestClient, tenant: TenantHandle, order_id: str
) -> None:
    for body in ([refund_body(order_id)], "refund", 42, None):
        response = client.post("/v1/refunds", headers=tenant.headers, json=body)
        assert_problem(response, 422)


def test_a_wrong_method_is_a_405_problem(client: TestClient, tenant: TenantHandle) -> None:
    assert_problem(client.delete("/v1/refunds", headers=tenant.headers), 405)
    assert_problem(client.put("/v1/orders/ORD-1", headers=tenant.headers, json={}), 405)


def test_every_refused_request_leaves_the_database_as_it_was(
    client: TestClient, container: Container, factory: Factory, tenant: TenantHandle
) -> None:
    # given a retailer with an order under review and one refund
    order_id = factory.order(tenant.id)
    client.post("/v1/refunds", headers=tenant.headers, json=refund_body(order_id))
    counts = row_counts(container)
    h = tenant.headers
    refused = [
        client.post("/v1/refunds", json=refund_body(order_id)),
        client.post("/v1/refunds", headers=h, json=refund_body(order_id, amount_minor=10**9)),
        client.post("/v1/refunds", headers=h, json=refund_body(order_id, currency="SEK")),
        client.post("/v1/refunds", headers=h, json=refund_body("nope")),
        client.post("/v1/orders", headers=h, json=order_payload(external_id=order_id)),
        client.post("/v1/orders", headers=h, json=order_payload(lines=[])),
        client.post("/v1/orders/batch", headers=h, json={"orders": [order_payload()] * 2}),
    ]
    # then each was a problem and nothing was written
    assert [r.status_code for r in refused] == [401, 422, 422, 422, 409, 422, 409]
    for response in refused:
        assert_problem(response, response.status_code)
    assert row_counts(container) == counts


# --- operations ---------------------------------------------------------------------------


def test_healthz_says_ok(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_metrics_expose_requests_transitions_and_the_queue(
    client: TestClient, tenant: TenantHandle, order_id: str
) -> None:
    client.post("/v1/refunds", headers=tenant.headers, json=refund_body(order_id))
    response = client.get("/metrics")
    assert response.status_code == 200
    text = response.text
    for name in (
        "refunddesk_http_requests_total",
        "refunddesk_refund_transitions_total",
        "refunddesk_job_queue_depth",
        "refunddesk_job_oldest_age_seconds",
    ):
        assert f"\n{name}" in text, name
    assert 'refunddesk_job_queue_depth{status="queued"} 1.0' in text
    assert 'route="/v1/refunds"' in text


def test_openapi_has_stable_operation_ids(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    ids = {
        op["operationId"]
        for methods in spec["paths"].values()
        for op in methods.values()
        if isinstance(op, dict) and "operationId" in op
    }
    assert {
        "healthz",
        "create_order",
        "create_orders_batch",
        "get_order",
        "create_refund",
        "get_refund",
        "list_refunds",
        "list_refund_events",
        "approve_refund",
        "reject_refund",
        "cancel_refund",
        "retry_refund_payout",
        "track_refund",
        "list_jobs",
        "rerun_job",
    } <= ids


def test_a_request_id_is_echoed_or_made_up(client: TestClient) -> None:
    given = "3f2b8c1e9d4a4b7f8e6c5d4a3b2c1d0e"
    response = client.get("/healthz", headers={"X-Request-ID": given})
    assert response.headers["X-Request-ID"] == given
    made_up = client.get("/healthz").headers["X-Request-ID"]
    assert made_up
    assert made_up != given
    problem = client.get("/v1/refunds", headers={"X-Request-ID": given})
    assert problem.headers["X-Request-ID"] == given
    assert problem.headers["content-type"].startswith(PROBLEM)


def test_a_nul_character_is_refused_before_it_reaches_the_database(
    client: TestClient, container: Container, tenant: TenantHandle, order_id: str
) -> None:
    # PostgreSQL text cannot hold NUL: it is refused as bad input, on every backend alike
    counts = row_counts(container)
    body = order_payload(external_id="A\x00B")
    assert_problem(
        client.post("/v1/orders", headers=tenant.headers, json=body), 422, field="external_id"
    )
    note = refund_body(order_id, note="x\x00")
    assert_problem(client.post("/v1/refunds", headers=tenant.headers, json=note), 422, field="note")
    assert_problem(client.get("/v1/orders/A%00B", headers=tenant.headers), 400)
    assert_problem(client.get("/v1/refunds?order_id=%00", headers=tenant.headers), 400)
    assert row_counts(container) == counts


def test_only_the_portals_photo_form_may_send_more_than_the_limit(
    client: TestClient, container: Container
) -> None:
    # a 2 MB multipart body: over the API's 1 MB limit, within what 5 photos may weigh
    raw = b'--x\r\nContent-Disposition: form-data; name="note"\r\n\r\n' + b"a" * (2 * LIMIT)
    raw += b"\r\n--x--\r\n"
    headers = {"Content-Type": "multipart/form-data; boundary=x"}
    assert_problem(client.post("/v1/orders", headers=headers, content=raw), 413)
    assert client.post("/portal", headers=headers, content=raw).status_code == 413
    # the photo form reads it (and refuses it for its own reasons: no portal session here)
    answer = client.post("/portal/request", headers=headers, content=raw, follow_redirects=False)
    assert answer.status_code != 413
    assert answer.status_code < 500

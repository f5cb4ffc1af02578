"""Structured logs: JSON lines that carry the request id of the request that wrote them."""

import io
import json
import logging
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from refunddesk.logs import configure
from tests.factories import Factory

REQUEST_ID = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    yield stream
    logging.getLogger().handlers.clear()


def test_each_request_writes_a_json_access_line_with_its_request_id(
    client: TestClient, factory: Factory, log_stream: io.StringIO
) -> None:
    tenant = factory.tenant()
    order = factory.order(tenant.id)
    configure("INFO", "json", log_stream)
    response = client.post(
        "/v1/refunds",
        headers={**tenant.headers, "X-Request-ID": REQUEST_ID},
        json={"order_id": order, "amount_minor": 100, "reason": "damaged"},
    )
    assert response.status_code == 201
    assert response.headers["X-Request-ID"] == REQUEST_ID
    lines = [json.loads(line) for line in log_stream.getvalue().splitlines()]
    access = [x for x in lines if x["name"] == "refunddesk.access"]
    assert len(access) == 1
    assert access[0]["request_id"] == REQUEST_ID
    assert access[0]["route"] == "/v1/refunds"
    assert access[0]["status"] == 201
    assert access[0]["level"] == "INFO"
    assert {"time", "message", "duration_ms"} <= set(access[0])


def test_text_logs_name_the_request_id_too(client: TestClient, log_stream: io.StringIO) -> None:
    configure("INFO", "text", log_stream)
    client.get("/healthz", headers={"X-Request-ID": REQUEST_ID})
    assert f"[{REQUEST_ID}] refunddesk.access: GET /healthz 200" in log_stream.getvalue()

"""Helpers shared by the HTTP end-to-end tests."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import func, select

from refunddesk.bootstrap import Container
from refunddesk.db.models import Base

PROBLEM = "application/problem+json"


def assert_problem(response: httpx.Response, status: int, *, field: str | None = None) -> Any:
    """The response is an RFC 9457 problem with this status; return its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM), response.headers
    body = response.json()
    for key in ("type", "title", "status", "detail"):
        assert key in body, body
    assert body["status"] == status
    if field is not None:
        fields = [e["field"] for e in body.get("errors", [])]
        assert field in fields, body
    return body


def bearer(key: str, tenant_id: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {key}"}
    if tenant_id is not None:
        headers["X-Tenant-Id"] = tenant_id
    return headers


def row_counts(container: Container) -> dict[str, int]:
    """Rows per table: compared before and after a refused request."""
    with container.db.read() as session:
        return {
            table.name: int(session.scalar(select(func.count()).select_from(table)) or 0)
            for table in Base.metadata.sorted_tables
        }

"""Preview and backtest from both the API and the CLI, changing nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from refunddesk.auth.domain import Role
from refunddesk.bootstrap import Container
from tests.e2e.support import row_counts
from tests.e2e.test_cli import count_rows, make_tenant, run, run_json
from tests.factories import Factory

STRICT = "name: strict\nwindow:\n  days: 3\n"  # orders in the factory were delivered 8 days ago


def _refunds(
    client: TestClient, factory: Factory, headers: dict[str, str], tenant_id: str, n: int
) -> None:
    for _ in range(n):
        order = factory.order(tenant_id)
        response = client.post(
            "/v1/refunds",
            headers=headers,
            json={"order_id": order, "amount_minor": 500, "reason": "damaged"},
        )
        assert response.status_code == 201, response.text
        assert response.json()["status"] == "approved"


def test_backtesting_a_stricter_draft_over_the_api_reports_changes_and_writes_nothing(
    client: TestClient, factory: Factory, container: Container
) -> None:
    tenant = factory.tenant()
    _refunds(client, factory, tenant.headers, tenant.id, 3)
    supervisor = {"Authorization": f"Bearer {factory.key(tenant.id, Role.SUPERVISOR)}"}
    before = row_counts(container)

    response = client.post(
        "/v1/policies/backtest", headers=supervisor, json={"source": STRICT, "since": "2026-01-01"}
    )

    assert response.status_code == 200, response.text
    report = response.json()
    assert report["replayed"] == 3
    assert report["auto_approve_rate"] == {"before": 1.0, "after": 0.0}
    assert report["decisions_changed"] == 3
    assert {"before": "approved", "after": "pending_review", "count": 3} in report["matrix"]
    assert report["findings"]["outside_return_window"] == {"before": 0, "after": 3}
    assert row_counts(container) == before


def test_backtest_refuses_a_bad_draft_with_its_line_and_an_agent_with_403(
    client: TestClient, factory: Factory
) -> None:
    tenant = factory.tenant()
    supervisor = {"Authorization": f"Bearer {factory.key(tenant.id, Role.SUPERVISOR)}"}
    agent = {"Authorization": f"Bearer {factory.key(tenant.id, Role.AGENT)}"}

    bad = client.post(
        "/v1/policies/backtest",
        headers=supervisor,
        json={"source": "name: x\nwindow:\n  days: -3\n"},
    )
    forbidden = client.post("/v1/policies/backtest", headers=agent, json={"source": STRICT})

    assert bad.status_code == 422
    assert bad.headers["content-type"].startswith("application/problem+json")
    assert bad.json()["errors"][0]["line"] == 3
    assert bad.json()["errors"][0]["field"] == "window.days"
    assert forbidden.status_code == 403


@pytest.mark.slow
def test_the_cli_previews_a_request_under_the_active_policy_without_storing_it(
    sqlite_url: str, tmp_path: Path
) -> None:
    tenant = make_tenant(sqlite_url)
    from refunddesk.bootstrap import bootstrap
    from refunddesk.settings import Settings

    container = bootstrap(Settings(database_url=sqlite_url))
    try:
        factory = Factory(container)
        order = factory.order(tenant.id, delivered_at=None, purchased_at="2020-01-01T00:00:00Z")
    finally:
        container.close()
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"order_id": order, "amount_minor": 700, "reason": "damaged"}))

    preview = run_json(sqlite_url, "policy", "preview", "--tenant", tenant.id, str(request))
    human = run(sqlite_url, "policy", "preview", "--tenant", tenant.id, str(request))
    broken = tmp_path / "broken.json"
    broken.write_text('{"order_id": "x", "reason": "nope", "amount_minor": 1}')
    refused = run(sqlite_url, "policy", "preview", "--tenant", tenant.id, str(broken), expect=2)

    assert preview["status"] == "pending_review"
    assert preview["amount_minor"] == 700
    assert any(f["code"] == "outside_return_window" for f in preview["findings"])
    assert "pending_review" in human.stdout
    assert "outside_return_window" in human.stdout
    assert "reason" in refused.stdout + refused.stderr
    assert count_rows(sqlite_url, "refunds") == 0

"""`refunddesk policy ...` run as the real console script against a temporary database."""

from __future__ import annotations

from pathlib import Path

import pytest

from refunddesk.bootstrap import bootstrap
from refunddesk.policy import example_text
from refunddesk.refunds import service as refunds
from refunddesk.refunds.schemas import RefundCreate
from refunddesk.settings import Settings
from tests.e2e.test_cli import api, count_rows, make_tenant, run, run_json
from tests.factories import Factory

pytestmark = pytest.mark.slow

BAD = """\
format: 1
window:
  days: -3
fees:
  colour: red
"""
STRICT = """\
name: Strict draft
currency: EUR
window: {days: 5, outside: hard}
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_upload_activate_and_show_a_policy_in_plain_language(
    sqlite_url: str, tmp_path: Path
) -> None:
    tenant = make_tenant(sqlite_url)
    sakura = write(tmp_path, "sakura.yaml", example_text("sakura"))

    uploaded = run_json(
        sqlite_url, "policy", "upload", "--tenant", tenant.id, str(sakura), "--note", "Q4"
    )
    assert uploaded["version"] == 1
    assert uploaded["active"] is False
    assert uploaded["note"] == "Q4"

    activated = run_json(sqlite_url, "policy", "activate", "--tenant", tenant.id, "1")
    assert activated["active"] is True

    shown = run(sqlite_url, "policy", "show", "--tenant", tenant.id)
    assert "Sakura Electronics returns" in shown.stdout
    assert "version 1 (active)" in shown.stdout
    assert "Changed-mind returns must be unopened." in shown.stdout
    assert "Refunds above 100,000 JPY need two different approvers." in shown.stdout

    with api(sqlite_url) as client:
        active = client.get("/v1/policies/active", headers=tenant.headers).json()
    assert active["version"] == 1


def test_upload_with_activate_and_toml_and_show_a_version_as_json(
    sqlite_url: str, tmp_path: Path
) -> None:
    tenant = make_tenant(sqlite_url)
    toml = write(tmp_path, "p.toml", 'name = "In TOML"\n[window]\ndays = 12\n')
    run(sqlite_url, "policy", "upload", "--tenant", tenant.id, str(toml), "--activate")
    shown = run_json(sqlite_url, "policy", "show", "--tenant", tenant.id, "--version", "1")
    assert shown["format"] == "toml"
    assert shown["active"] is True
    assert shown["document"]["window"]["days"] == 12


def test_a_bad_policy_file_exits_2_naming_line_and_field_and_stores_nothing(
    sqlite_url: str, tmp_path: Path
) -> None:
    tenant = make_tenant(sqlite_url)
    bad = write(tmp_path, "bad.yaml", BAD)

    result = run(sqlite_url, "policy", "upload", "--tenant", tenant.id, str(bad), expect=2)
    assert f"{bad}:3: window.days: must be a whole number of days" in result.stderr
    assert f"{bad}:5: fees.colour: unknown field" in result.stderr
    assert count_rows(sqlite_url, "policy_versions") == 0

    as_json = run_json(
        sqlite_url, "policy", "backtest", "--tenant", tenant.id, "--policy", str(bad), expect=2
    )
    assert as_json["problems"][0]["line"] == 3
    assert as_json["problems"][0]["field"] == "window.days"


def test_activating_an_unknown_version_exits_2(sqlite_url: str) -> None:
    tenant = make_tenant(sqlite_url)
    result = run(sqlite_url, "policy", "activate", "--tenant", tenant.id, "4", expect=2)
    assert "no policy version 4" in result.stderr


def test_backtest_reports_changes_and_leaves_the_data_alone(
    sqlite_url: str, tmp_path: Path
) -> None:
    # given a retailer with two refunds, one on an order delivered long ago
    container = bootstrap(Settings(database_url=sqlite_url))
    try:
        f = Factory(container)
        tenant = f.tenant("Shop")
        recent = f.order(tenant.id, purchased_at="2026-11-18T10:00:00Z", delivered_at=None)
        old = f.order(
            tenant.id, purchased_at="2026-01-02T10:00:00Z", delivered_at="2026-01-03T10:00:00Z"
        )
        for order in (recent, old):
            with container.db.write() as session:
                refunds.request_refund(
                    session,
                    clock=container.clock,
                    config=container.intake,
                    tenant_id=tenant.id,
                    data=RefundCreate.model_validate(
                        {"order_id": order, "amount_minor": 300, "reason": "damaged"}
                    ),
                    actor="api:test",
                )
    finally:
        container.close()
    draft = write(tmp_path, "strict.yaml", STRICT)
    before = count_rows(sqlite_url, "refund_events")

    # when the strict draft is backtested
    report = run_json(
        sqlite_url, "policy", "backtest", "--tenant", tenant.id, "--policy", str(draft)
    )
    human = run(sqlite_url, "policy", "backtest", "--tenant", tenant.id, "--policy", str(draft))

    # then the late refund is rejected under the draft and nothing was written
    assert report["replayed"] == 2
    assert report["findings"]["outside_return_window"]["after"] >= 1
    assert any(row["after"] == "rejected" for row in report["matrix"])
    assert (
        report["total_refunded_minor"]["EUR"]["after"]
        < (report["total_refunded_minor"]["EUR"]["before"])
    )
    assert "Backtest of Strict draft" in human.stdout
    assert "auto-approved" in human.stdout
    assert count_rows(sqlite_url, "refund_events") == before
    future = run_json(
        sqlite_url,
        "policy",
        "backtest",
        "--tenant",
        tenant.id,
        "--policy",
        str(draft),
        "--since",
        "2099-01-01",
    )
    assert future["replayed"] == 0


def test_the_demo_retailers_run_under_their_own_policies(sqlite_url: str) -> None:
    demo = run_json(sqlite_url, "demo", "--orders", "60")
    names = {}
    statuses: dict[str, set[str]] = {}
    with api(sqlite_url) as client:
        for tenant in demo["tenants"]:
            headers = {"Authorization": f"Bearer {tenant['keys']['integration']}"}
            names[tenant["name"]] = client.get("/v1/policies/active", headers=headers).json()
            page = client.get("/v1/refunds", headers=headers, params={"limit": 200}).json()
            statuses[tenant["name"]] = {r["status"] for r in page["items"]}
    assert names["Northwind Outfitters"]["name"] == "Northwind Outfitters standard returns"
    assert names["Sakura Electronics"]["name"] == "Sakura Electronics returns"
    assert names["Maple Home Goods"]["name"] == "Maple Home Goods returns"
    assert all(p["version"] == 1 for p in names.values())
    assert "awaiting_return" in statuses["Sakura Electronics"]

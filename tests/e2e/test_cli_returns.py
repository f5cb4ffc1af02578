"""`refunddesk returns ...` in subprocesses: the warehouse scan feed and the expiry."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from refunddesk.bootstrap import Container
from refunddesk.returns import service
from refunddesk.returns.orm import ReturnRecord, ScanException
from tests.conftest import NOW
from tests.e2e.test_cli import run, run_json
from tests.factories import Factory
from tests.integration.returns_support import awaiting_return, returns_tenant
from tests.integration.support import refund

pytestmark = pytest.mark.slow

FEED = """\
tracking_number,sku,quantity,condition
parcel-1,SKU-A,2,unused
PARCEL-1,SKU-B,1,used
UNKNOWN-9,SKU-A,1,used
PARCEL-1,,x,shiny
"""


def _exceptions(container: Container, tenant_id: str) -> list[tuple[str, int | None, str | None]]:
    with container.db.read() as session:
        rows = session.scalars(
            select(ScanException)
            .where(ScanException.tenant_id == tenant_id)
            .order_by(ScanException.kind, ScanException.line)
        )
        return [(r.kind, r.line, r.tracking_number) for r in rows]


def test_a_scan_feed_receives_known_parcels_and_reports_and_stores_the_rest(
    database_url: str, container: Container, factory: Factory, tmp_path: Path
) -> None:
    # given a shipped return with tracking number PARCEL-1
    tenant = returns_tenant(container, factory)
    shipped = awaiting_return(container, factory, tenant.id)
    with container.db.write() as session:
        service.ship(
            session,
            clock=container.clock,
            tenant_id=tenant.id,
            refund_id=shipped.id,
            carrier="DHL",
            tracking_number="PARCEL-1",
            actor="test",
        )
    feed = tmp_path / "scans.csv"
    feed.write_text(FEED, encoding="utf-8")

    # when the warehouse feed is received: the parcel, an unknown number and a bad row
    report = run_json(
        database_url, "returns", "receive", "--tenant", tenant.id, str(feed), expect=1
    )

    # then the parcel is received, and the rest is reported and stored
    assert [r["tracking_number"] for r in report["received"]] == ["PARCEL-1"]
    assert report["received"][0]["quantities"] == {"SKU-A": 2, "SKU-B": 1}
    assert [(u["line"], u["tracking_number"]) for u in report["unmatched"]] == [(4, "UNKNOWN-9")]
    assert [b["line"] for b in report["bad_rows"]] == [5]
    assert "missing sku" in report["bad_rows"][0]["reason"]
    assert report["errors"] == []
    assert refund(container, tenant.id, shipped.id).status == "return_received"
    assert _exceptions(container, tenant.id) == [
        ("bad_row", 5, None),
        ("unmatched", 4, "UNKNOWN-9"),
    ]

    # and the same feed again: the parcel is refused (already received), reported and stored
    again = run(database_url, "returns", "receive", "--tenant", tenant.id, str(feed), expect=1)
    assert "PARCEL-1" in again.stdout
    assert "Parcels refused" in again.stdout
    assert ("error", 2, "PARCEL-1") in _exceptions(container, tenant.id)


def test_a_feed_whose_rows_all_apply_exits_0_and_an_unknown_tenant_exits_2(
    database_url: str, container: Container, factory: Factory, tmp_path: Path
) -> None:
    tenant = returns_tenant(container, factory)
    shipped = awaiting_return(container, factory, tenant.id)
    with container.db.write() as session:
        service.ship(
            session,
            clock=container.clock,
            tenant_id=tenant.id,
            refund_id=shipped.id,
            carrier="UPS",
            tracking_number="1Z999",
            actor="test",
        )
    feed = tmp_path / "scans.csv"
    feed.write_text("tracking_number,sku,quantity,condition\n1Z999,SKU-A,1,used\n")
    report = run_json(database_url, "returns", "receive", "--tenant", tenant.id, str(feed))
    assert len(report["received"]) == 1
    missing = run_json(
        database_url, "returns", "receive", "--tenant", "NO-SUCH-TENANT", str(feed), expect=2
    )
    assert missing["error"] == "not_found"


def test_returns_expire_cancels_refunds_whose_return_is_overdue(
    database_url: str, container: Container, factory: Factory
) -> None:
    tenant = returns_tenant(container, factory)
    overdue = awaiting_return(container, factory, tenant.id)
    with container.db.write() as session:
        session.execute(
            update(ReturnRecord)
            .where(ReturnRecord.refund_id == overdue.id)
            .values(expires_at=NOW - timedelta(days=400))
        )
    result = run_json(database_url, "returns", "expire")
    assert result == {"expired": [overdue.id], "errors": {}}
    assert refund(container, tenant.id, overdue.id).status == "canceled"

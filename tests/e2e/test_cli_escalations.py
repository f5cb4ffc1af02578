"""`refunddesk escalations ...` and `refunddesk sla ...` as a real console script."""

from __future__ import annotations

from datetime import timedelta

import pytest

from refunddesk.bootstrap import Container
from refunddesk.core.clock import FrozenClock
from refunddesk.sla.orm import RefundClock
from tests.e2e.test_cli import run, run_json
from tests.factories import Factory
from tests.integration.support import request

pytestmark = pytest.mark.slow

OLD = {"purchased_at": "2026-08-01T10:00:00Z", "delivered_at": "2026-08-03T10:00:00Z"}


def test_backfill_scan_list_and_show_from_the_command_line(
    container: Container, factory: Factory, database_url: str, clock: FrozenClock
) -> None:
    tenant = factory.tenant()
    clock.advance(timedelta(days=-10))  # the CLI runs on the real clock: long past due
    refund, _ = request(
        container, tenant.id, order_id=factory.order(tenant.id, **OLD), amount_minor=900
    )
    with container.db.write() as session:  # as if stored before the clocks existed
        session.query(RefundClock).delete()
    assert run_json(database_url, "sla", "backfill") == {"backfilled": 1}
    clocks = run_json(database_url, "sla", "clocks", refund.id, "--tenant", tenant.id)
    decision = next(c for c in clocks["clocks"] if c["name"] == "decision")
    assert decision["state"] == "running"
    assert decision["breached"]
    report = run_json(database_url, "escalations", "scan", "--tenant", tenant.id)
    assert report["opened"] == 1
    assert report["errors"] == 0
    listed = run_json(database_url, "escalations", "list", "--tenant", tenant.id)
    assert [e["refund_id"] for e in listed] == [refund.id]
    assert listed[0]["tier"] == "l2"  # breached: the breach rule's tier
    shown = run_json(database_url, "escalations", "show", listed[0]["id"], "--tenant", tenant.id)
    assert shown["status"] == "open"
    missing = run(database_url, "escalations", "show", "NOPE", "--tenant", tenant.id, expect=2)
    assert "no escalation" in missing.stderr

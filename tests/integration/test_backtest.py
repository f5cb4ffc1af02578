"""Backtest: stored refunds replayed against a draft policy, against a real database, read-only."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta

from sqlalchemy import select, text

from refunddesk.bootstrap import Container
from refunddesk.core.clock import FrozenClock
from refunddesk.policy import parse_policy
from refunddesk.policy.backtest import backtest
from refunddesk.refunds.orm import Refund
from tests.conftest import NOW
from tests.e2e.support import row_counts
from tests.factories import Factory
from tests.integration.support import request

# Delivered 2026-08-03: long before NOW (2026-11-20), outside any window here.
OLD = {"purchased_at": "2026-08-01T10:00:00Z", "delivered_at": "2026-08-03T10:00:00Z"}
# Ten days from delivery (2026-11-12): the window ends 2026-11-22, after NOW.
STRICT = parse_policy(
    """\
name: Strict draft
currency: EUR
window: {days: 10, outside: hard}
requirements:
  reasons:
    changed_mind: {condition: unopened}
returns: {default: return}
fees:
  restocking:
    - percent: 10
      reasons: [changed_mind]
authorization: {auto_approve_below: 6.00}
"""
)


def given_four_refunds(container: Container, factory: Factory) -> str:
    """Four refunds decided under the built-in default: three approved, one late in review."""
    tenant = factory.tenant()
    order = factory.order
    request(
        container,
        tenant.id,
        order_id=order(tenant.id),
        reason="changed_mind",
        lines=[{"sku": "SKU-A", "quantity": 1}],
    )
    request(container, tenant.id, order_id=order(tenant.id), amount_minor=500)
    request(container, tenant.id, order_id=order(tenant.id, **OLD), amount_minor=700)
    request(
        container,
        tenant.id,
        order_id=order(tenant.id),
        reason="changed_mind",
        lines=[{"sku": "SKU-B", "quantity": 1, "condition": "used"}],
    )
    return tenant.id


def refunds_checksum(container: Container) -> str:
    with container.db.read() as session:
        rows = session.execute(select(Refund.__table__).order_by(Refund.id)).all()
        events = session.execute(text("SELECT COUNT(*), MAX(seq) FROM refund_events")).one()
    blob = json.dumps([list(r) for r in rows] + [list(events)], default=str, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def test_a_stricter_draft_changes_decisions_and_totals_as_expected(
    container: Container, factory: Factory
) -> None:
    tenant_id = given_four_refunds(container, factory)

    with container.db.read() as session:
        result = backtest(session, tenant_id=tenant_id, policy=STRICT)

    assert result.replayed == 4
    assert result.approved_before == 3
    assert result.approved_after == 1  # only the 5.00 damaged refund, inside the window
    assert result.auto_approve_rate_before == 0.75
    assert result.auto_approve_rate_after == 0.25
    # before: 10.00 + 5.00 + 7.00 + 5.00; after: 10.00 less a 10% fee, and the 5.00
    assert result.totals_before == {"EUR": 2700}
    assert result.totals_after == {"EUR": 1400}
    assert result.matrix == {
        ("approved", "pending_review"): 1,  # no condition stated for a change of mind
        ("approved", "approved"): 1,
        ("pending_review", "rejected"): 1,  # late: now a hard rule
        ("approved", "rejected"): 1,  # used, where unopened is required
    }
    assert result.decisions_changed == 3
    assert result.amounts_changed == 1
    assert result.findings_after["outside_return_window"] == 1
    assert result.findings_after["condition_not_accepted"] == 1
    assert result.findings_after["condition_not_stated"] == 1
    assert result.findings_after["return_required"] == 1
    assert {c.after for c in result.changes} == {"pending_review", "rejected"}
    report = result.to_dict()
    assert report["total_refunded_minor"] == {"EUR": {"before": 2700, "after": 1400}}
    assert json.dumps(report)


def test_a_backtest_changes_nothing_in_the_database(container: Container, factory: Factory) -> None:
    tenant_id = given_four_refunds(container, factory)
    counts, checksum = row_counts(container), refunds_checksum(container)

    with container.db.read() as session:
        backtest(session, tenant_id=tenant_id, policy=STRICT)

    assert row_counts(container) == counts
    assert refunds_checksum(container) == checksum


def test_since_replays_only_refunds_asked_from_that_moment(
    container: Container, factory: Factory, clock: FrozenClock
) -> None:
    tenant = factory.tenant()
    request(container, tenant.id, order_id=factory.order(tenant.id), amount_minor=500)
    clock.advance(timedelta(days=1))
    request(container, tenant.id, order_id=factory.order(tenant.id), amount_minor=400)

    with container.db.read() as session:
        result = backtest(
            session, tenant_id=tenant.id, policy=STRICT, since=NOW + timedelta(hours=12)
        )

    assert result.replayed == 1
    assert result.totals_before == {"EUR": 400}


def test_later_refunds_on_an_order_see_the_budget_the_draft_left(
    container: Container, factory: Factory
) -> None:
    # given two refunds on one order, each for different lines
    tenant = factory.tenant()
    order = factory.order(tenant.id)
    request(container, tenant.id, order_id=order, lines=[{"sku": "SKU-B", "quantity": 1}])
    request(
        container,
        tenant.id,
        order_id=order,
        reason="changed_mind",
        lines=[{"sku": "SKU-A", "quantity": 2}],
    )
    # when replayed, the second sees the budget the first left under the draft
    with container.db.read() as session:
        result = backtest(session, tenant_id=tenant.id, policy=STRICT)
    assert result.replayed == 2
    # the first: 5.00 approved (under 6.00); the second: 20.00 less 10%, no condition stated
    assert result.totals_after == {"EUR": 500 + 1800}

"""Delay alerts: a refund past the date we last gave the customer gets one refund.delayed event.

The date is the tracking page's own (tracking.service.expected), as it stood when the
refund last moved: that is the date the customer was told. The event goes through the
dispatcher like any other (one message per channel, agents see it on the timeline); a row
in refund_delay_alerts, keyed by the refund, makes it happen once.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select, tuple_
from sqlalchemy.orm import Session

from refunddesk.core.clock import Clock
from refunddesk.db.keys import pairs_in
from refunddesk.db.uow import Database
from refunddesk.notifications.dispatch import DELAYED
from refunddesk.notifications.orm import DelayAlert
from refunddesk.orders.orm import Order
from refunddesk.payouts.orm import Payout
from refunddesk.refunds.domain import RefundStatus
from refunddesk.refunds.orm import Refund
from refunddesk.tenants.orm import Tenant
from refunddesk.tracking.service import ANSWERED, expected

ACTOR = "system:notifications"
# States with a promised date that the desk (not the customer) has to keep.
WATCHED = (
    RefundStatus.REQUESTED,
    RefundStatus.PENDING_REVIEW,
    RefundStatus.RETURN_RECEIVED,
    RefundStatus.APPROVED,
    RefundStatus.PROCESSING,
)
# No promise is shorter than this, so younger refunds are not even looked at.
MIN_AGE = timedelta(days=1)


def alert_delayed(*, db: Database, clock: Clock, page: int = 500) -> int:
    """Record refund.delayed for every watched refund past its date; return how many."""
    now = clock.now()
    alerted, after = 0, None
    while True:
        with db.write() as session:
            found, last = _page(session, now=now, after=after, limit=page)
            alerted += found
        if last is None:
            return alerted
        after = last


def _page(
    session: Session, *, now: datetime, after: tuple[datetime, str, str] | None, limit: int
) -> tuple[int, tuple[datetime, str, str] | None]:
    query = (
        select(Refund, Order.payment_method, Tenant.timezone)
        .join(Order, (Order.tenant_id == Refund.tenant_id) & (Order.id == Refund.order_id))
        .join(Tenant, Tenant.id == Refund.tenant_id)
        .outerjoin(
            DelayAlert,
            (DelayAlert.tenant_id == Refund.tenant_id) & (DelayAlert.refund_id == Refund.id),
        )
        .where(
            DelayAlert.refund_id.is_(None),
            Refund.status.in_([str(s) for s in WATCHED]),
            Refund.updated_at <= now - MIN_AGE,
        )
        .order_by(Refund.updated_at, Refund.tenant_id, Refund.id)
        .limit(limit)
        .with_for_update(of=Refund, skip_locked=True)
    )
    if after is not None:
        query = query.where(tuple_(Refund.updated_at, Refund.tenant_id, Refund.id) > tuple_(*after))
    rows = session.execute(query).all()
    if not rows:
        return 0, None
    windows = _windows(session, [r[0] for r in rows if r[0].status == RefundStatus.PROCESSING])
    found = 0
    for refund, payment_method, tz_name in rows:
        tz = ZoneInfo(tz_name)
        method = "store_credit" if refund.refund_method == "store_credit" else payment_method
        override = (refund.payout_override or {}).get("method")
        if override and override != "original":
            method = str(override)
        by, _ = expected(
            refund, method, refund.updated_at, tz, None, windows.get((refund.tenant_id, refund.id))
        )
        if by is None or by >= now.astimezone(tz).date():
            continue
        event = refund.record(
            DELAYED,
            actor=ACTOR,
            at=now,
            data={"expected_on": by.isoformat(), "status": refund.status},
        )
        session.add(
            DelayAlert(
                tenant_id=refund.tenant_id,
                refund_id=refund.id,
                expected_on=by,
                event_id=event.id,
                alerted_at=now,
            )
        )
        found += 1
    session.flush()
    last = rows[-1][0]
    return found, (last.updated_at, last.tenant_id, last.id) if len(rows) == limit else None


def _windows(session: Session, refunds: list[Refund]) -> dict[tuple[str, str], tuple[date, date]]:
    """The arrival window of each processing refund's latest answered payout."""
    if not refunds:
        return {}
    out: dict[tuple[str, str], tuple[date, date]] = {}
    for payout in session.scalars(
        select(Payout)
        .where(pairs_in(Payout.tenant_id, Payout.refund_id, [(r.tenant_id, r.id) for r in refunds]))
        .order_by(Payout.attempt)
    ):
        if payout.status in ANSWERED and payout.arrival_earliest and payout.arrival_latest:
            out[(payout.tenant_id, payout.refund_id)] = (
                payout.arrival_earliest,
                payout.arrival_latest,
            )
        else:
            out.pop((payout.tenant_id, payout.refund_id), None)
    return out

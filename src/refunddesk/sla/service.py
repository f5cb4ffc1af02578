"""Reading clocks, counting customer contacts, and filling in clocks for older refunds."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict, defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select, tuple_, update
from sqlalchemy.orm import Session

from refunddesk.core.errors import NotFound
from refunddesk.db.keys import keys_in
from refunddesk.db.uow import Database
from refunddesk.refunds.domain import EventType, RefundStatus
from refunddesk.refunds.orm import Refund, RefundEvent
from refunddesk.sla import domain
from refunddesk.sla.config import Jurisdiction
from refunddesk.sla.domain import ClockView
from refunddesk.sla.maintain import write_moves
from refunddesk.sla.orm import RefundClock
from refunddesk.sla.settings import settings_of

__all__ = ["ClockView", "backfill", "clocks_for", "count_lookup", "record_contact"]

log = logging.getLogger(__name__)

# Look-ups of one refund within this span count as one contact.
CONTACT_WINDOW = timedelta(hours=1)


def clocks_for(
    session: Session, *, tenant_id: str, refund_ids: Sequence[str], now: datetime
) -> dict[str, list[ClockView]]:
    """Each refund's clocks at `now` (an empty list for a refund without clocks)."""
    out: dict[str, list[ClockView]] = {rid: [] for rid in refund_ids}
    if not refund_ids:
        return out
    rows = session.execute(
        select(RefundClock.refund_id, RefundClock.clocks, RefundClock.jurisdiction).where(
            keys_in((RefundClock.tenant_id, RefundClock.refund_id), [(tenant_id, r) for r in out])
        )
    ).all()
    if not rows:
        return out
    settings = settings_of(session, tenant_id)
    for row in rows:
        rules = settings.rules(Jurisdiction(row.jurisdiction))
        out[row.refund_id] = domain.views(domain.load(row.clocks), now=now, rules=rules)
    return out


def clocks_of(
    session: Session, *, tenant_id: str, refund_id: str, now: datetime
) -> tuple[str, int, list[ClockView]]:
    """One refund's jurisdiction, contact count and clocks; NotFound for another tenant's."""
    exists = session.scalar(
        select(Refund.id).where(Refund.tenant_id == tenant_id, Refund.id == refund_id)
    )
    if exists is None:
        raise NotFound(f"no refund {refund_id}")
    row = session.execute(
        select(RefundClock.jurisdiction, RefundClock.contacts).where(
            RefundClock.tenant_id == tenant_id, RefundClock.refund_id == refund_id
        )
    ).first()
    views = clocks_for(session, tenant_id=tenant_id, refund_ids=[refund_id], now=now)[refund_id]
    if row is None:
        return str(Jurisdiction.NONE), 0, views
    return row.jurisdiction, row.contacts, views


def _count(session: Session, tenant_id: str, refund_id: str, now: datetime, window: bool) -> int:
    where = [RefundClock.tenant_id == tenant_id, RefundClock.refund_id == refund_id]
    if window:
        where.append(
            or_(
                RefundClock.last_contact_at.is_(None),
                RefundClock.last_contact_at <= now - CONTACT_WINDOW,
            )
        )
    # The scan looks at the refund now: the contact may have crossed the tenant's threshold.
    changed = session.execute(  # type: ignore[attr-defined]
        update(RefundClock)
        .where(and_(*where))
        .values(contacts=RefundClock.contacts + 1, last_contact_at=now, next_check_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    return int(changed or 0)


def record_contact(session: Session, *, tenant_id: str, refund_id: str, now: datetime) -> int:
    """An agent logged a customer contact about the refund; return the refund's count."""
    exists = session.scalar(
        select(Refund.id).where(Refund.tenant_id == tenant_id, Refund.id == refund_id)
    )
    if exists is None:
        raise NotFound(f"no refund {refund_id}")
    _count(session, tenant_id, refund_id, now, window=False)
    count = session.scalar(
        select(RefundClock.contacts).where(
            RefundClock.tenant_id == tenant_id, RefundClock.refund_id == refund_id
        )
    )
    return int(count or 0)


_recent: OrderedDict[str, datetime] = OrderedDict()
_recent_lock = threading.Lock()


def _seen_lately(reference: str, now: datetime) -> bool:
    """Counted by this process within the window? (spares a write per page refresh)"""
    with _recent_lock:
        last = _recent.get(reference)
        if last is not None and now - last < CONTACT_WINDOW and now >= last:
            return True
        _recent[reference] = now
        _recent.move_to_end(reference)
        while len(_recent) > 10_000:
            _recent.popitem(last=False)
        return False


def count_lookup(db: Database, *, reference: str, now: datetime) -> None:
    """A customer looked the refund up (tracking): one contact per refund per hour.

    Never fails the look-up: the count is a signal for escalation, not the answer.
    """
    if _seen_lately(reference, now):
        return
    try:
        with db.write() as session:
            row = session.execute(
                select(Refund.tenant_id, Refund.id).where(Refund.reference == reference)
            ).first()
            if row is not None:
                _count(session, row.tenant_id, row.id, now, window=True)
    except Exception:
        log.exception("could not count a tracking look-up of %s", reference)


def backfill(db: Database, *, tenant_id: str | None = None, batch: int = 500) -> int:
    """Give refunds stored before the clocks existed their clocks, replayed from their events."""
    done, after = 0, ("", "")
    while True:
        with db.write() as session:
            query = (
                select(Refund.tenant_id, Refund.id)
                .outerjoin(
                    RefundClock,
                    (RefundClock.tenant_id == Refund.tenant_id)
                    & (RefundClock.refund_id == Refund.id),
                )
                .where(
                    RefundClock.refund_id.is_(None),
                    tuple_(Refund.tenant_id, Refund.id) > tuple_(*after),
                )
                .order_by(Refund.tenant_id, Refund.id)
                .limit(batch)
            )
            if tenant_id is not None:
                query = query.where(Refund.tenant_id == tenant_id)
            keys = [(r.tenant_id, r.id) for r in session.execute(query)]
            if not keys:
                return done
            after = keys[-1]
            moves: dict[tuple[str, str], list[tuple[RefundStatus, datetime]]] = defaultdict(list)
            events = (
                select(
                    RefundEvent.tenant_id,
                    RefundEvent.refund_id,
                    RefundEvent.to_status,
                    RefundEvent.at,
                )
                .where(
                    keys_in((RefundEvent.tenant_id, RefundEvent.refund_id), keys),
                    RefundEvent.type.in_(_MOVES),
                )
                .order_by(RefundEvent.tenant_id, RefundEvent.refund_id, RefundEvent.seq)
            )
            for e in session.execute(events):
                moves[(e.tenant_id, e.refund_id)].append((RefundStatus(e.to_status), e.at))
            done += write_moves(session.connection(), dict(moves))


_MOVES = [str(EventType.REQUESTED), str(EventType.STATUS_CHANGED)]

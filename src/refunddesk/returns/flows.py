"""The warehouse scan feed applied to a tenant's returns, parcel by parcel."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from refunddesk.core.clock import Clock
from refunddesk.core.errors import DomainError
from refunddesk.core.ids import new_id
from refunddesk.db.uow import Database
from refunddesk.returns import service
from refunddesk.returns.orm import ScanException
from refunddesk.returns.scanfeed import BadRow, ScanFeed, ScanRow, match, receipt_of

log = logging.getLogger(__name__)

UNMATCHED = "unmatched"
BAD_ROW = "bad_row"
ERROR = "error"


@dataclass
class ScanReport:
    """What became of every row of a feed; nothing is dropped without being listed here."""

    received: list[dict[str, Any]] = field(default_factory=list)
    unmatched: list[dict[str, Any]] = field(default_factory=list)
    bad_rows: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)

    @property
    def all_handled(self) -> bool:
        return not (self.unmatched or self.bad_rows or self.errors)

    def as_data(self) -> dict[str, list[dict[str, Any]]]:
        return {
            "received": self.received,
            "unmatched": self.unmatched,
            "bad_rows": self.bad_rows,
            "errors": self.errors,
        }


def _row_exception(
    tenant_id: str, source: str, kind: str, row: ScanRow, reason: str, clock: Clock
) -> ScanException:
    return ScanException(
        tenant_id=tenant_id,
        id=new_id(),
        kind=kind,
        source=source[:500],
        line=row.line,
        tracking_number=row.tracking_number[:100],
        sku=row.sku[:100],
        quantity=row.quantity,
        condition=str(row.condition),
        raw=None,
        reason=reason,
        created_at=clock.now(),
    )


def _bad_exception(tenant_id: str, source: str, bad: BadRow, clock: Clock) -> ScanException:
    return ScanException(
        tenant_id=tenant_id,
        id=new_id(),
        kind=BAD_ROW,
        source=source[:500],
        line=bad.line,
        tracking_number=None,
        sku=None,
        quantity=None,
        condition=None,
        raw=list(bad.raw),
        reason=bad.reason,
        created_at=clock.now(),
    )


def _store(db: Database, rows: Iterable[ScanException]) -> None:
    rows = list(rows)
    if rows:
        with db.write() as session:
            session.add_all(rows)


def receive_scan_feed(
    *,
    db: Database,
    clock: Clock,
    tenant_id: str,
    feed: ScanFeed,
    source: str,
    actor: str,
    on_parcel: Callable[[str], None] | None = None,
) -> ScanReport:
    """Receive each parcel of the feed that matches one of the tenant's returns.

    One write transaction per parcel: a parcel that is refused (over-receipt, a return
    already received, lost or expired) is reported and the rest go on. Unknown tracking
    numbers, bad rows and refused parcels are stored in return_scan_exceptions before this
    returns, so none is lost.
    """
    report = ScanReport()
    for bad in feed.bad_rows:
        report.bad_rows.append({"line": bad.line, "reason": bad.reason, "raw": list(bad.raw)})
    with db.read() as session:
        known = service.refund_ids_by_tracking(
            session, tenant_id=tenant_id, tracking_numbers={r.tracking_number for r in feed.rows}
        )
    parcels, unmatched = match(feed.rows, known)
    for row in unmatched:
        report.unmatched.append(
            {
                "line": row.line,
                "tracking_number": row.tracking_number,
                "sku": row.sku,
                "quantity": row.quantity,
                "condition": str(row.condition),
            }
        )
    # Store what cannot be applied first: a crash halfway through the parcels loses nothing.
    _store(
        db,
        [_bad_exception(tenant_id, source, bad, clock) for bad in feed.bad_rows]
        + [
            _row_exception(tenant_id, source, UNMATCHED, row, "unknown tracking number", clock)
            for row in unmatched
        ],
    )
    for tracking, rows in parcels.items():
        receipt = receipt_of(tracking, rows)
        try:
            with db.write() as session:
                record = service.receive(
                    session,
                    clock=clock,
                    tenant_id=tenant_id,
                    refund_id=known[tracking],
                    quantities=receipt.quantities,
                    conditions=receipt.conditions,
                    actor=actor,
                )
                report.received.append(
                    {
                        "tracking_number": tracking,
                        "refund_id": record.refund_id,
                        "return_id": record.id,
                        "lines": list(receipt.lines),
                        "quantities": dict(receipt.quantities),
                    }
                )
        except Exception as exc:  # per parcel: report it, store it, go on with the next
            reason = exc.detail if isinstance(exc, DomainError) else f"{type(exc).__name__}: {exc}"
            if not isinstance(exc, DomainError):
                log.exception("receiving parcel %s failed", tracking)
            report.errors.append(
                {
                    "tracking_number": tracking,
                    "refund_id": known[tracking],
                    "lines": list(receipt.lines),
                    "error": getattr(exc, "code", "error"),
                    "reason": reason,
                }
            )
            _store(db, [_row_exception(tenant_id, source, ERROR, r, reason, clock) for r in rows])
        if on_parcel is not None:
            on_parcel(tracking)
    return report


def list_exceptions(session: Session, *, tenant_id: str, limit: int = 100) -> list[ScanException]:
    """The tenant's stored scan exceptions, newest first."""
    return list(
        session.scalars(
            select(ScanException)
            .where(ScanException.tenant_id == tenant_id)
            .order_by(ScanException.created_at.desc(), ScanException.id.desc())
            .limit(limit)
        )
    )

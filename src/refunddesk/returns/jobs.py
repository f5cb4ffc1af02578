"""Timed work on returns: expire those whose goods never left before the deadline."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from refunddesk.core.clock import Clock
from refunddesk.core.errors import DomainError
from refunddesk.db.uow import Database
from refunddesk.returns import service

log = logging.getLogger(__name__)

SYSTEM = "system:return-expiry"
EXPIRY_INTERVAL_SECONDS = 60.0


@dataclass
class ExpiryReport:
    """Refund ids whose return expired now, and those that could not be expired, with why."""

    expired: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)


def expire_overdue(*, db: Database, clock: Clock, batch: int = 500) -> ExpiryReport:
    """Expire every authorized return past its deadline and cancel its refund.

    One write transaction per return, so one that fails (say, its refund moved meanwhile)
    is reported and skipped while the rest go on.
    """
    report = ExpiryReport()
    with db.read() as session:
        due = service.overdue(session, now=clock.now(), limit=batch)
    for tenant_id, refund_id in due:
        try:
            with db.write() as session:
                service.expire(
                    session, clock=clock, tenant_id=tenant_id, refund_id=refund_id, actor=SYSTEM
                )
        except DomainError as exc:
            report.errors[refund_id] = exc.detail
        except Exception as exc:  # one bad row must not stop the batch
            log.exception("could not expire the return of refund %s", refund_id)
            report.errors[refund_id] = f"{type(exc).__name__}: {exc}"
        else:
            report.expired.append(refund_id)
    if report.expired or report.errors:
        log.info("returns expired: %d, errors: %d", len(report.expired), len(report.errors))
    return report

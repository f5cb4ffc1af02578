"""Wire the escalation scan into the worker: one Periodic task."""

from __future__ import annotations

from typing import TYPE_CHECKING

from refunddesk.escalation.scan import scan
from refunddesk.jobs.worker import Periodic

if TYPE_CHECKING:
    from refunddesk.bootstrap import Container


def install(container: Container) -> None:
    """Add the escalation scan to the worker's periodic tasks."""
    s = container.settings
    db, clock = container.db, container.clock
    container.periodic.append(
        Periodic(
            s.escalation_scan_interval_seconds,
            lambda: scan(db=db, clock=clock, public_url=s.public_url),
            "escalate refunds near or past their SLA, and untouched escalations",
        )
    )

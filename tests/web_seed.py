"""A small desk for the web page tests: two retailers, refunds in several states, a dead job."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from refunddesk.auth.domain import Role
from refunddesk.bootstrap import Container
from refunddesk.jobs import queue
from refunddesk.jobs.orm import Job
from refunddesk.refunds import service as refunds
from refunddesk.refunds.schemas import RefundCreate
from tests.console_support import make_user
from tests.factories import Factory

OLD = {"purchased_at": "2026-01-10T10:00:00Z", "delivered_at": "2026-01-12T10:00:00Z"}


@dataclass
class Seed:
    reference: str  # a paid refund of tracked_email's order
    tracked_email: str
    admin_key: str
    agent_key: str
    admin_email: str  # a desk admin user (password tests.console_support.PASSWORD)
    agent_email: str  # an agent of Northwind Outfitters
    dead_job_id: int
    tenant_ids: dict[str, str] = field(default_factory=dict)
    # tenant name -> status -> count
    expected: dict[str, dict[str, int]] = field(default_factory=dict)


def _refund(c: Container, tenant_id: str, order: str, amount: int) -> tuple[str, str]:
    with c.db.write() as session:
        refund, _ = refunds.request_refund(
            session,
            clock=c.clock,
            config=c.intake,
            tenant_id=tenant_id,
            data=RefundCreate.model_validate(
                {"order_id": order, "amount_minor": amount, "reason": "damaged"}
            ),
            actor="agent:seed",
        )
        return refund.id, refund.reference


def _user(c: Container, email: str, **kwargs: Any) -> str:
    make_user(c, email, **kwargs)
    return email


def seed_desk(container: Container) -> Seed:
    c, f = container, Factory(container)
    north = f.tenant("Northwind Outfitters", "EUR", "Europe/Berlin")
    maple = f.tenant("Maple Home Goods", "USD", "America/New_York")
    sakura = f.tenant("Sakura Electronics", "JPY", "Asia/Tokyo")  # no refunds yet

    email = "ada.lovelace@example.com"
    paid_order = f.order(north.id, customer={"email": email, "name": "Ada Lovelace", "phone": None})
    _, reference = _refund(c, north.id, paid_order, 1250)
    _refund(c, maple.id, f.order(maple.id, currency="USD"), 990)
    c.worker().drain()  # both approved refunds are paid

    _refund(c, north.id, f.order(north.id, **OLD), 700)  # pending_review
    rejected_id, _ = _refund(c, north.id, f.order(north.id, **OLD), 500)
    with c.db.write() as session:
        refunds.reject(
            session,
            clock=c.clock,
            tenant_id=north.id,
            refund_id=rejected_id,
            actor="agent:seed",
            reason="outside the return window",
        )
    canceled_id, _ = _refund(c, maple.id, f.order(maple.id, currency="USD", **OLD), 300)
    with c.db.write() as session:
        refunds.cancel(
            session, clock=c.clock, tenant_id=maple.id, refund_id=canceled_id, actor="agent:seed"
        )
    _refund(c, maple.id, f.order(maple.id, currency="USD"), 450)  # approved, payout queued

    with c.db.write() as session:
        now = c.clock.now()
        job = Job(
            kind="notify.email",
            payload={"to": "x"},
            tenant_id=None,
            status=queue.QUEUED,
            attempts=3,
            max_attempts=3,
            run_at=now,
            locked_until=None,
            locked_by=None,
            last_error=None,
            dedupe_key=None,
            created_at=now,
            updated_at=now,
        )
        session.add(job)
        session.flush()
        queue.bury(session, job.id, error="SMTP 554: relay refused", now=now)
        dead_id = job.id

    return Seed(
        reference=reference,
        tracked_email=email,
        admin_key=f.key(None, Role.ADMIN),
        agent_key=f.key(north.id, Role.AGENT),
        admin_email=_user(c, "admin@desk.example", admin=True),
        agent_email=_user(c, "agent@desk.example", roles={north.id: Role.AGENT}),
        dead_job_id=dead_id,
        tenant_ids={
            "Northwind Outfitters": north.id,
            "Maple Home Goods": maple.id,
            "Sakura Electronics": sakura.id,
        },
        expected={
            "Northwind Outfitters": {"succeeded": 1, "pending_review": 1, "rejected": 1},
            "Maple Home Goods": {"succeeded": 1, "canceled": 1, "approved": 1},
            "Sakura Electronics": {},
        },
    )

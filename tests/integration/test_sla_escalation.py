"""SLA clocks and escalations against a real database, across every path that moves a refund."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from refunddesk.bootstrap import Container
from refunddesk.core.clock import FrozenClock
from refunddesk.core.errors import Forbidden, NotFound
from refunddesk.escalation import service as escalations
from refunddesk.escalation.orm import Escalation
from refunddesk.escalation.scan import scan
from refunddesk.notifications.orm import Message
from refunddesk.payouts.gateways.sandbox import SandboxGateway
from refunddesk.refunds import service as refunds
from refunddesk.refunds.orm import Refund
from refunddesk.sla import service as sla
from refunddesk.sla.config import Tier
from refunddesk.sla.orm import RefundClock
from refunddesk.tracking.service import track
from tests.factories import Factory, TenantHandle
from tests.integration.returns_support import awaiting_return, returns_tenant
from tests.integration.support import event_trail, request

AGENT = "agent:test"
# Berlin desk hours 09:00-17:00 Mon-Fri; small targets so a test day covers them.
SLA_POLICY = """\
format: 1
name: SLA test
currency: EUR
sla:
  targets: {decision: 4, payout: 8, total: 16}
  warn_at: 0.5
  jurisdiction: eu
escalation:
  reescalate_after_hours: 2
  finance_email: finance@retailer.example
  notify:
    l2: [supervisor@desk.example]
  contact_threshold: 3
"""
OLD = {"purchased_at": "2026-08-01T10:00:00Z", "delivered_at": "2026-08-03T10:00:00Z"}


def _tenant(factory: Factory, name: str = "Acme", policy: str = SLA_POLICY) -> TenantHandle:
    tenant = factory.tenant(name)
    factory.policy(tenant.id, policy)
    return tenant


def _review(container: Container, factory: Factory, tenant_id: str, **order: object) -> Refund:
    """A refund outside the return window: it waits for an agent in pending_review."""
    refund, _ = request(
        container,
        tenant_id,
        order_id=factory.order(tenant_id, **{**OLD, **order}),
        amount_minor=1000,
    )
    assert refund.status == "pending_review"
    return refund


def _row(container: Container, tenant_id: str, refund_id: str) -> RefundClock:
    with container.db.read() as session:
        row = session.get(RefundClock, (tenant_id, refund_id))
        assert row is not None, "every refund has a clock row"
        session.expunge(row)
        return row


def _clocks(container: Container, tenant_id: str, refund_id: str) -> dict[str, sla.ClockView]:
    with container.db.read() as session:
        views = sla.clocks_for(
            session, tenant_id=tenant_id, refund_ids=[refund_id], now=container.clock.now()
        )[refund_id]
    return {v.name: v for v in views}


def _open(container: Container, tenant_id: str, refund_id: str) -> Escalation | None:
    with container.db.read() as session:
        esc = escalations.open_escalation(session, tenant_id=tenant_id, refund_id=refund_id)
        if esc is not None:
            session.expunge(esc)
        return esc


def _scan(container: Container) -> None:
    report = scan(db=container.db, clock=container.clock)
    assert report.errors == 0, report.failures


def test_intake_auto_approval_and_the_workers_payout_run_and_stop_the_clocks(
    container: Container, factory: Factory, clock: FrozenClock
) -> None:
    tenant = _tenant(factory)
    refund, _ = request(container, tenant.id, order_id=factory.order(tenant.id), amount_minor=500)
    assert refund.status == "approved"
    row = _row(container, tenant.id, refund.id)
    assert row.status == "approved"
    assert row.jurisdiction == "eu"
    views = _clocks(container, tenant.id, refund.id)
    assert views["decision"].state == "stopped"
    assert not views["decision"].breached
    assert views["payout"].state == "running"
    # Friday 13:00 Berlin + 8 business hours (4 today, 4 on Monday) = Monday 13:00 Berlin.
    assert views["payout"].due_at == datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    assert row.next_due_at == views["payout"].due_at
    clock.advance(timedelta(minutes=5))
    container.worker().drain()
    row = _row(container, tenant.id, refund.id)
    assert row.status == "succeeded"
    assert row.next_due_at is None  # no clock runs any more
    views = _clocks(container, tenant.id, refund.id)
    assert {v.state for v in views.values()} == {"stopped"}
    assert not any(v.breached for v in views.values())


def test_approving_a_reviewed_refund_stops_the_decision_clock_and_starts_the_payout_clock(
    container: Container, factory: Factory, clock: FrozenClock
) -> None:
    tenant = _tenant(factory)
    refund = _review(container, factory, tenant.id)
    assert _clocks(container, tenant.id, refund.id)["decision"].state == "running"
    clock.advance(timedelta(hours=1))
    with container.db.write() as session:
        refunds.approve(
            session,
            clock=clock,
            config=container.intake,
            tenant_id=tenant.id,
            refund_id=refund.id,
            actor=AGENT,
        )
    views = _clocks(container, tenant.id, refund.id)
    assert views["decision"].state == "stopped"
    assert views["decision"].remaining_seconds == 3 * 3600  # 1 of its 4 hours used
    assert views["payout"].state == "running"


def test_waiting_for_the_goods_pauses_the_desks_clocks_and_receipt_resumes_them(
    container: Container, factory: Factory, clock: FrozenClock
) -> None:
    tenant = returns_tenant(container, factory)
    refund = awaiting_return(container, factory, tenant.id)
    views = _clocks(container, tenant.id, refund.id)
    assert views["decision"].paused
    assert views["total"].paused
    left = views["decision"].remaining_seconds
    clock.advance(timedelta(days=3))  # the customer takes their time: not the desk's
    from refunddesk.returns import service as returns

    with container.db.write() as session:
        returns.receive(
            session,
            clock=clock,
            tenant_id=tenant.id,
            refund_id=refund.id,
            quantities={"SKU-A": 2, "SKU-B": 1},
            conditions={"SKU-A": "used", "SKU-B": "used"},
            actor=AGENT,
        )
    views = _clocks(container, tenant.id, refund.id)
    assert views["decision"].state == "running"
    assert views["decision"].remaining_seconds == left


def test_a_failed_payout_escalates_on_the_next_scan(
    container: Container, factory: Factory, clock: FrozenClock, sandbox: SandboxGateway
) -> None:
    tenant = _tenant(factory)
    sandbox.failure_rate = 1.0
    refund, _ = request(container, tenant.id, order_id=factory.order(tenant.id), amount_minor=500)
    clock.advance(timedelta(minutes=1))
    container.worker().drain()
    assert _row(container, tenant.id, refund.id).status == "failed"
    _scan(container)
    esc = _open(container, tenant.id, refund.id)
    assert esc is not None
    assert esc.reason == "payout_failed"
    assert esc.tier == "l1"
    _scan(container)  # a second pass finds nothing new
    with container.db.read() as session:
        assert len(escalations.list_escalations(session, tenant_id=tenant.id)[0]) == 1


def test_a_stalled_refund_escalates_before_it_breaches_and_climbs_when_left_alone(
    container: Container, factory: Factory, clock: FrozenClock
) -> None:
    tenant = _tenant(factory)
    refund = _review(container, factory, tenant.id)  # Friday 13:00 Berlin, 4h to decide
    due = _clocks(container, tenant.id, refund.id)["decision"].due_at
    assert due == datetime(2026, 11, 20, 16, 0, tzinfo=UTC)  # 17:00 Berlin
    clock.advance(timedelta(hours=1, minutes=59))
    _scan(container)
    assert _open(container, tenant.id, refund.id) is None  # under half the target used
    clock.advance(timedelta(minutes=2))  # past 50%: near breach, 2 hours before the deadline
    _scan(container)
    esc = _open(container, tenant.id, refund.id)
    assert esc is not None
    assert esc.reason == "near_breach"
    assert esc.tier == "l1"
    assert clock.now() < due
    assert ("escalation.opened", "pending_review") in event_trail(container, tenant.id, refund.id)
    # Untouched for 2 business hours: 17:01 Friday is after hours, so Monday 09:01 Berlin.
    assert esc.escalate_at == datetime(2026, 11, 23, 8, 1, tzinfo=UTC)
    clock.advance(timedelta(hours=2))  # the deadline passes: the same escalation goes up
    _scan(container)
    esc = _open(container, tenant.id, refund.id)
    assert esc is not None
    assert esc.tier == "l2"
    with container.db.read() as session:
        sent = list(
            session.scalars(select(Message.recipient).where(Message.tenant_id == tenant.id))
        )
    assert sent == ["supervisor@desk.example"]
    clock.advance(timedelta(days=3))  # Monday evening, nobody touched it
    _scan(container)
    esc = _open(container, tenant.id, refund.id)
    assert esc is not None
    assert esc.tier == "finance"
    assert esc.escalate_at is None  # nobody above finance
    with container.db.read() as session:
        to = set(session.scalars(select(Message.recipient).where(Message.tenant_id == tenant.id)))
    assert "finance@retailer.example" in to


def test_a_note_restarts_the_untouched_timer(
    container: Container, factory: Factory, clock: FrozenClock
) -> None:
    tenant = _tenant(factory)
    refund = _review(container, factory, tenant.id)
    with container.db.write() as session:
        esc = escalations.escalate(
            session,
            tenant_id=tenant.id,
            refund_id=refund.id,
            tier=Tier.L1,
            reason="customer called twice",
            actor=AGENT,
            now=clock.now(),
        )
        first_due = esc.escalate_at
        esc_id = esc.id
    assert first_due is not None
    clock.advance(timedelta(hours=1))
    with container.db.write() as session:
        escalations.add_note(
            session,
            tenant_id=tenant.id,
            escalation_id=esc_id,
            body="on it",
            actor=AGENT,
            now=clock.now(),
        )
    clock.advance(timedelta(hours=1, minutes=30))  # past the first time, not the new one
    _scan(container)
    with container.db.read() as session:
        esc = escalations.get(session, tenant_id=tenant.id, escalation_id=esc_id)
        assert esc.tier in ("l1", "l2")
        assert esc.escalate_at is not None
        assert esc.escalate_at > first_due


def test_resolution_is_limited_by_tier_and_closes_the_escalation(
    container: Container, factory: Factory, clock: FrozenClock
) -> None:
    tenant = _tenant(factory)
    refund = _review(container, factory, tenant.id)
    with container.db.write() as session:
        esc = escalations.escalate(
            session,
            tenant_id=tenant.id,
            refund_id=refund.id,
            tier=Tier.L2,
            reason="odd",
            actor=AGENT,
            now=clock.now(),
        )
        esc_id = esc.id
    with pytest.raises(Forbidden), container.db.write() as session:
        escalations.resolve(
            session,
            tenant_id=tenant.id,
            escalation_id=esc_id,
            resolution="done",
            actor=AGENT,
            now=clock.now(),
            allowed_tiers=(Tier.L1,),
        )
    with container.db.write() as session:
        escalations.resolve(
            session,
            tenant_id=tenant.id,
            escalation_id=esc_id,
            resolution="paid by hand",
            actor="supervisor:x",
            now=clock.now(),
        )
    assert _open(container, tenant.id, refund.id) is None
    assert ("escalation.resolved", "pending_review") in event_trail(container, tenant.id, refund.id)


def test_tenants_see_neither_each_others_clocks_nor_escalations(
    container: Container, factory: Factory, clock: FrozenClock
) -> None:
    acme, other = _tenant(factory), _tenant(factory, "Other")
    refund = _review(container, factory, acme.id)
    with container.db.write() as session:
        esc = escalations.escalate(
            session,
            tenant_id=acme.id,
            refund_id=refund.id,
            tier=Tier.L1,
            reason="x",
            actor=AGENT,
            now=clock.now(),
        )
        esc_id = esc.id
    with container.db.read() as session:
        assert sla.clocks_for(
            session, tenant_id=other.id, refund_ids=[refund.id], now=clock.now()
        ) == {refund.id: []}
        with pytest.raises(NotFound):
            escalations.get(session, tenant_id=other.id, escalation_id=esc_id)
        assert escalations.list_escalations(session, tenant_id=other.id)[0] == []
    with pytest.raises(NotFound), container.db.write() as session:
        escalations.escalate(
            session,
            tenant_id=other.id,
            refund_id=refund.id,
            tier=Tier.L1,
            reason="x",
            actor=AGENT,
            now=clock.now(),
        )


def test_customers_never_see_escalations_on_their_timeline(
    container: Container, factory: Factory, clock: FrozenClock
) -> None:
    tenant = _tenant(factory)
    refund = _review(
        container, factory, tenant.id, customer={"email": "ada@example.com", "name": "A"}
    )
    with container.db.write() as session:
        escalations.escalate(
            session,
            tenant_id=tenant.id,
            refund_id=refund.id,
            tier=Tier.L2,
            reason="internal: suspicious customer",
            actor=AGENT,
            now=clock.now(),
        )
    with container.db.read() as session:
        view = track(session, reference=refund.reference, email="ada@example.com", now=clock.now())
    words = " ".join(e.text for e in view.timeline)
    assert "suspicious" not in words
    assert "escalat" not in words.lower()
    assert len(view.timeline) == 2  # received, with our team for review


def test_repeated_tracking_lookups_count_once_an_hour_and_escalate_at_the_threshold(
    container: Container, factory: Factory, clock: FrozenClock
) -> None:
    tenant = _tenant(factory)
    refund = _review(container, factory, tenant.id)
    for _ in range(5):  # one customer refreshing the page
        sla.count_lookup(container.db, reference=refund.reference, now=clock.now())
    assert _row(container, tenant.id, refund.id).contacts == 1
    for _ in range(2):
        clock.advance(timedelta(minutes=61))
        sla.count_lookup(container.db, reference=refund.reference, now=clock.now())
    assert _row(container, tenant.id, refund.id).contacts == 3
    _scan(container)
    reasons = {e.reason for e in _all(container, tenant.id)}
    assert "repeated_contact" in reasons or "near_breach" in reasons
    esc = _open(container, tenant.id, refund.id)
    assert esc is not None
    with container.db.read() as session:
        notes = escalations.notes_of(session, tenant_id=tenant.id, escalation_id=esc.id)
    assert "3 times" in esc.detail + " ".join(n.body for n in notes)


def _all(container: Container, tenant_id: str) -> list[Escalation]:
    with container.db.read() as session:
        rows, _ = escalations.list_escalations(session, tenant_id=tenant_id)
        session.expunge_all()
        return rows


def test_vip_and_high_value_rules_fire_once_for_a_new_refund(
    container: Container, factory: Factory, clock: FrozenClock
) -> None:
    policy = SLA_POLICY + (
        "  vip: [VIP@Example.com]\n  high_value_minor: 900\n"
        "  rules: {high_value: finance, vip: l1}\n"
    )
    tenant = _tenant(factory, policy=policy)
    refund = _review(
        container, factory, tenant.id, customer={"email": "vip@example.com", "name": "V"}
    )
    _scan(container)
    esc = _open(container, tenant.id, refund.id)
    assert esc is not None
    assert esc.tier == "finance"
    assert esc.reason == "high_value"
    assert "VIP" in esc.detail
    _scan(container)
    assert len(_all(container, tenant.id)) == 1


def test_the_shipping_country_picks_the_law(
    container: Container, factory: Factory, clock: FrozenClock
) -> None:
    tenant = _tenant(factory)
    address = {"line1": "1 Main St", "country": "US"}
    refund = _review(container, factory, tenant.id, shipping_address=address)
    assert _row(container, tenant.id, refund.id).jurisdiction == "us"
    legal = _clocks(container, tenant.id, refund.id)["legal"]
    # 7 working days (Mon-Fri) after Friday 20 Nov: to the end of Tuesday 1 Dec, in the
    # tenant's zone (Berlin).
    assert legal.due_at == datetime(2026, 12, 1, 23, 0, tzinfo=UTC)
    assert "FTC" in legal.basis


def test_one_refund_has_at_most_one_open_escalation(
    container: Container, factory: Factory, clock: FrozenClock
) -> None:
    tenant = _tenant(factory)
    refund = _review(container, factory, tenant.id)
    row = {
        "tenant_id": tenant.id,
        "refund_id": refund.id,
        "tier": "l1",
        "reason": "manual",
        "detail": "x",
        "status": "open",
        "created_by": AGENT,
        "created_at": clock.now(),
        "updated_at": clock.now(),
        "touched_at": clock.now(),
        "note_count": 0,
    }
    with container.db.write() as session:
        session.execute(insert(Escalation), [row | {"id": "A" * 26}])
    with pytest.raises(IntegrityError), container.db.write() as session:
        session.execute(insert(Escalation), [row | {"id": "B" * 26}])


def test_backfill_gives_older_refunds_their_clocks(
    container: Container, factory: Factory, clock: FrozenClock
) -> None:
    tenant = _tenant(factory)
    refund = _review(container, factory, tenant.id)
    with container.db.write() as session:
        session.execute(
            RefundClock.__table__.delete().where(RefundClock.tenant_id == tenant.id)  # type: ignore[attr-defined]
        )
    assert sla.backfill(container.db) == 1
    assert _row(container, tenant.id, refund.id).status == "pending_review"
    assert sla.backfill(container.db) == 0


def test_one_broken_refund_never_stops_the_pass(
    container: Container, factory: Factory, clock: FrozenClock
) -> None:
    tenant = _tenant(factory)
    good = _review(container, factory, tenant.id)
    bad = _review(container, factory, tenant.id)
    with container.db.write() as session:
        row = session.get(RefundClock, (tenant.id, bad.id))
        assert row is not None
        row.clocks = {"decision": {"state": "running"}}  # unreadable: no start, no target
    clock.advance(timedelta(hours=3))
    report = scan(db=container.db, clock=container.clock)
    assert report.errors == 1
    assert bad.id in report.failures[0]
    assert _open(container, tenant.id, good.id) is not None
    assert _open(container, tenant.id, bad.id) is None
    retry = _row(container, tenant.id, bad.id).next_check_at
    assert retry is not None
    assert retry > clock.now()  # put off, not retried in a loop within the pass


@pytest.mark.postgres
def test_workers_scanning_at_once_escalate_each_refund_once(
    container: Container, factory: Factory, clock: FrozenClock, database_url: str
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite serialises writers: there is no race to test")
    import threading

    tenant = _tenant(factory)
    ids = [_review(container, factory, tenant.id).id for _ in range(30)]
    clock.advance(timedelta(hours=3))
    reports = []
    barrier = threading.Barrier(3)

    def run() -> None:
        barrier.wait()
        reports.append(scan(db=container.db, clock=container.clock, page=7))

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r.errors for r in reports) == 0
    assert sum(r.opened for r in reports) == len(ids)
    rows = _all(container, tenant.id)
    assert sorted(e.refund_id for e in rows) == sorted(ids)


def test_retailer_webhooks_hear_of_escalations_and_customers_get_no_message(
    container: Container, factory: Factory, clock: FrozenClock
) -> None:
    from refunddesk.notifications import dispatch
    from refunddesk.notifications.wiring import dispatch_config
    from refunddesk.webhooks_out import service as webhooks
    from refunddesk.webhooks_out.orm import WebhookDelivery

    tenant = _tenant(factory)
    with container.db.write() as session:
        webhooks.create_endpoint(
            session,
            clock=clock,
            tenant_id=tenant.id,
            url="http://127.0.0.1:9/hooks",
            event_types=["escalation.*"],
            allow_private=True,
        )
    refund = _review(container, factory, tenant.id)
    with container.db.write() as session:
        escalations.escalate(
            session,
            tenant_id=tenant.id,
            refund_id=refund.id,
            tier=Tier.L1,
            reason="late",
            actor=AGENT,
            now=clock.now(),
        )
    config = dispatch_config(container.settings, email_on=True, sms_on=False)
    dispatch.run(db=container.db, clock=clock, config=config)
    with container.db.read() as session:
        types = list(session.scalars(select(WebhookDelivery.event_type)))
        templates = list(
            session.scalars(select(Message.template).where(Message.refund_id == refund.id))
        )
    assert types == ["escalation.opened"]
    assert "escalation" not in templates  # no tier address configured for l1
    assert templates == ["received"]  # the customer's "we got your request", nothing else


def test_the_supervisor_summary_counts_open_escalations_breaches_and_clocks_at_risk(
    container: Container, factory: Factory, clock: FrozenClock
) -> None:
    acme, other = _tenant(factory), _tenant(factory, "Other")
    late = _review(container, factory, acme.id)
    _review(container, factory, acme.id)
    _review(container, factory, other.id)
    clock.advance(timedelta(hours=3, minutes=30))  # 16:30 Berlin: due at 17:00, 30 min left
    with container.db.read() as session:
        before = escalations.summary(session, tenant_ids=[acme.id], now=clock.now())
    assert before.at_risk == 2
    assert before.overdue == 0
    assert before.breaches_today == 0
    clock.advance(timedelta(hours=1))  # 17:30: both decision clocks are past due
    _scan(container)
    with container.db.write() as session:
        escalations.assign(
            session,
            tenant_id=acme.id,
            escalation_id=_open(container, acme.id, late.id).id,  # type: ignore[union-attr]
            owner_id="01OWNER",
            actor=AGENT,
            now=clock.now(),
        )
    with container.db.read() as session:
        after = escalations.summary(session, tenant_ids=[acme.id], now=clock.now())
        both = escalations.summary(session, tenant_ids=[acme.id, other.id], now=clock.now())
    assert after.open_by_tier == {"l1": 0, "l2": 2, "finance": 0}
    assert after.unassigned == 1
    assert after.breaches_today == 2
    assert after.overdue == 2
    assert both.open_by_tier["l2"] == 3


def test_a_refund_scored_high_risk_goes_to_a_supervisor(
    container: Container, factory: Factory, clock: FrozenClock
) -> None:
    tenant = _tenant(factory)
    refund = _review(container, factory, tenant.id)
    with container.db.write() as session:
        stored = session.get(Refund, (tenant.id, refund.id))
        assert stored is not None
        stored.risk_level, stored.risk_score = "high", 0.93
    _scan(container)
    esc = _open(container, tenant.id, refund.id)
    assert esc is not None
    assert esc.reason == "high_risk"
    assert esc.tier == "l2"
    assert "0.93" in esc.detail


def test_a_look_asked_for_by_contacts_survives_a_status_change_before_the_scan(
    container: Container, factory: Factory, clock: FrozenClock
) -> None:
    tenant = _tenant(factory)
    refund = _review(container, factory, tenant.id)
    _scan(container)  # the new refund's one-off rules: nothing
    for _ in range(3):
        with container.db.write() as session:
            sla.record_contact(session, tenant_id=tenant.id, refund_id=refund.id, now=clock.now())
    clock.advance(timedelta(minutes=5))
    with container.db.write() as session:
        refunds.approve(
            session,
            clock=clock,
            config=container.intake,
            tenant_id=tenant.id,
            refund_id=refund.id,
            actor=AGENT,
        )
    _scan(container)
    esc = _open(container, tenant.id, refund.id)
    assert esc is not None
    assert esc.reason == "repeated_contact"

"""Returns (RMA) against a real database: ship, receive, inspect, settle, expire, lose."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import select

from refunddesk.bootstrap import Container
from refunddesk.core.clock import FrozenClock
from refunddesk.core.errors import IllegalTransition, NotFound
from refunddesk.jobs.worker import Periodic, Worker
from refunddesk.orders.orm import Order
from refunddesk.refunds.domain import RefundStatus
from refunddesk.refunds.orm import Refund
from refunddesk.returns import service
from refunddesk.returns.domain import LineInspection, OverReceipt
from refunddesk.returns.jobs import expire_overdue
from refunddesk.returns.orm import ReturnRecord
from refunddesk.tracking.service import track
from tests.factories import Factory
from tests.integration.returns_support import awaiting_return, returns_tenant
from tests.integration.support import event_trail, events, payouts, refund, request

AGENT = "agent:test"


def _ship(container: Container, tenant_id: str, refund_id: str, tracking: str = "JD 0146") -> None:
    with container.db.write() as session:
        service.ship(
            session,
            clock=container.clock,
            tenant_id=tenant_id,
            refund_id=refund_id,
            carrier="DHL",
            tracking_number=tracking,
            actor="integration:test",
        )


def _receive(
    container: Container, tenant_id: str, refund_id: str, quantities: dict[str, int]
) -> None:
    with container.db.write() as session:
        service.receive(
            session,
            clock=container.clock,
            tenant_id=tenant_id,
            refund_id=refund_id,
            quantities=quantities,
            conditions={sku: "used" for sku, n in quantities.items() if n},
            actor=AGENT,
        )


def _inspect(
    container: Container,
    tenant_id: str,
    refund_id: str,
    results: dict[str, list[LineInspection]],
) -> ReturnRecord:
    with container.db.write() as session:
        return service.inspect(
            session,
            clock=container.clock,
            config=container.intake,
            tenant_id=tenant_id,
            refund_id=refund_id,
            results=results,
            actor=AGENT,
        )


def _stored(container: Container, tenant_id: str, refund_id: str) -> ReturnRecord:
    with container.db.read() as session:
        return service.get_return(session, tenant_id=tenant_id, refund_id=refund_id)


def test_a_short_shipment_with_a_rejection_and_a_partial_credit_pays_the_adjusted_amount(
    container: Container, factory: Factory
) -> None:
    # given a refund of 25.00 waiting for 2 x SKU-A (10.00 each) and 1 x SKU-B (5.00)
    tenant = returns_tenant(container, factory)
    r = awaiting_return(container, factory, tenant.id)
    # when it ships, both SKU-A arrive but SKU-B does not, and the inspector rejects one
    # SKU-A and credits the other at 50 %
    _ship(container, tenant.id, r.id, tracking="jd 0146 0000 03")
    _receive(container, tenant.id, r.id, {"SKU-A": 2})
    assert refund(container, tenant.id, r.id).status == "return_received"
    record = _inspect(
        container,
        tenant.id,
        r.id,
        {
            "SKU-A": [
                LineInspection.reject("water damage", quantity=1),
                LineInspection.partial(percent=50, reason="scratched"),
            ]
        },
    )
    # then the refund is approved at 5.00 and the worker pays exactly that
    assert record.status == "inspected"
    assert record.tracking_number == "JD0146000003"
    after = refund(container, tenant.id, r.id)
    assert (after.status, after.amount_minor) == ("approved", 500)
    assert record.settlement is not None
    assert record.settlement["refund_amount_after_minor"] == 500
    assert "short_shipment" in record.settlement["codes"]
    assert container.worker().drain() == 1
    assert refund(container, tenant.id, r.id).status == "succeeded"
    assert [(p.status, p.amount_minor) for p in payouts(container, tenant.id, r.id)] == [
        ("succeeded", 500)
    ]
    # and every step is on the refund's timeline
    trail = [t for t, _ in event_trail(container, tenant.id, r.id)]
    for expected in (
        "return.authorized",
        "return.in_transit",
        "return.received",
        "return.inspected",
        "refund.amount_adjusted",
    ):
        assert expected in trail
    received = next(e for e in events(container, tenant.id, r.id) if e.type == "return.received")
    assert {line["sku"]: line["received"] for line in received.data["lines"]} == {
        "SKU-A": 2,
        "SKU-B": 0,
    }


def test_everything_back_and_accepted_approves_the_refund_in_full(
    container: Container, factory: Factory
) -> None:
    tenant = returns_tenant(container, factory)
    r = awaiting_return(container, factory, tenant.id)
    _receive(container, tenant.id, r.id, {"SKU-A": 2, "SKU-B": 1})
    _inspect(
        container,
        tenant.id,
        r.id,
        {"SKU-A": [LineInspection.accept()], "SKU-B": [LineInspection.accept()]},
    )
    after = refund(container, tenant.id, r.id)
    assert (after.status, after.amount_minor) == ("approved", 2500)
    assert "refund.amount_adjusted" not in [t for t, _ in event_trail(container, tenant.id, r.id)]


def test_a_return_rejected_in_full_rejects_the_refund_and_pays_nothing(
    container: Container, factory: Factory
) -> None:
    tenant = returns_tenant(container, factory)
    r = awaiting_return(container, factory, tenant.id)
    _receive(container, tenant.id, r.id, {"SKU-A": 2, "SKU-B": 1})
    _inspect(
        container,
        tenant.id,
        r.id,
        {
            "SKU-A": [LineInspection.reject("not our product")],
            "SKU-B": [LineInspection.reject("used")],
        },
    )
    after = refund(container, tenant.id, r.id)
    assert (after.status, after.amount_minor) == ("rejected", 2500)
    assert container.worker().drain() == 0
    assert payouts(container, tenant.id, r.id) == []


def test_an_overdue_return_expires_and_cancels_its_refund_but_a_parcel_on_its_way_does_not(
    container: Container, factory: Factory, clock: FrozenClock
) -> None:
    tenant = returns_tenant(container, factory)
    waiting = awaiting_return(container, factory, tenant.id)
    shipped = awaiting_return(container, factory, tenant.id)
    _ship(container, tenant.id, shipped.id)
    # before the deadline nothing expires
    assert expire_overdue(db=container.db, clock=clock).expired == []
    clock.advance(timedelta(days=12))
    # the worker's periodic task runs the expiry
    container.worker().run_periodic()
    assert refund(container, tenant.id, waiting.id).status == "canceled"
    assert _stored(container, tenant.id, waiting.id).status == "expired"
    assert ("return.expired", "awaiting_return") in event_trail(container, tenant.id, waiting.id)
    assert refund(container, tenant.id, shipped.id).status == "awaiting_return"
    assert _stored(container, tenant.id, shipped.id).status == "in_transit"
    # and running it again changes nothing
    assert expire_overdue(db=container.db, clock=clock).expired == []


def test_a_lost_parcel_ends_the_return_and_flags_the_refund_for_an_agent(
    container: Container, factory: Factory
) -> None:
    tenant = returns_tenant(container, factory)
    r = awaiting_return(container, factory, tenant.id)
    _ship(container, tenant.id, r.id)
    with container.db.write() as session:
        service.mark_lost(
            session,
            clock=container.clock,
            tenant_id=tenant.id,
            refund_id=r.id,
            actor=AGENT,
            note="carrier confirmed loss",
        )
    assert _stored(container, tenant.id, r.id).status == "lost_in_transit"
    assert refund(container, tenant.id, r.id).status == "awaiting_return"
    lost = [e for e in events(container, tenant.id, r.id) if e.type == "return.lost_in_transit"]
    assert len(lost) == 1
    assert lost[0].data["note"] == "carrier confirmed loss"
    # a parcel that turns up after it was declared lost is refused, not silently received
    with pytest.raises(IllegalTransition):
        _receive(container, tenant.id, r.id, {"SKU-A": 1})


def test_illegal_moves_are_refused_and_change_nothing(
    container: Container, factory: Factory
) -> None:
    tenant = returns_tenant(container, factory)
    r = awaiting_return(container, factory, tenant.id)
    # inspecting before anything arrived
    with pytest.raises(IllegalTransition):
        _inspect(container, tenant.id, r.id, {"SKU-A": [LineInspection.accept()]})
    # more than was authorized
    with pytest.raises(OverReceipt):
        _receive(container, tenant.id, r.id, {"SKU-A": 3})
    before = len(events(container, tenant.id, r.id))
    _receive(container, tenant.id, r.id, {"SKU-A": 1})
    # a second receipt, shipping after receipt, losing after receipt
    with pytest.raises(IllegalTransition):
        _receive(container, tenant.id, r.id, {"SKU-A": 1})
    with pytest.raises(IllegalTransition):
        _ship(container, tenant.id, r.id)
    with pytest.raises(IllegalTransition), container.db.write() as session:
        service.mark_lost(
            session, clock=container.clock, tenant_id=tenant.id, refund_id=r.id, actor=AGENT
        )
    assert _stored(container, tenant.id, r.id).status == "received"
    # only the one receipt added events: the return's and the refund's move
    assert len(events(container, tenant.id, r.id)) == before + 2


def test_a_tracking_number_on_another_open_return_is_refused(
    container: Container, factory: Factory
) -> None:
    tenant = returns_tenant(container, factory)
    first = awaiting_return(container, factory, tenant.id)
    second = awaiting_return(container, factory, tenant.id)
    _ship(container, tenant.id, first.id, tracking="TRACK-1")
    with pytest.raises(service.TrackingNumberInUse):
        _ship(container, tenant.id, second.id, tracking="track-1")


def test_another_tenants_return_cannot_be_seen_or_moved(
    container: Container, factory: Factory
) -> None:
    ours = returns_tenant(container, factory, "Ours")
    theirs = returns_tenant(container, factory, "Theirs")
    r = awaiting_return(container, factory, ours.id)
    _ship(container, ours.id, r.id, tracking="OURS-1")
    with pytest.raises(NotFound), container.db.read() as session:
        service.get_return(session, tenant_id=theirs.id, refund_id=r.id)
    with pytest.raises(NotFound):
        _receive(container, theirs.id, r.id, {"SKU-A": 1})
    with container.db.read() as session:
        found = service.refund_ids_by_tracking(
            session, tenant_id=theirs.id, tracking_numbers=["OURS-1"]
        )
    assert found == {}
    assert _stored(container, ours.id, r.id).status == "in_transit"


def test_a_refund_without_a_return_has_none_to_show(container: Container, factory: Factory) -> None:
    tenant = factory.tenant()  # the default policy refunds at once
    r, _ = request(container, tenant.id, order_id=factory.order(tenant.id), amount_minor=100)
    with pytest.raises(service.NoReturn), container.db.read() as session:
        service.get_return(session, tenant_id=tenant.id, refund_id=r.id)


def test_the_stored_return_reads_back_as_the_same_aggregate(
    container: Container, factory: Factory
) -> None:
    tenant = returns_tenant(container, factory)
    r = awaiting_return(container, factory, tenant.id)
    _receive(container, tenant.id, r.id, {"SKU-A": 2, "SKU-B": 1})
    _inspect(
        container,
        tenant.id,
        r.id,
        {
            "SKU-A": [
                LineInspection.partial(credit_minor=150, quantity=1),
                LineInspection.accept(),
            ],
            "SKU-B": [LineInspection.accept()],
        },
    )
    with container.db.read() as session:
        record = session.scalars(select(ReturnRecord).where(ReturnRecord.refund_id == r.id)).one()
        rma = service.to_domain(record)
    assert rma.status == "inspected"
    assert {s: p.quantity for s, p in rma.received.items()} == {"SKU-A": 2, "SKU-B": 1}
    assert [(p.outcome, p.quantity, p.credit_minor) for p in rma.inspection["SKU-A"]] == [
        ("partial", 1, 150),
        ("accept", 1, 1000),
    ]
    assert refund(container, tenant.id, r.id).amount_minor == 150 + 1000 + 500


def test_the_customer_tracking_page_tells_the_return_in_plain_words(
    container: Container, factory: Factory
) -> None:
    tenant = returns_tenant(container, factory)
    r = awaiting_return(container, factory, tenant.id)
    _ship(container, tenant.id, r.id, tracking="TRK-7")
    _receive(container, tenant.id, r.id, {"SKU-A": 2})
    _inspect(container, tenant.id, r.id, {"SKU-A": [LineInspection.accept()]})
    with container.db.read() as session:
        email = session.scalar(
            select(Order.customer_email).where(Order.tenant_id == tenant.id, Order.id == r.order_id)
        )
        assert email is not None
        view = track(session, reference=r.reference, email=email, now=container.clock.now())
    texts = [entry.text for entry in view.timeline]
    assert "Your return is on its way with DHL (TRK-7)." in texts
    assert "Your return arrived." in texts
    assert any("your refund is" in t and "20.00" in t for t in texts), texts


def test_canceling_a_refund_can_cancel_its_open_return(
    container: Container, factory: Factory
) -> None:
    tenant = returns_tenant(container, factory)
    r = awaiting_return(container, factory, tenant.id)
    _ship(container, tenant.id, r.id)
    with container.db.write() as session:
        loaded = session.scalars(
            select(Refund).where(Refund.tenant_id == tenant.id, Refund.id == r.id)
        ).one()
        loaded.transition(RefundStatus.CANCELED, actor=AGENT, at=container.clock.now())
        canceled = service.cancel_for_refund(
            session, refund=loaded, at=container.clock.now(), actor=AGENT, reason="customer"
        )
        assert canceled is not None
    assert _stored(container, tenant.id, r.id).status == "canceled"
    assert "return.canceled" in [t for t, _ in event_trail(container, tenant.id, r.id)]


def test_a_periodic_task_that_fails_never_stops_the_worker(container: Container) -> None:
    calls: list[int] = []

    def boom() -> None:
        calls.append(1)
        raise RuntimeError("boom")

    worker = Worker(
        db=container.db,
        clock=container.clock,
        handlers=container.handlers,
        config=container.worker().config,
        periodic=[Periodic(0.0, boom, "boom")],
    )
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    deadline = time.monotonic() + 5
    while len(calls) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    stop.set()
    thread.join(timeout=5)
    assert len(calls) >= 3
    assert not thread.is_alive()


def test_canceling_a_refund_that_waits_for_its_goods_closes_its_return(
    container: Container, factory: Factory
) -> None:
    from refunddesk.refunds import service as refunds

    tenant = returns_tenant(container, factory)
    r = awaiting_return(container, factory, tenant.id)
    with container.db.write() as session:
        refunds.cancel(
            session,
            clock=container.clock,
            tenant_id=tenant.id,
            refund_id=r.id,
            actor=AGENT,
            note="customer kept the item",
        )
    assert _stored(container, tenant.id, r.id).status == "canceled"
    assert "return.canceled" in [t for t, _ in event_trail(container, tenant.id, r.id)]

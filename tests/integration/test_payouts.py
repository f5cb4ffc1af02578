"""Payouts: approved refunds are paid once, declines and outages end honestly, crashes recover."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

from refunddesk.bootstrap import Container, bootstrap
from refunddesk.core.clock import FrozenClock
from refunddesk.core.errors import IllegalTransition, NotFound, OverBudget
from refunddesk.jobs import queue
from refunddesk.jobs.worker import Outcome
from refunddesk.payouts.gateways.base import GatewayUnavailable, PayoutRequest, PayoutResult
from refunddesk.payouts.gateways.sandbox import SandboxGateway
from refunddesk.payouts.service import PayoutHandler
from refunddesk.refunds import service
from tests.conftest import make_settings
from tests.factories import ORDER_TOTAL, Factory
from tests.integration.support import event_trail, events, jobs, payouts, refund, request

LEASE = timedelta(seconds=60)  # the settings' default worker lease


def _handler(container: Container) -> PayoutHandler:
    [handler] = [h for h in container.handlers if isinstance(h, PayoutHandler)]
    return handler


def _approved(container: Container, factory: Factory, amount: int = 700) -> tuple[str, str]:
    tenant = factory.tenant()
    created, _ = request(
        container, tenant.id, order_id=factory.order(tenant.id), amount_minor=amount
    )
    assert created.status == "approved"
    return tenant.id, created.id


def _drain_until_idle(container: Container, clock: FrozenClock, rounds: int = 20) -> None:
    """Run the worker, letting the clock pass every retry's backoff, until no job is left to run."""
    worker = container.worker()
    for _ in range(rounds):
        worker.drain()
        if not [j for j in jobs(container) if j.status == "queued"]:
            return
        clock.advance(timedelta(minutes=5))


def test_an_approved_refund_is_paid_once_and_its_history_says_so(
    container: Container, factory: Factory, sandbox: SandboxGateway
) -> None:
    # given an approved refund with its payout job
    tenant_id, refund_id = _approved(container, factory)
    # when the worker runs
    assert container.worker().drain() == 1
    # then the refund succeeded, one payout row records it, and the gateway paid once
    assert refund(container, tenant_id, refund_id).status == "succeeded"
    [payout] = payouts(container, tenant_id, refund_id)
    assert (payout.status, payout.attempt, payout.amount_minor, payout.currency) == (
        "succeeded",
        1,
        700,
        "EUR",
    )
    assert payout.idempotency_key == f"rd-{refund_id}-1"
    assert payout.gateway_reference is not None
    assert payout.gateway_reference.startswith("sbx_")
    assert event_trail(container, tenant_id, refund_id)[2:] == [
        ("refund.status_changed", "processing"),
        ("payout.sent", "processing"),
        ("payout.succeeded", "processing"),
        ("refund.status_changed", "succeeded"),
    ]
    assert sandbox.paid_refund_ids() == [refund_id]
    assert jobs(container) == []
    # running again pays nothing more
    assert container.worker().drain() == 0
    assert sandbox.paid_count() == 1


def test_a_declined_payout_fails_the_refund_and_a_retry_pays_it(
    container: Container, factory: Factory, sandbox: SandboxGateway
) -> None:
    # given a gateway that declines every payout
    sandbox.failure_rate = 1.0
    tenant_id, refund_id = _approved(container, factory)
    container.worker().drain()
    # then the refund failed, with the decline recorded on the payout and in its history
    assert refund(container, tenant_id, refund_id).status == "failed"
    [declined] = payouts(container, tenant_id, refund_id)
    assert (declined.status, declined.failure_reason) == ("failed", "declined")
    trail = event_trail(container, tenant_id, refund_id)
    assert trail[-2:] == [("payout.failed", "processing"), ("refund.status_changed", "failed")]
    assert sandbox.paid_count() == 0
    # when the gateway recovers and an agent retries (failed -> processing)
    sandbox.failure_rate = 0.0
    with container.db.write() as session:
        retried = service.retry_payout(
            session,
            clock=container.clock,
            config=container.intake,
            tenant_id=tenant_id,
            refund_id=refund_id,
            actor="agent:ada",
        )
        assert retried.status == "processing"
    container.worker().drain()
    # then a second attempt, with a new key, pays it
    assert refund(container, tenant_id, refund_id).status == "succeeded"
    attempts = payouts(container, tenant_id, refund_id)
    assert [(p.attempt, p.status) for p in attempts] == [(1, "failed"), (2, "succeeded")]
    assert attempts[1].idempotency_key == f"rd-{refund_id}-2"
    assert sandbox.paid_refund_ids() == [refund_id]


def test_only_a_failed_refund_can_have_its_payout_retried(
    container: Container, factory: Factory
) -> None:
    tenant_id, refund_id = _approved(container, factory)
    with pytest.raises(IllegalTransition), container.db.write() as session:
        service.retry_payout(
            session,
            clock=container.clock,
            config=container.intake,
            tenant_id=tenant_id,
            refund_id=refund_id,
            actor="agent:ada",
        )
    assert len(jobs(container)) == 1


def test_a_gateway_outage_retries_then_gives_up_and_fails_the_refund_unpaid(
    container: Container, factory: Factory, sandbox: SandboxGateway, clock: FrozenClock
) -> None:
    # given a gateway that times out on every call
    sandbox.error_rate = 1.0
    tenant_id, refund_id = _approved(container, factory)
    # when the worker runs once, the job is retried later, and the refund waits in processing
    container.worker().drain()
    [job] = jobs(container)
    assert (job.status, job.attempts) == ("queued", 1)
    assert job.run_at > clock.now()
    assert "gateway unavailable" in (job.last_error or "")
    assert refund(container, tenant_id, refund_id).status == "processing"
    # and when every attempt fails, the job is dead and the refund failed, never paid
    _drain_until_idle(container, clock)
    [job] = jobs(container)
    assert (job.status, job.attempts) == ("dead", container.settings.job_max_attempts)
    assert sandbox.calls == container.settings.job_max_attempts
    assert refund(container, tenant_id, refund_id).status == "failed"
    trail = event_trail(container, tenant_id, refund_id)
    assert trail[-2:] == [("payout.failed", "processing"), ("refund.status_changed", "failed")]
    assert events(container, tenant_id, refund_id)[-1].data["failure_reason"] == (
        "gateway_unavailable"
    )
    [sent] = payouts(container, tenant_id, refund_id)
    assert sent.attempt == 1  # one attempt, re-sent with one key: never a second payout
    assert sandbox.paid_count() == 0


def test_a_payout_sent_before_a_crash_is_resent_with_the_same_key_and_paid_once(
    container: Container, factory: Factory, sandbox: SandboxGateway, clock: FrozenClock
) -> None:
    # given a worker that claimed the job, recorded the payout as sent, and then died
    tenant_id, refund_id = _approved(container, factory)
    with container.db.write() as session:
        claimed = queue.claim(session, worker="crashed", now=clock.now(), lease=LEASE, limit=10)
    outcomes: dict[int, Outcome] = {}
    with container.db.write() as session:
        [to_send] = _handler(container)._prepare(session, claimed, outcomes)
    [sent] = payouts(container, tenant_id, refund_id)
    assert sent.status == "sent"
    assert refund(container, tenant_id, refund_id).status == "processing"
    # when its lease runs out and another worker takes the job over
    assert container.worker().drain() == 0  # still leased
    clock.advance(LEASE + timedelta(seconds=1))
    assert container.worker().drain() == 1
    # then the same attempt is sent with the same key, and paid once
    [payout] = payouts(container, tenant_id, refund_id)
    assert (payout.id, payout.status) == (sent.id, "succeeded")
    assert to_send.request.idempotency_key == payout.idempotency_key == f"rd-{refund_id}-1"
    assert refund(container, tenant_id, refund_id).status == "succeeded"
    assert sandbox.paid_count() == 1
    assert [t for t, _ in event_trail(container, tenant_id, refund_id)].count("payout.sent") == 1


class LosesFirstAnswer:
    """A gateway that pays, then loses the answer (a timeout after the money moved)."""

    name = "sandbox"

    def __init__(self, inner: SandboxGateway) -> None:
        self.inner = inner
        self.keys: list[str] = []
        self.looked_up: list[str] = []

    def refund(self, request: PayoutRequest) -> PayoutResult:
        self.keys.append(request.idempotency_key)
        result = self.inner.refund(request)
        if len(self.keys) == 1:
            raise GatewayUnavailable("read timeout after the gateway paid")
        return result

    def lookup(self, request: PayoutRequest, gateway_reference: str | None) -> PayoutResult | None:
        self.looked_up.append(request.idempotency_key)
        return self.inner.lookup(request, gateway_reference)


@pytest.fixture
def lossy(
    database_url: str, clock: FrozenClock, sandbox: SandboxGateway
) -> Iterator[tuple[Container, LosesFirstAnswer]]:
    gateway = LosesFirstAnswer(sandbox)
    c = bootstrap(make_settings(database_url), clock=clock, gateways=[gateway])
    yield c, gateway
    c.close()


def test_a_payout_whose_answer_was_lost_is_asked_again_with_the_same_key_and_not_paid_twice(
    lossy: tuple[Container, LosesFirstAnswer], sandbox: SandboxGateway, clock: FrozenClock
) -> None:
    container, gateway = lossy
    tenant_id, refund_id = _approved(container, Factory(container))
    # when the first call pays but its answer is lost, and the job runs again after its backoff
    container.worker().drain()
    assert refund(container, tenant_id, refund_id).status == "processing"
    assert sandbox.paid_count() == 1
    _drain_until_idle(container, clock)
    # then the desk asked the gateway about the same key before sending again: it had paid,
    # so nothing was sent a second time
    assert gateway.keys == [f"rd-{refund_id}-1"]
    assert gateway.looked_up == [f"rd-{refund_id}-1"]
    assert sandbox.paid_count() == 1
    assert refund(container, tenant_id, refund_id).status == "succeeded"
    [payout] = payouts(container, tenant_id, refund_id)
    assert payout.status == "succeeded"


def test_a_refund_canceled_before_its_payout_is_never_sent(
    container: Container, factory: Factory, sandbox: SandboxGateway
) -> None:
    tenant_id, refund_id = _approved(container, factory)
    with container.db.write() as session:
        service.cancel(
            session,
            clock=container.clock,
            tenant_id=tenant_id,
            refund_id=refund_id,
            actor="agent:ada",
            note="customer changed their mind",
        )
    assert container.worker().drain() == 1
    assert refund(container, tenant_id, refund_id).status == "canceled"
    assert payouts(container, tenant_id, refund_id) == []
    assert sandbox.calls == 0
    assert jobs(container) == []


def test_a_refund_being_paid_cannot_be_canceled(container: Container, factory: Factory) -> None:
    tenant_id, refund_id = _approved(container, factory)
    container.worker().drain()
    with pytest.raises(IllegalTransition), container.db.write() as session:
        service.cancel(
            session, clock=container.clock, tenant_id=tenant_id, refund_id=refund_id, actor="a"
        )
    assert refund(container, tenant_id, refund_id).status == "succeeded"


def test_another_tenant_never_sees_or_changes_the_refund(
    container: Container, factory: Factory
) -> None:
    # given a refund of Acme's, and another retailer with an order of the same number
    tenant_id, refund_id = _approved(container, factory)
    other = factory.tenant("Other")
    with container.db.read() as session:
        acme_order = service.get_refund(session, tenant_id=tenant_id, refund_id=refund_id)
        external = service.external_ids(session, tenant_id, {acme_order.order_id})
    [order_number] = external.values()
    # then the other tenant's reads find nothing
    with container.db.read() as session:
        with pytest.raises(NotFound):
            service.get_refund(session, tenant_id=other.id, refund_id=refund_id)
        with pytest.raises(NotFound):
            service.list_events(session, tenant_id=other.id, refund_id=refund_id)
        assert service.list_refunds(session, tenant_id=other.id).items == []
        assert (
            service.list_refunds(session, tenant_id=other.id, order_external_id=order_number).items
            == []
        )
    # and its writes cannot touch it
    for act in (service.cancel, service.reject):
        kwargs = {"reason": "x"} if act is service.reject else {}
        with pytest.raises(NotFound), container.db.write() as session:
            act(
                session,
                clock=container.clock,
                tenant_id=other.id,
                refund_id=refund_id,
                actor="agent:mallory",
                **kwargs,
            )
    # and a refund against Acme's order number is an unknown order for it
    with pytest.raises(service.UnknownOrder):
        request(container, other.id, order_id=order_number, amount_minor=100)
    # while Acme's refund is untouched and still paid
    assert refund(container, tenant_id, refund_id).status == "approved"
    container.worker().drain()
    assert refund(container, tenant_id, refund_id).status == "succeeded"


def test_a_payout_job_naming_another_tenant_finds_no_refund(
    container: Container, factory: Factory, sandbox: SandboxGateway
) -> None:
    _, refund_id = _approved(container, factory)
    other = factory.tenant("Other")
    with container.db.write() as session:
        queue.enqueue(
            session,
            kind="payout",
            tenant_id=other.id,
            payload={"refund_id": refund_id},
            now=container.clock.now(),
            max_attempts=3,
        )
    container.worker().drain()
    dead = [j for j in jobs(container) if j.status == "dead"]
    assert [j.tenant_id for j in dead] == [other.id]
    assert "not found" in (dead[0].last_error or "")
    assert sandbox.paid_refund_ids() == [refund_id]  # only Acme's own job paid it


def test_a_failed_refund_cannot_be_retried_once_another_refund_took_its_budget(
    container: Container, factory: Factory, sandbox: SandboxGateway
) -> None:
    # given a refund of the whole order that was declined, which freed the budget
    tenant = factory.tenant()
    order = factory.order(tenant.id)
    sandbox.failure_rate = 1.0
    whole, _ = request(container, tenant.id, order_id=order, amount_minor=ORDER_TOTAL)
    container.worker().drain()
    assert refund(container, tenant.id, whole.id).status == "failed"
    # and another refund that took part of it meanwhile
    request(container, tenant.id, order_id=order, amount_minor=1)
    # when the failed one is retried, it no longer fits and stays failed
    with pytest.raises(OverBudget), container.db.write() as session:
        service.retry_payout(
            session,
            clock=container.clock,
            config=container.intake,
            tenant_id=tenant.id,
            refund_id=whole.id,
            actor="agent:ada",
        )
    assert refund(container, tenant.id, whole.id).status == "failed"

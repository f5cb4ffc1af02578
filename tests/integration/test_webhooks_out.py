"""Retailer webhooks against a real HTTP receiver on 127.0.0.1, verified by `standardwebhooks`.

The receiver checks every delivery with ``standardwebhooks.Webhook(secret).verify``, which
compares the signed timestamp with the real time; so these tests run on a clock frozen at
the real now, and advance it only where verification no longer matters.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from refunddesk.bootstrap import Container, bootstrap
from refunddesk.core.clock import FrozenClock
from refunddesk.core.errors import Conflict, Invalid
from refunddesk.notifications.events import DispatchEvent
from refunddesk.orders.orm import Order
from refunddesk.payouts.fakes._server import serve_in_thread
from refunddesk.payouts.gateways.sandbox import SandboxGateway
from refunddesk.refunds.orm import Refund, RefundEvent
from refunddesk.webhooks_out import service
from refunddesk.webhooks_out.fanout import enqueue_deliveries
from refunddesk.webhooks_out.orm import WebhookDelivery, WebhookEndpoint
from refunddesk.webhooks_out.rules import check_event_types, check_url, matches
from refunddesk.webhooks_out.schemas import WebhookDeliveryPublic
from refunddesk.webhooks_out.sender import EXCERPT_BYTES, DeliveryHandler
from tests.conftest import make_settings
from tests.factories import Factory
from tests.integration.support import request

# --- the receiver ---------------------------------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool | None  # None: no secret was set to check with


@dataclass
class Receiver:
    """A retailer's endpoint: records every POST, verifies it, fails the first N if told."""

    base_url: str = ""
    secret: str | None = None
    fail_first: int = 0  # the first N POSTs to each path answer 500
    down: set[str] = field(default_factory=set)  # paths that answer 503, always
    received: list[Received] = field(default_factory=list)

    def url(self, path: str = "/hooks") -> str:
        return self.base_url + path

    def at(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]

    async def hooks(self, request: Request) -> Response:
        body = await request.body()
        headers = dict(request.headers)
        verified = None
        if self.secret is not None:
            try:
                Webhook(self.secret).verify(body, headers)
                verified = True
            except WebhookVerificationError:
                verified = False
        self.received.append(Received(request.url.path, headers, body, verified))
        if request.url.path in self.down:
            return PlainTextResponse("down", status_code=503)
        if len(self.at(request.url.path)) <= self.fail_first:
            return PlainTextResponse("x" * 5000, status_code=500)
        return Response(status_code=204)

    async def redirect(self, request: Request) -> Response:
        self.received.append(Received(request.url.path, dict(request.headers), b"", None))
        return RedirectResponse(self.url("/hooks"), status_code=302)

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/hooks", self.hooks, methods=["POST"]),
                Route("/other", self.hooks, methods=["POST"]),
                Route("/redirect", self.redirect, methods=["POST"]),
            ]
        )


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    with serve_in_thread(r.app()) as base_url:
        r.base_url = base_url
        yield r


# --- a container on a clock at the real now, allowed to call 127.0.0.1 -----------------


@pytest.fixture
def live_clock() -> FrozenClock:
    return FrozenClock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
def wh(database_url: str, live_clock: FrozenClock) -> Iterator[Container]:
    c = bootstrap(
        make_settings(database_url, webhook_allow_private_urls=True, job_max_attempts=10),
        clock=live_clock,
        gateways=[SandboxGateway(seed=1)],
    )
    yield c
    c.close()


def add_endpoint(c: Container, tenant_id: str, url: str, events: list[str] | None = None) -> str:
    with c.db.write() as session:
        endpoint = service.create_endpoint(
            session,
            clock=c.clock,
            tenant_id=tenant_id,
            url=url,
            event_types=events or [],
            allow_private=True,
        )
        return endpoint.id


def secret_of(c: Container, tenant_id: str, endpoint_id: str) -> str:
    with c.db.read() as session:
        return service.get_endpoint(session, tenant_id=tenant_id, endpoint_id=endpoint_id).secret


def dispatch_events(c: Container, tenant_id: str, refund_id: str) -> list[DispatchEvent]:
    """The refund's events as the dispatcher hands them over."""
    with c.db.read() as session:
        refund = session.get(Refund, (tenant_id, refund_id))
        assert refund is not None
        order = session.get(Order, (tenant_id, refund.order_id))
        assert order is not None
        rows = session.scalars(
            select(RefundEvent)
            .where(RefundEvent.tenant_id == tenant_id, RefundEvent.refund_id == refund_id)
            .order_by(RefundEvent.seq)
        )
        return [
            DispatchEvent(
                tenant_id=tenant_id,
                event_id=e.id,
                refund_id=refund_id,
                seq=e.seq,
                type=e.type,
                from_status=e.from_status,
                to_status=e.to_status,
                at=e.at,
                data=dict(e.data),
                refund_reference=refund.reference,
                amount_minor=refund.amount_minor,
                currency=refund.currency,
                order_external_id=order.external_id,
                customer_email=order.customer_email,
                customer_name=order.customer_name,
                customer_phone=order.customer_phone,
            )
            for e in rows
        ]


def fan_out(c: Container, events: list[DispatchEvent]) -> int:
    with c.db.write() as session:
        return enqueue_deliveries(
            session, events=events, now=c.clock.now(), max_attempts=c.settings.job_max_attempts
        )


def new_refund(c: Container, factory: Factory, tenant_id: str) -> str:
    order = factory.order(tenant_id)
    refund, _ = request(c, tenant_id, order_id=order, amount_minor=1500)
    return refund.id


def log(c: Container, tenant_id: str, endpoint_id: str) -> list[WebhookDeliveryPublic]:
    with c.db.read() as session:
        return service.list_deliveries(session, tenant_id=tenant_id, endpoint_id=endpoint_id)


def drain(c: Container) -> int:
    return c.worker().drain()


# --- tests ------------------------------------------------------------------------------


def test_a_refund_event_reaches_the_endpoint_signed_so_that_standard_webhooks_verifies_it(
    wh: Container, receiver: Receiver
) -> None:
    # given an endpoint for every event and a refund with its events
    factory = Factory(wh)
    tenant = factory.tenant()
    endpoint_id = add_endpoint(wh, tenant.id, receiver.url())
    receiver.secret = secret_of(wh, tenant.id, endpoint_id)
    refund_id = new_refund(wh, factory, tenant.id)
    events = dispatch_events(wh, tenant.id, refund_id)[:1]

    # when the events are fanned out and the worker runs
    assert fan_out(wh, events) == 1
    drain(wh)

    # then the receiver got one POST that verifies, with the event's id and its data
    (got,) = receiver.received
    assert got.verified is True
    assert got.headers["webhook-id"] == events[0].event_id
    assert got.headers["content-type"] == "application/json"
    body = Webhook(receiver.secret).verify(got.body, got.headers)
    assert body["type"] == "refund.requested"
    assert datetime.fromisoformat(body["timestamp"]) == events[0].at
    data = body["data"]
    assert data["refund_id"] == refund_id
    assert data["tenant_id"] == tenant.id
    assert data["amount_minor"] == 1500
    assert data["currency"] == "EUR"
    assert data["reference"] == events[0].refund_reference
    assert data["order_external_id"] == events[0].order_external_id
    assert data["status"] == events[0].to_status
    assert data["from_status"] is None
    # and a tampered body does not verify
    with pytest.raises(WebhookVerificationError):
        Webhook(receiver.secret).verify(got.body.replace(b"1500", b"9500"), got.headers)
    # and the log shows the delivery and its one attempt
    (delivery,) = log(wh, tenant.id, endpoint_id)
    assert delivery.status == "delivered"
    assert delivery.webhook_id == events[0].event_id
    assert [(a.ok, a.status_code) for a in delivery.attempts] == [(True, 204)]


def test_event_filters_decide_which_endpoints_hear_of_which_events(
    wh: Container, receiver: Receiver
) -> None:
    # given endpoints for payout.*, for refund.requested, for everything, and a disabled one
    factory = Factory(wh)
    tenant = factory.tenant()
    payouts = add_endpoint(wh, tenant.id, receiver.url(), ["payout.*"])
    requested = add_endpoint(wh, tenant.id, receiver.url(), ["refund.requested"])
    everything = add_endpoint(wh, tenant.id, receiver.url())
    off = add_endpoint(wh, tenant.id, receiver.url())
    with wh.db.write() as session:
        service.update_endpoint(
            session,
            clock=wh.clock,
            tenant_id=tenant.id,
            endpoint_id=off,
            changes=service.EndpointChanges(enabled=False),
            allow_private=True,
        )
    # and a refund paid out by the sandbox (requested, approved, payout events, succeeded)
    refund_id = new_refund(wh, factory, tenant.id)
    drain(wh)
    events = dispatch_events(wh, tenant.id, refund_id)
    types = [e.type for e in events]
    assert "payout.succeeded" in types, types

    # when every event is fanned out
    fan_out(wh, events)

    # then each endpoint has exactly the events its filter matches
    def logged(endpoint_id: str) -> list[str]:
        return sorted(d.event_type for d in log(wh, tenant.id, endpoint_id))

    assert logged(payouts) == sorted(t for t in types if t.startswith("payout."))
    assert logged(requested) == ["refund.requested"]
    assert logged(everything) == sorted(types)
    assert logged(off) == []
    drain(wh)
    assert len(receiver.received) == len(types) + 1 + sum(t.startswith("payout.") for t in types)


def test_the_same_event_is_never_delivered_twice_to_one_endpoint(
    wh: Container, receiver: Receiver
) -> None:
    # given an endpoint and a refund's events, fanned out once
    factory = Factory(wh)
    tenant = factory.tenant()
    endpoint_id = add_endpoint(wh, tenant.id, receiver.url())
    events = dispatch_events(wh, tenant.id, new_refund(wh, factory, tenant.id))
    assert fan_out(wh, events) == len(events)

    # when the same events are fanned out again, in one batch with themselves
    assert fan_out(wh, events + events) == 0
    drain(wh)

    # then each event was sent once
    ids = [r.headers["webhook-id"] for r in receiver.received]
    assert sorted(ids) == sorted(e.event_id for e in events)
    assert len(log(wh, tenant.id, endpoint_id)) == len(events)


def test_a_failing_endpoint_is_retried_with_backoff_and_the_same_webhook_id_until_it_answers(
    wh: Container, receiver: Receiver, live_clock: FrozenClock
) -> None:
    # given an endpoint that fails its first two deliveries
    factory = Factory(wh)
    tenant = factory.tenant()
    endpoint_id = add_endpoint(wh, tenant.id, receiver.url())
    receiver.secret = secret_of(wh, tenant.id, endpoint_id)
    receiver.fail_first = 2
    events = dispatch_events(wh, tenant.id, new_refund(wh, factory, tenant.id))[:1]
    fan_out(wh, events)

    # when the worker runs, and runs again once each retry is due
    drain(wh)
    assert len(receiver.received) == 1
    drain(wh)  # the retry waits for its backoff
    assert len(receiver.received) == 1
    for _ in range(2):
        live_clock.advance(timedelta(seconds=1))
        drain(wh)

    # then three POSTs, each verified, with one webhook-id and one body
    assert len(receiver.received) == 3
    assert all(r.verified for r in receiver.received)
    assert {r.headers["webhook-id"] for r in receiver.received} == {events[0].event_id}
    assert len({r.body for r in receiver.received}) == 1
    # and the log shows each attempt, with an excerpt of what came back of at most 1 KB
    (delivery,) = log(wh, tenant.id, endpoint_id)
    assert delivery.status == "delivered"
    assert delivery.attempt_count == 3
    assert (delivery.last_status_code, delivery.last_error) == (204, None)
    assert delivery.delivered_at == delivery.attempts[-1].at
    assert [(a.ok, a.status_code, a.error) for a in delivery.attempts] == [
        (False, 500, "HTTP 500"),
        (False, 500, "HTTP 500"),
        (True, 204, None),
    ]
    assert delivery.attempts[0].response_excerpt == "x" * EXCERPT_BYTES
    assert all(a.duration_ms >= 0 for a in delivery.attempts)
    with wh.db.read() as session:
        endpoint = service.get_endpoint(session, tenant_id=tenant.id, endpoint_id=endpoint_id)
        assert endpoint.failing_since is None


def test_an_endpoint_that_fails_every_delivery_for_72_hours_is_disabled_and_says_so(
    wh: Container, receiver: Receiver, live_clock: FrozenClock
) -> None:
    # given a failing endpoint, and a healthy one that hears of everything
    factory = Factory(wh)
    tenant = factory.tenant()
    failing = add_endpoint(wh, tenant.id, receiver.url("/hooks"))
    add_endpoint(wh, tenant.id, receiver.url("/other"))
    receiver.down.add("/hooks")
    fan_out(wh, dispatch_events(wh, tenant.id, new_refund(wh, factory, tenant.id))[:1])

    # when /hooks fails for 71 hours: it stays enabled
    drain(wh)
    live_clock.advance(timedelta(hours=71))
    drain(wh)
    with wh.db.read() as session:
        endpoint = service.get_endpoint(session, tenant_id=tenant.id, endpoint_id=failing)
        assert endpoint.enabled
        assert endpoint.failing_since is not None

    # when it still fails after 72 hours
    live_clock.advance(timedelta(hours=2))
    drain(wh)
    live_clock.advance(timedelta(hours=1))
    drain(wh)

    # then it is disabled with its reason and time, and no longer retried
    with wh.db.read() as session:
        endpoint = service.get_endpoint(session, tenant_id=tenant.id, endpoint_id=failing)
        assert not endpoint.enabled
        assert endpoint.disabled_at == live_clock.now() - timedelta(hours=1)
        assert endpoint.disabled_reason is not None
        assert "every delivery failed since" in endpoint.disabled_reason
        assert "HTTP 503" in endpoint.disabled_reason
    attempts_to_failing = len(receiver.at("/hooks"))
    assert attempts_to_failing == 3
    # and its log has a webhook.endpoint_disabled notice, its delivery failed
    entries = {d.event_type: d for d in log(wh, tenant.id, failing)}
    assert entries["webhook.endpoint_disabled"].status == "notice"
    assert entries["refund.requested"].status == "failed"
    # and the tenant's other endpoint was told
    told = [r for r in receiver.at("/other") if b"webhook.endpoint_disabled" in r.body]
    assert len(told) == 1
    assert failing.encode() in told[0].body

    # when the tenant re-enables it and redelivers, and the endpoint answers again
    receiver.down.clear()
    with wh.db.write() as session:
        service.update_endpoint(
            session,
            clock=wh.clock,
            tenant_id=tenant.id,
            endpoint_id=failing,
            changes=service.EndpointChanges(enabled=True),
            allow_private=True,
        )
        service.redeliver(
            session,
            clock=wh.clock,
            tenant_id=tenant.id,
            endpoint_id=failing,
            delivery_id=entries["refund.requested"].id,
            max_attempts=3,
        )
    drain(wh)

    # then it is enabled with no reason, and the delivery went through with the same id
    with wh.db.read() as session:
        endpoint = service.get_endpoint(session, tenant_id=tenant.id, endpoint_id=failing)
        assert endpoint.enabled
        assert endpoint.disabled_reason is None
    again = {d.event_type: d for d in log(wh, tenant.id, failing)}["refund.requested"]
    assert again.status == "delivered"
    assert again.webhook_id == entries["refund.requested"].webhook_id
    assert len(receiver.at("/hooks")) == attempts_to_failing + 1


def test_a_test_event_is_sent_whatever_the_filter(wh: Container, receiver: Receiver) -> None:
    # given an endpoint that only hears of payouts
    factory = Factory(wh)
    tenant = factory.tenant()
    endpoint_id = add_endpoint(wh, tenant.id, receiver.url(), ["payout.*"])
    receiver.secret = secret_of(wh, tenant.id, endpoint_id)

    # when a test event is sent
    with wh.db.write() as session:
        delivery = service.send_test(
            session, clock=wh.clock, tenant_id=tenant.id, endpoint_id=endpoint_id, max_attempts=3
        )
        webhook_id = delivery.event_id
    drain(wh)

    # then it arrives, verified, as webhook.test
    (got,) = receiver.received
    assert got.verified is True
    assert got.headers["webhook-id"] == webhook_id
    body = Webhook(receiver.secret).verify(got.body, got.headers)
    assert body["type"] == "webhook.test"
    assert body["data"]["endpoint_id"] == endpoint_id


def _signatures(received: Received) -> list[str]:
    return received.headers["webhook-signature"].split(" ")


def _expected(secret: str, received: Received) -> str:
    at = datetime.fromtimestamp(int(received.headers["webhook-timestamp"]), tz=UTC)
    return Webhook(secret).sign(received.headers["webhook-id"], at, received.body.decode())


def test_a_rotated_secret_signs_beside_the_old_one_for_a_day_then_alone(
    wh: Container, receiver: Receiver, live_clock: FrozenClock
) -> None:
    # given an endpoint whose secret is rotated
    factory = Factory(wh)
    tenant = factory.tenant()
    endpoint_id = add_endpoint(wh, tenant.id, receiver.url())
    old = secret_of(wh, tenant.id, endpoint_id)
    with wh.db.write() as session:
        rotated = service.with_secret(
            service.rotate_secret(
                session, clock=wh.clock, tenant_id=tenant.id, endpoint_id=endpoint_id
            )
        )
    new = rotated.secret
    assert new != old
    assert new.startswith("whsec_")
    assert 24 <= len(base64.b64decode(new.removeprefix("whsec_"))) <= 32
    assert rotated.previous_secret_valid_until == live_clock.now() + timedelta(hours=24)

    # when a test event is sent now: both the new and the old secret verify it
    def send_test() -> Received:
        with wh.db.write() as session:
            service.send_test(
                session,
                clock=wh.clock,
                tenant_id=tenant.id,
                endpoint_id=endpoint_id,
                max_attempts=3,
            )
        drain(wh)
        return receiver.received[-1]

    first = send_test()
    Webhook(new).verify(first.body, first.headers)
    Webhook(old).verify(first.body, first.headers)

    # when a day has passed: only the new secret signs
    live_clock.advance(timedelta(hours=25))
    later = send_test()
    assert _signatures(later) == [_expected(new, later)]


def test_ssrf_private_loopback_and_local_urls_are_refused_unless_allowed() -> None:
    for url in (
        "http://127.0.0.1:8080/hooks",
        "http://10.0.0.7/hooks",
        "http://192.168.1.1/",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://localhost/hooks",
        "http://printer.local/",
        "http://0.0.0.0/",
    ):
        with pytest.raises(Invalid) as refused:
            check_url(url, allow_private=False)
        assert refused.value.field == "url", url
    for url in ("ftp://example.com/", "example.com/hooks", "http:///nohost", "http://a:b/"):
        with pytest.raises(Invalid):
            check_url(url, allow_private=True)
    assert check_url("https://example.com/hooks", allow_private=False)
    assert check_url("http://127.0.0.1:8080/hooks", allow_private=True)


def test_the_sender_refuses_an_address_inside_when_private_urls_are_not_allowed(
    wh: Container, receiver: Receiver
) -> None:
    # given an endpoint on 127.0.0.1 (stored while allowed), and a sender that does not allow it
    factory = Factory(wh)
    tenant = factory.tenant()
    endpoint_id = add_endpoint(wh, tenant.id, receiver.url())
    strict = DeliveryHandler(
        db=wh.db,
        clock=wh.clock,
        timeout_seconds=2,
        disable_after=timedelta(hours=72),
        allow_private=False,
        concurrency=2,
        max_attempts=3,
    )
    wh.handlers[:] = [h for h in wh.handlers if h.kind != strict.kind] + [strict]

    # when a test event is due
    with wh.db.write() as session:
        service.send_test(
            session, clock=wh.clock, tenant_id=tenant.id, endpoint_id=endpoint_id, max_attempts=3
        )
    drain(wh)

    # then nothing reached the receiver, and the attempt says why
    assert receiver.received == []
    (delivery,) = log(wh, tenant.id, endpoint_id)
    (attempt,) = delivery.attempts
    assert not attempt.ok
    assert attempt.error is not None
    assert "refused: 127.0.0.1 resolves to 127.0.0.1" in attempt.error


def test_redirects_are_not_followed(wh: Container, receiver: Receiver) -> None:
    factory = Factory(wh)
    tenant = factory.tenant()
    endpoint_id = add_endpoint(wh, tenant.id, receiver.url("/redirect"))
    with wh.db.write() as session:
        service.send_test(
            session, clock=wh.clock, tenant_id=tenant.id, endpoint_id=endpoint_id, max_attempts=3
        )
    drain(wh)
    assert [r.path for r in receiver.received] == ["/redirect"]
    (attempt,) = log(wh, tenant.id, endpoint_id)[0].attempts
    assert attempt.status_code == 302
    assert attempt.error is not None
    assert "redirects are not followed" in attempt.error


def test_a_deleted_endpoint_is_not_called_and_its_queued_deliveries_end(
    wh: Container, receiver: Receiver
) -> None:
    factory = Factory(wh)
    tenant = factory.tenant()
    endpoint_id = add_endpoint(wh, tenant.id, receiver.url())
    fan_out(wh, dispatch_events(wh, tenant.id, new_refund(wh, factory, tenant.id)))
    with wh.db.write() as session:
        service.delete_endpoint(session, tenant_id=tenant.id, endpoint_id=endpoint_id)
    drain(wh)
    assert receiver.received == []
    with wh.db.read() as session:
        assert session.scalars(select(WebhookDelivery)).all() == []
        assert session.scalars(select(WebhookEndpoint)).all() == []


def test_a_pending_delivery_cannot_be_redelivered_on_top_of_its_job(
    wh: Container, receiver: Receiver
) -> None:
    factory = Factory(wh)
    tenant = factory.tenant()
    endpoint_id = add_endpoint(wh, tenant.id, receiver.url())
    with wh.db.write() as session:
        delivery = service.send_test(
            session, clock=wh.clock, tenant_id=tenant.id, endpoint_id=endpoint_id, max_attempts=3
        )
        delivery_id = delivery.id
    with wh.db.write() as session, pytest.raises(Conflict):
        service.redeliver(
            session,
            clock=wh.clock,
            tenant_id=tenant.id,
            endpoint_id=endpoint_id,
            delivery_id=delivery_id,
            max_attempts=3,
        )


def test_filters_accept_types_and_star_patterns_and_refuse_anything_else() -> None:
    assert check_event_types(["payout.*", "refund.requested", "payout.*"]) == [
        "payout.*",
        "refund.requested",
    ]
    for bad in ("payout", "PAYOUT.x", "*.*", "orders.created", "refund.[a]", "refund.?"):
        with pytest.raises(Invalid) as refused:
            check_event_types(["refund.requested", bad])
        assert refused.value.field == "event_types[1]", bad
    assert matches([], "anything.at_all")
    assert matches(["*"], "refund.requested")
    assert matches(["payout.*"], "payout.succeeded")
    assert not matches(["payout.*"], "refund.status_changed")
    assert not matches(["refund.requested"], "refund.requested_again")

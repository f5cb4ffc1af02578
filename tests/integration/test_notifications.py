"""Customer notifications: each event makes messages once, sent to real SMTP and a fake SMS API."""

from __future__ import annotations

import email
import email.policy
import socket
import threading
from collections.abc import Iterator
from datetime import timedelta
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import func, select, update

from refunddesk.bootstrap import Container, bootstrap
from refunddesk.core.clock import FrozenClock
from refunddesk.jobs import queue
from refunddesk.jobs.orm import Job
from refunddesk.notifications import delays, dispatch, wiring
from refunddesk.notifications.orm import DelayAlert, Message, MessageAttempt, NotificationSettings
from refunddesk.notifications.preferences import set_preferences
from refunddesk.payouts.fakes._server import serve_in_thread
from refunddesk.payouts.gateways.sandbox import SandboxGateway
from refunddesk.refunds.orm import RefundEvent
from tests.conftest import make_settings
from tests.factories import Factory
from tests.fake_twilio import SID, TOKEN, FakeTwilio
from tests.integration.support import request


class Inbox:
    """An aiosmtpd handler that keeps every message it accepts."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        with self.lock:
            self.messages.append(parsed)
        return "250 OK"


class ReservedPort:
    """A loopback port held (bound, not listening: connections are refused) until released.

    Holding it keeps other processes on this machine from taking it before our SMTP server
    starts on it.
    """

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])

    def serve(self, handler: Inbox) -> Controller:
        """Release the port and start an SMTP server on it."""
        self.sock.close()
        controller = Controller(handler, hostname="127.0.0.1", port=self.port)
        controller.start()
        return controller


@pytest.fixture
def smtp(inbox_handler: Inbox) -> Iterator[ReservedPort]:
    reserved = ReservedPort()
    yield reserved
    reserved.sock.close()


@pytest.fixture
def inbox_handler() -> Inbox:
    return Inbox()


@pytest.fixture
def smtp_port(smtp: ReservedPort) -> int:
    return smtp.port


@pytest.fixture
def inbox(smtp: ReservedPort, inbox_handler: Inbox) -> Iterator[Inbox]:
    controller = smtp.serve(inbox_handler)
    yield inbox_handler
    controller.stop()


@pytest.fixture
def twilio() -> Iterator[tuple[FakeTwilio, str]]:
    fake = FakeTwilio()
    with serve_in_thread(fake.app()) as url:
        yield fake, url


@pytest.fixture
def notified(
    database_url: str,
    clock: FrozenClock,
    sandbox: SandboxGateway,
    smtp_port: int,
    twilio: tuple[FakeTwilio, str],
) -> Iterator[Container]:
    """A container with email to the local SMTP port and SMS to the fake Twilio."""
    settings = make_settings(
        database_url,
        smtp_host="127.0.0.1",
        smtp_port=smtp_port,
        smtp_starttls=False,
        smtp_from="refunds@desk.example",
        sms_base_url=twilio[1],
        sms_account_sid=SID,
        sms_auth_token=TOKEN,
        sms_from="+15005550006",
        job_max_attempts=3,
    )
    c = bootstrap(settings, clock=clock, gateways=[sandbox])
    yield c
    c.close()


@pytest.fixture
def f(notified: Container) -> Factory:
    return Factory(notified)


def run_dispatch(c: Container) -> int:
    config = wiring.dispatch_config(c.settings, email_on=True, sms_on=True)
    return dispatch.run(db=c.db, clock=c.clock, config=config)


def messages(c: Container, refund_id: str | None = None) -> list[Message]:
    with c.db.read() as s:
        query = select(Message).order_by(Message.created_at, Message.event_id, Message.channel)
        if refund_id:
            query = query.where(Message.refund_id == refund_id)
        return list(s.scalars(query))


def settle_all(c: Container, clock: FrozenClock, rounds: int = 6) -> None:
    """Dispatch and run jobs until nothing is left, letting retry backoffs pass."""
    worker = c.worker()
    for _ in range(rounds):
        run_dispatch(c)
        worker.drain()
        clock.advance(timedelta(seconds=1))


def approved_refund(c: Container, f: Factory, **order: Any) -> tuple[str, str]:
    tenant = f.tenant(name="Northwind")
    created, _ = request(c, tenant.id, order_id=f.order(tenant.id, **order), amount_minor=1250)
    assert created.status == "approved"
    return tenant.id, created.id


def customer(email_: str, phone: str | None = "+4915112345678") -> dict[str, Any]:
    return {"customer": {"email": email_, "name": "Ada Kunde", "phone": phone}}


def test_each_customer_step_is_emailed_and_texted_in_english(
    notified: Container,
    f: Factory,
    inbox: Inbox,
    twilio: tuple[FakeTwilio, str],
    clock: FrozenClock,
) -> None:
    # given an approved refund (the payout job pays it when the worker runs)
    _tenant_id, refund_id = approved_refund(notified, f, **customer("ada@example.com"))
    # when events are dispatched and jobs run
    settle_all(notified, clock)
    # then the customer got "approved" then "paid", by email and SMS, each sent once
    sent = messages(notified, refund_id)
    assert [(m.template, m.channel, m.status) for m in sent] == [
        ("approved", "email", "sent"),
        ("approved", "sms", "sent"),
        ("paid", "email", "sent"),
        ("paid", "sms", "sent"),
    ]
    subjects = [m["Subject"] for m in inbox.messages]
    assert subjects == ["Your refund of €12.50 was approved", "Your refund of €12.50 is on its way"]
    approved = inbox.messages[0]
    assert approved["To"] == "ada@example.com"
    assert approved["From"] == "Northwind <refunds@desk.example>"
    assert approved.get_content_type() == "multipart/alternative"
    text = approved.get_body(("plain",))
    html = approved.get_body(("html",))
    assert text is not None
    assert html is not None
    assert "your refund of €12.50 was approved" in text.get_content()
    assert "card" in text.get_content()
    assert "#1f6feb" in html.get_content()
    assert "Northwind" in html.get_content()
    paid_text = inbox.messages[1].get_body(("plain",))
    assert paid_text is not None
    assert "Expect it by" in paid_text.get_content()
    fake, _ = twilio
    assert [m["To"] for m in fake.sent] == ["+4915112345678", "+4915112345678"]
    assert fake.sent[0]["From"] == "+15005550006"
    assert "approved" in fake.sent[0]["Body"]
    assert all(m.segments == 1 for m in sent if m.channel == "sms")
    # and every attempt is on record
    with notified.db.read() as s:
        assert s.scalar(select(func.count()).select_from(MessageAttempt)) == 4


def test_a_german_customer_is_written_to_in_german_with_the_brand_colour(
    notified: Container, f: Factory, inbox: Inbox, clock: FrozenClock
) -> None:
    # given a retailer whose customers read German, in its own colour
    tenant = f.tenant(name="Kaufhaus")
    with notified.db.write() as s:
        s.add(
            NotificationSettings(
                tenant_id=tenant.id,
                brand_color="#aa0000",
                default_locale="de_DE",
                updated_at=clock.now(),
            )
        )
    # and a refund that waits for review (bought long ago, outside the return window)
    created, _ = request(
        notified,
        tenant.id,
        order_id=f.order(
            tenant.id,
            **customer("kunde@example.de", phone="015112345678"),
            purchased_at="2026-08-01T10:00:00Z",
            delivered_at="2026-08-02T10:00:00Z",
        ),
        amount_minor=1250,
    )
    assert created.status == "pending_review"
    # when dispatched and sent
    settle_all(notified, clock)
    # then a German "received" email arrived, money and date in German
    [mail] = inbox.messages
    assert mail["Subject"] == f"Wir haben Ihre Erstattungsanfrage {created.reference} erhalten"
    body = mail.get_body(("plain",))
    assert body is not None
    content = body.get_content()
    assert "Hallo Ada Kunde" in content
    assert "12,50\xa0€" in content  # CLDR puts a no-break space before the sign
    assert "Dezember 2026" in content
    html = mail.get_body(("html",))
    assert html is not None
    assert "#aa0000" in html.get_content()
    # and the national number was read as German (from the locale) and normalised
    sms = [m for m in messages(notified, created.id) if m.channel == "sms"]
    assert [(m.recipient, m.status, m.locale) for m in sms] == [("+4915112345678", "sent", "de")]


def test_an_opted_out_customer_gets_nothing_and_a_channel_off_is_skipped(
    notified: Container,
    f: Factory,
    inbox: Inbox,
    twilio: tuple[FakeTwilio, str],
    clock: FrozenClock,
) -> None:
    tenant = f.tenant()
    with notified.db.write() as s:
        set_preferences(
            s,
            tenant_id=tenant.id,
            email="Out@Example.com",
            channels=["email", "sms"],
            opted_out=True,
            locale=None,
            now=clock.now(),
        )
        set_preferences(
            s,
            tenant_id=tenant.id,
            email="mail-only@example.com",
            channels=["email"],
            opted_out=False,
            locale=None,
            now=clock.now(),
        )
    out, _ = request(
        notified,
        tenant.id,
        order_id=f.order(tenant.id, **customer("out@example.com")),
        amount_minor=500,
    )
    mail_only, _ = request(
        notified,
        tenant.id,
        order_id=f.order(tenant.id, **customer("mail-only@example.com")),
        amount_minor=500,
    )
    settle_all(notified, clock)
    assert {(m.channel, m.status, m.last_error) for m in messages(notified, out.id)} == {
        ("email", "skipped", "the customer opted out of messages"),
        ("sms", "skipped", "the customer opted out of messages"),
    }
    statuses = {(m.channel, m.status) for m in messages(notified, mail_only.id)}
    assert statuses == {("email", "sent"), ("sms", "skipped")}
    assert {m["To"] for m in inbox.messages} == {"mail-only@example.com"}
    assert twilio[0].sent == []


def test_an_invalid_phone_number_is_skipped_with_its_reason(
    notified: Container, f: Factory, inbox: Inbox, clock: FrozenClock
) -> None:
    _, refund_id = approved_refund(notified, f, **customer("x@example.com", phone="12345"))
    run_dispatch(notified)
    [sms] = [m for m in messages(notified, refund_id) if m.channel == "sms"]
    assert sms.status == "skipped"
    assert sms.last_error is not None
    assert "phone number" in sms.last_error


def test_dispatching_twice_at_once_makes_each_message_once(
    notified: Container, f: Factory, inbox: Inbox
) -> None:
    # given many approved refunds with events waiting
    tenant = f.tenant()
    for _ in range(30):
        request(notified, tenant.id, order_id=f.order(tenant.id), amount_minor=300)
    config = dispatch.DispatchConfig(
        email_on=True, sms_on=True, public_url="http://desk.test", max_attempts=3, batch_size=7
    )
    # when two dispatchers run at the same time, in small batches
    counts: list[int] = []
    barrier = threading.Barrier(2)

    def run() -> None:
        barrier.wait()
        counts.append(
            dispatch.run(
                db=notified.db,
                clock=notified.clock,
                config=config,
                max_batches=100,
            )
        )

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # then every event was claimed by exactly one of them, and each message exists once
    with notified.db.read() as s:
        total = s.scalar(select(func.count()).select_from(RefundEvent))
        left = s.scalar(
            select(func.count()).select_from(RefundEvent).where(RefundEvent.dispatched.is_(False))
        )
        jobs = s.scalar(select(func.count()).select_from(Job).where(Job.kind == "send_message"))
    assert sum(counts) == total
    assert left == 0
    approved = [m for m in messages(notified) if m.template == "approved"]
    assert len(approved) == 60  # 30 refunds x (email, sms)
    assert jobs == 60


def test_no_duplicate_message_after_a_redispatch_or_a_rerun_job(
    notified: Container, f: Factory, inbox: Inbox, clock: FrozenClock
) -> None:
    tenant_id, refund_id = approved_refund(notified, f)
    run_dispatch(notified)
    notified.worker().drain()  # sends "approved" (and pays the refund)
    before = len(inbox.messages)
    # when every event is handed out again (a restart that lost the flag) and re-dispatched
    with notified.db.write() as s:
        s.execute(update(RefundEvent).values(dispatched=False))
    run_dispatch(notified)
    # and a send job for an already sent message runs again
    [approved_mail] = [
        m
        for m in messages(notified, refund_id)
        if m.template == "approved" and m.channel == "email"
    ]
    with notified.db.write() as s:
        queue.enqueue(
            s,
            kind="send_message",
            payload={"message_id": approved_mail.id},
            now=clock.now(),
            max_attempts=3,
            tenant_id=tenant_id,
        )
    notified.worker().drain()
    # then no event has two messages on one channel, and the sent email was not sent again
    keys = [(m.event_id, m.channel) for m in messages(notified)]
    assert len(keys) == len(set(keys))
    assert [m["Subject"] for m in inbox.messages].count(inbox.messages[0]["Subject"]) == 1
    assert len(inbox.messages) <= before + 1  # only "paid", dispatched for the first time


def test_a_failing_smtp_server_is_retried_until_the_email_goes_out(
    notified: Container, f: Factory, smtp: ReservedPort, clock: FrozenClock
) -> None:
    # given the SMTP server is down
    _, refund_id = approved_refund(notified, f)
    run_dispatch(notified)
    worker = notified.worker()
    worker.drain()
    [mail] = [m for m in messages(notified, refund_id) if m.channel == "email"]
    assert (mail.status, mail.attempts) == ("queued", 1)
    assert mail.last_error is not None
    assert "SMTP 127.0.0.1" in mail.last_error
    # when it comes back and the retry is due
    handler = Inbox()
    controller = smtp.serve(handler)
    try:
        clock.advance(timedelta(minutes=1))
        worker.drain()
    finally:
        controller.stop()
    # then the email went out on the second attempt, and both attempts are on record
    [mail] = [
        m
        for m in messages(notified, refund_id)
        if m.channel == "email" and m.template == "approved"
    ]
    assert (mail.status, mail.attempts, mail.last_error) == ("sent", 2, None)
    assert [m["Subject"] for m in handler.messages] == ["Your refund of €12.50 was approved"]
    with notified.db.read() as s:
        attempts = s.scalars(
            select(MessageAttempt.status)
            .where(MessageAttempt.message_id == mail.id)
            .order_by(MessageAttempt.attempt_no)
        ).all()
    assert attempts == ["failed", "sent"]


def test_a_refund_past_its_date_gets_one_delay_alert(
    notified: Container, f: Factory, inbox: Inbox, clock: FrozenClock
) -> None:
    # given a refund waiting for review since today
    tenant = f.tenant()
    created, _ = request(
        notified,
        tenant.id,
        order_id=f.order(
            tenant.id, purchased_at="2026-08-01T10:00:00Z", delivered_at="2026-08-02T10:00:00Z"
        ),
        amount_minor=900,
    )
    assert created.status == "pending_review"
    settle_all(notified, clock, rounds=1)
    # when it is still not decided a month later
    assert delays.alert_delayed(db=notified.db, clock=clock) == 0  # not late yet
    clock.advance(timedelta(days=30))
    assert delays.alert_delayed(db=notified.db, clock=clock) == 1
    assert delays.alert_delayed(db=notified.db, clock=clock) == 0  # and never again
    settle_all(notified, clock, rounds=2)
    # then one refund.delayed event, one marker and one delay email
    with notified.db.read() as s:
        delayed = s.scalars(
            select(RefundEvent).where(
                RefundEvent.refund_id == created.id, RefundEvent.type == "refund.delayed"
            )
        ).all()
        markers = s.scalars(select(DelayAlert)).all()
    assert len(delayed) == 1
    assert len(markers) == 1
    subjects = [m["Subject"] for m in inbox.messages]
    assert subjects.count(f"Your refund {created.reference} is taking longer than expected") == 1


def test_new_events_wait_for_dispatch_and_old_ones_do_not(notified: Container, f: Factory) -> None:
    _, refund_id = approved_refund(notified, f)
    with notified.db.read() as s:
        flags = s.scalars(select(RefundEvent.dispatched).where(RefundEvent.refund_id == refund_id))
        assert set(flags) == {False}
    run_dispatch(notified)
    with notified.db.read() as s:
        flags = s.scalars(select(RefundEvent.dispatched).where(RefundEvent.refund_id == refund_id))
        assert set(flags) == {True}

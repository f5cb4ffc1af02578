"""Issue 5's "done when", in one journey.

A refund created in the portal produces an email at each step in the customer's language,
the retailer's webhook receives signed events that verify, the customer can follow it at
/track, and a late refund triggers exactly one delay message.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from refunddesk.api.app import create_app
from refunddesk.auth.domain import Role
from refunddesk.bootstrap import Container, bootstrap
from refunddesk.core.clock import FrozenClock
from refunddesk.notifications import delays, dispatch, wiring
from refunddesk.notifications.orm import NotificationSettings
from refunddesk.payouts.fakes._server import serve_in_thread
from refunddesk.payouts.gateways.sandbox import SandboxGateway
from refunddesk.webhooks_out import service as endpoints
from tests.conftest import make_settings
from tests.e2e.support import bearer
from tests.e2e.test_portal import confirm, identify, preview, token_of
from tests.factories import Factory
from tests.integration.test_notifications import Inbox, ReservedPort
from tests.integration.test_webhooks_out import Receiver

EMAIL = "kunde@example.de"
# Every refund goes to a person first, so the customer hears of each step.
REVIEW_ALL = """
format: 1
name: every refund reviewed
currency: EUR
authorization:
  auto_approve_below: 0.01
"""


@pytest.fixture
def inbox() -> Iterator[tuple[Inbox, int]]:
    handler, reserved = Inbox(), ReservedPort()
    controller = reserved.serve(handler)
    yield handler, reserved.port
    controller.stop()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    with serve_in_thread(r.app()) as base_url:
        r.base_url = base_url
        yield r


@pytest.fixture
def desk(database_url: str, tmp_path: Path, inbox: tuple[Inbox, int]) -> Iterator[Container]:
    settings = make_settings(
        database_url,
        smtp_host="127.0.0.1",
        smtp_port=inbox[1],
        smtp_starttls=False,
        smtp_from="refunds@desk.example",
        upload_dir=str(tmp_path / "uploads"),
        webhook_allow_private_urls=True,
    )
    # The clock starts at the real now: webhook signatures carry it and receivers check it.
    clock = FrozenClock(datetime.now(UTC).replace(microsecond=0))
    c = bootstrap(settings, clock=clock, gateways=[SandboxGateway(seed=1)])
    yield c
    c.close()


def settle(c: Container) -> None:
    """What the worker does: dispatch new events, run the jobs they cause."""
    config = wiring.dispatch_config(c.settings, email_on=True, sms_on=False)
    for _ in range(3):
        dispatch.run(db=c.db, clock=c.clock, config=config)
        c.worker().drain()


def test_a_portal_refund_is_told_in_german_signed_to_the_retailer_tracked_and_delayed_once(
    desk: Container, inbox: tuple[Inbox, int], receiver: Receiver
) -> None:
    mails, _ = inbox
    f = Factory(desk)
    # given a German retailer that reviews every refund and listens by webhook
    tenant = f.tenant("Kaufhaus Nord")
    f.policy(tenant.id, REVIEW_ALL)
    with desk.db.write() as s:
        s.add(
            NotificationSettings(
                tenant_id=tenant.id, default_locale="de_DE", updated_at=desk.clock.now()
            )
        )
        endpoint = endpoints.create_endpoint(
            s,
            clock=desk.clock,
            tenant_id=tenant.id,
            url=receiver.url(),
            event_types=[],
            allow_private=True,
        )
        receiver.secret = endpoint.secret
    number = f.order(tenant.id, customer={"email": EMAIL, "name": "Karl Kunde", "phone": None})

    with TestClient(create_app(desk), raise_server_exceptions=False) as web:
        # when the customer asks for a refund in the portal
        assert identify(web, number, EMAIL).status_code == 303
        shown = preview(web, reason="wrong_item")
        assert shown.status_code == 200, shown.text
        done = confirm(web, shown)
        assert done.status_code in (200, 303), done.text
        refunds = web.get("/v1/refunds", headers=tenant.headers, params={"limit": 5}).json()[
            "items"
        ]
        [refund] = refunds
        assert (refund["channel"], refund["status"]) == ("portal", "pending_review")
        settle(desk)
        # then the customer got a German "received" email, and the retailer a signed event
        assert [m["To"] for m in mails.messages] == [EMAIL]
        assert mails.messages[0]["Subject"].startswith("Wir haben Ihre Erstattungsanfrage")
        assert receiver.received, "the retailer's endpoint heard nothing"
        assert all(r.verified for r in receiver.received)
        heard = {r.headers["webhook-id"] for r in receiver.received}

        # when it is still undecided long after the date the customer was given
        desk.clock.advance(timedelta(days=30))  # type: ignore[attr-defined]
        assert delays.alert_delayed(db=desk.db, clock=desk.clock) == 1
        assert delays.alert_delayed(db=desk.db, clock=desk.clock) == 0
        settle(desk)
        # then exactly one delay email went out
        subjects = [m["Subject"] for m in mails.messages]
        assert len(subjects) == 2, subjects
        delays.alert_delayed(db=desk.db, clock=desk.clock)
        settle(desk)
        assert len(mails.messages) == 2

        # when a supervisor approves it and the worker pays it
        supervisor = f.key(tenant.id, Role.SUPERVISOR)
        approved = web.post(f"/v1/refunds/{refund['id']}/approve", headers=bearer(supervisor))
        assert approved.status_code == 200, approved.text
        settle(desk)
        # then "approved" and "paid" arrive in German too, one each
        assert len(mails.messages) == 4
        assert all("Erstattung" in m["Subject"] for m in mails.messages)
        # and the retailer heard of every new event, each under its own id
        assert {r.headers["webhook-id"] for r in receiver.received} > heard

        # and the customer follows it at /track
        page = web.get("/track")
        tracked = web.post(
            "/track",
            data={
                "csrf_token": token_of(page),
                "reference": refund["reference"],
                "email": EMAIL,
            },
        )
        assert tracked.status_code == 200
        assert 'data-status="succeeded"' in tracked.text
        assert "taking longer" in tracked.text

"""Work queues and users against a real database: keyset pages, claims, passwords, TOTP."""

from __future__ import annotations

from datetime import timedelta

import pyotp
import pytest
from sqlalchemy import delete, insert
from sqlalchemy.orm import Session

from refunddesk.auth import users
from refunddesk.auth.domain import Role
from refunddesk.bootstrap import Container
from refunddesk.console import queues
from refunddesk.console import service as console
from refunddesk.console.queues import Filter, Queue, Scope
from refunddesk.core.errors import Conflict, Invalid, Unauthorized
from refunddesk.db.base import table_of
from refunddesk.sla.orm import RefundClock
from tests.conftest import NOW
from tests.console_support import make_user
from tests.factories import Factory
from tests.web_seed import OLD, _refund


def test_keyset_pages_walk_the_whole_queue_once_in_urgency_order(container: Container) -> None:
    f = Factory(container)
    tenant = f.tenant().id
    amounts = [500, 900, 900, 300, 1200, 700, 900]
    ids = [_refund(container, tenant, f.order(tenant, **OLD), a)[0] for a in amounts]
    seen: list[tuple[int, str]] = []
    after = None
    with container.db.read() as session:
        for _ in range(10):
            page = queues.page(
                session, tenant_id=tenant, user_id="u", flt=Filter(), after=after, limit=2
            )
            seen += [(i.amount_minor, i.refund_id) for i in page.items]
            after = page.next_cursor
            if after is None:
                break
        counts = queues.counts(session, tenant_id=tenant, user_id="u")
    assert sorted(r for _, r in seen) == sorted(ids)  # each once
    assert len(seen) == len(ids)
    assert [a for a, _ in seen] == sorted(amounts, reverse=True)  # same clock: value first
    ties = [r for a, r in seen if a == 900]
    assert ties == sorted(ties)  # then by id, stably across pages
    assert counts[Queue.REVIEW] == len(ids)


def test_scopes_split_the_queue_by_claim(container: Container) -> None:
    f = Factory(container)
    tenant = f.tenant().id
    first, second = (_refund(container, tenant, f.order(tenant, **OLD), 100)[0] for _ in "ab")
    me = make_user(container, "me@example.com", roles={tenant: Role.AGENT})
    with container.db.write() as session:
        console.claim(session, clock=container.clock, tenant_id=tenant, refund_id=first, user_id=me)
    with container.db.read() as session:

        def ids(scope: Scope) -> list[str]:
            flt = Filter(scope=scope)
            found = queues.page(session, tenant_id=tenant, user_id=me, flt=flt).items
            return [i.refund_id for i in found]

        assert ids(Scope.MINE) == [first]
        assert ids(Scope.UNCLAIMED) == [second]
        assert sorted(ids(Scope.ALL)) == sorted([first, second])


def test_a_second_claim_by_someone_else_is_a_conflict(container: Container) -> None:
    f = Factory(container)
    tenant = f.tenant().id
    refund = _refund(container, tenant, f.order(tenant, **OLD), 100)[0]
    a = make_user(container, "a@example.com", roles={tenant: Role.AGENT})
    b = make_user(container, "b@example.com", roles={tenant: Role.AGENT})
    with container.db.write() as session:
        console.claim(session, clock=container.clock, tenant_id=tenant, refund_id=refund, user_id=a)
    with pytest.raises(Conflict), container.db.write() as session:
        console.claim(session, clock=container.clock, tenant_id=tenant, refund_id=refund, user_id=b)
    with pytest.raises(Invalid), container.db.write() as session:  # b2 is no member
        console.assign(
            session, clock=container.clock, tenant_id=tenant, refund_id=refund, assignee_id="b2"
        )


def test_passwords_are_argon2_and_checked_case_insensitively_by_email(
    container: Container,
) -> None:
    with container.db.write() as session:
        user = users.create_user(
            session,
            clock=container.clock,
            email=" Ada@Example.COM ",
            name="Ada",
            password="a long enough secret",
        )
        assert user.email == "ada@example.com"
        assert user.password_hash.startswith("$argon2id$")
    with container.db.read() as session:
        assert users.authenticate(session, email="ADA@example.com", password="a long enough secret")
        for email, password in (("ada@example.com", "wrong"), ("eve@example.com", "x" * 12)):
            with pytest.raises(Unauthorized):
                users.authenticate(session, email=email, password=password)
    with pytest.raises(Conflict), container.db.write() as session:
        users.create_user(
            session, clock=container.clock, email="ada@example.com", name="", password="x" * 12
        )
    with pytest.raises(Invalid), container.db.write() as session:
        users.create_user(session, clock=container.clock, email="b@c.de", name="", password="short")


def test_roles_are_granted_per_tenant_and_admin_is_not_one_of_them(container: Container) -> None:
    f = Factory(container)
    north, maple = f.tenant("North").id, f.tenant("Maple").id

    def grant(session: Session, tenant: str, role: Role) -> None:
        user = users.get_user(session, "sam@example.com")
        users.grant(session, clock=container.clock, user=user, tenant_id=tenant, role=role)

    make_user(container, "sam@example.com")
    with container.db.write() as session:
        grant(session, north, Role.AGENT)
        grant(session, maple, Role.CLIENT_VIEWER)
        grant(session, north, Role.SUPERVISOR)  # replaces the agent role
    with container.db.read() as session:
        user = users.get_user(session, "sam@example.com")
        assert users.roles_of(session, user.id) == {north: "supervisor", maple: "client_viewer"}
    with pytest.raises(Invalid), container.db.write() as session:
        grant(session, north, Role.ADMIN)


def test_totp_codes_match_their_own_time_step_and_neighbours_only() -> None:
    secret = pyotp.random_base32()
    totp = pyotp.TOTP(secret)
    assert users.totp_matches(secret, totp.at(NOW), at=NOW)
    assert users.totp_matches(secret, totp.at(NOW.timestamp() - 30), at=NOW)
    assert not users.totp_matches(secret, totp.at(NOW.timestamp() - 120), at=NOW)
    for junk in ("", "12345", "abcdef", "1234567", "\uff11\uff12\uff13\uff14\uff15\uff16"):
        assert not users.totp_matches(secret, junk, at=NOW)
    svg = users.qr_svg(users.provisioning_uri_for("ada@example.com", secret))
    assert svg.startswith("<svg")
    assert "style=" not in svg  # the pages' CSP forbids inline style


def test_pages_cross_from_refunds_with_a_deadline_to_those_without_in_order(
    container: Container,
) -> None:
    clocks = table_of(RefundClock)
    f = Factory(container)
    tenant = f.tenant().id
    made = [
        (_refund(container, tenant, f.order(tenant, **OLD), a)[0], a) for a in range(100, 900, 100)
    ]
    # deadlines: two share one, one is later, the rest have no running clock
    due = {made[0][0]: NOW + timedelta(hours=5), made[1][0]: NOW + timedelta(hours=1),
           made[2][0]: NOW + timedelta(hours=1)}  # fmt: skip
    with container.db.write() as session:
        session.execute(delete(clocks).where(clocks.c.tenant_id == tenant))
        session.execute(
            insert(clocks),
            [
                {
                    "tenant_id": tenant,
                    "refund_id": rid,
                    "status": "pending_review",
                    "jurisdiction": "eu",
                    "clocks": {},
                    "next_due_at": due.get(rid),
                    "next_check_at": None,
                    "fired": [],
                    "breached_at": None,
                    "contacts": 0,
                    "updated_at": NOW,
                }
                for rid, _ in made[:5]
            ],
        )
    expected = [made[2][0], made[1][0], made[0][0]] + [
        rid for rid, _ in sorted(made[3:], key=lambda m: -m[1])
    ]
    for size in (1, 2, 3, 50):
        seen, after = [], None
        with container.db.read() as session:
            while True:
                page = queues.page(
                    session, tenant_id=tenant, user_id="u", flt=Filter(), after=after, limit=size
                )
                seen += [i.refund_id for i in page.items]
                after = page.next_cursor
                if after is None:
                    break
        assert seen == expected, size

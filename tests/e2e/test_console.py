"""The agent console over HTTP: roles enforced on the server, tenants kept apart, sign-in."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyotp
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from refunddesk.api.app import create_app
from refunddesk.auth.domain import Role
from refunddesk.auth.orm import User
from refunddesk.bootstrap import Container
from refunddesk.console.orm import Claim, SavedFilter
from refunddesk.refunds.orm import Refund
from tests.conftest import NOW
from tests.console_support import PASSWORD, form_token, make_user, sign_in
from tests.factories import Factory
from tests.web_seed import OLD, _refund

ROLES = ("agent", "supervisor", "finance", "client_viewer", "admin")
# The specification, written out by hand (not read from the code it checks):
# action -> roles that may do it.
MAY: dict[str, set[str]] = {
    "view": {"agent", "supervisor", "finance", "client_viewer", "admin"},
    "claim": {"agent", "supervisor", "finance", "admin"},
    "assign": {"supervisor", "admin"},
    "approve": {"agent", "supervisor", "finance", "admin"},
    "reject": {"agent", "supervisor", "finance", "admin"},
    "cancel": {"agent", "supervisor", "admin"},
    "retry": {"supervisor", "finance", "admin"},
    "escalate": {"agent", "supervisor", "finance", "admin"},
    "label": {"agent", "supervisor", "admin"},
    "bulk": {"supervisor", "admin"},
    "supervise": {"supervisor", "admin"},
}


@dataclass
class Desk:
    c: Container
    north: str
    maple: str
    north_refunds: list[str]  # pending review
    maple_refund: str
    maple_reference: str
    agent_id: str  # a Northwind agent


def pending(c: Container, f: Factory, tenant_id: str, amount: int, **order: object) -> str:
    return _refund(c, tenant_id, f.order(tenant_id, **OLD, **order), amount)[0]


@pytest.fixture
def desk(container: Container) -> Desk:
    f = Factory(container)
    north = f.tenant("Northwind Outfitters", "EUR", "Europe/Berlin").id
    maple = f.tenant("Maple Home Goods", "USD", "America/New_York").id
    north_refunds = [pending(container, f, north, amount) for amount in (700, 1900, 1200)]
    maple_refund, maple_reference = _refund(
        container, maple, f.order(maple, currency="USD", **OLD), 450
    )
    agent = make_user(container, "agent@north.example", roles={north: Role.AGENT})
    return Desk(container, north, maple, north_refunds, maple_refund, maple_reference, agent)


def user_with(desk: Desk, role: str) -> str:
    email = f"{role}@console.example"
    if role == "admin":
        make_user(desk.c, email, admin=True)
    else:
        make_user(desk.c, email, roles={desk.north: Role(role)})
    return email


def status_of(c: Container, tenant_id: str, refund_id: str) -> str:
    with c.db.read() as session:
        return session.scalars(
            select(Refund.status).where(Refund.tenant_id == tenant_id, Refund.id == refund_id)
        ).one()


def claim_holder(c: Container, tenant_id: str, refund_id: str) -> str | None:
    with c.db.read() as session:
        held = session.get(Claim, (tenant_id, refund_id))
        return None if held is None else held.user_id


def do(client: TestClient, desk: Desk, action: str, refund_id: str) -> int:
    """Attempt one console action as the signed-in user; return the HTTP status."""
    token = form_token(client, "/desk/queue")
    base = f"/desk/refunds/{desk.north}/{refund_id}"
    data = {"csrf_token": token}
    if action == "view":
        return client.get(base).status_code
    if action == "supervise":
        return client.get(f"/desk/t/{desk.north}/supervisor").status_code
    if action == "bulk":
        data |= {"action": "claim", "refund_id": refund_id}
        return client.post(f"/desk/t/{desk.north}/bulk", data=data).status_code
    if action == "retry":
        data |= {"method": "same"}
        url = f"/desk/payouts/{desk.north}/{refund_id}/retry"
        return client.post(url, data=data, follow_redirects=False).status_code
    extra = {
        "assign": {"user_id": desk.agent_id},
        "reject": {"reason": "outside the window"},
        "escalate": {"tier": "l1", "reason": "customer called twice"},
        "label": {"label": "fraud"},
    }.get(action, {})
    return client.post(f"{base}/{action}", data=data | extra, follow_redirects=False).status_code


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("action", list(MAY))
def test_every_console_action_is_allowed_or_refused_by_role_on_the_server(
    client: TestClient, desk: Desk, role: str, action: str
) -> None:
    sign_in(client, user_with(desk, role))
    refund_id = desk.north_refunds[0]
    status = do(client, desk, action, refund_id)
    if role not in MAY[action]:
        assert status == 403, (role, action, status)
        assert status_of(desk.c, desk.north, refund_id) == "pending_review"
        assert claim_holder(desk.c, desk.north, refund_id) is None
        return
    assert status in (200, 303), (role, action, status)
    # The allowed actions did what they say.
    expected_status = {"approve": "approved", "reject": "rejected", "cancel": "canceled"}
    assert status_of(desk.c, desk.north, refund_id) == expected_status.get(action, "pending_review")
    if action == "claim":
        assert claim_holder(desk.c, desk.north, refund_id) is not None
    if action == "assign":
        assert claim_holder(desk.c, desk.north, refund_id) == desk.agent_id


def test_a_client_viewer_sees_the_queue_without_a_single_button_to_change_it(
    client: TestClient, desk: Desk
) -> None:
    sign_in(client, user_with(desk, "client_viewer"))
    page = client.get(f"/desk/t/{desk.north}/queue")
    assert page.status_code == 200
    assert page.text.count("data-row ") == 3
    assert "/claim" not in page.text
    assert 'name="action"' not in page.text
    refund = client.get(f"/desk/refunds/{desk.north}/{desk.north_refunds[0]}")
    assert "Read-only" in refund.text
    for path in ("/approve", "/reject", "/claim", "/cancel"):
        assert f'{desk.north_refunds[0]}{path}"' not in refund.text


def test_a_user_of_one_tenant_gets_404_for_every_url_of_another(
    client: TestClient, desk: Desk
) -> None:
    sign_in(client, "agent@north.example")
    token = form_token(client, "/desk/queue")
    maple, refund = desk.maple, desk.maple_refund
    gets = [
        f"/desk/refunds/{maple}/{refund}",
        f"/desk/refunds/{desk.north}/{refund}",  # another tenant's refund under one's own
        f"/desk/t/{maple}/queue",
        f"/desk/t/{maple}/supervisor",
        f"/desk/tenants/{maple}/policy",
        f"/desk/switch?tenant={maple}",
    ]
    for path in gets:
        assert client.get(path).status_code == 404, path
    posts = [f"/desk/refunds/{maple}/{refund}/{a}" for a in ("claim", "approve", "reject")]
    posts += [
        f"/desk/refunds/{desk.north}/{refund}/claim",
        f"/desk/t/{maple}/bulk",
        f"/desk/t/{maple}/filters",
    ]
    for path in posts:
        response = client.post(
            path,
            data={"csrf_token": token, "reason": "x", "action": "claim", "refund_id": refund},
        )
        assert response.status_code == 404, path
    assert status_of(desk.c, maple, refund) == "pending_review"
    assert claim_holder(desk.c, maple, refund) is None
    found = client.get("/desk/search", params={"q": desk.maple_reference})
    assert refund not in found.text
    assert f"/desk/refunds/{maple}/" not in found.text
    assert "No refund of your retailers matches" in found.text
    queue = client.get(f"/desk/t/{desk.north}/queue").text
    assert refund not in queue
    assert "Maple Home Goods" not in queue


def routes_of(routes: list[Any]) -> Iterator[tuple[str, set[str]]]:
    """Every (path, methods) of the app, routers included by reference (FastAPI >= 0.165)."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from routes_of(inner.routes)
        elif hasattr(route, "path"):
            yield route.path, set(getattr(route, "methods", None) or ())


def test_every_console_post_refuses_a_missing_or_forged_csrf_token(
    client: TestClient, desk: Desk
) -> None:
    sign_in(client, user_with(desk, "supervisor"))
    posts = sorted(
        path
        for path, methods in routes_of(client.app.routes)  # type: ignore[attr-defined]
        if path.startswith("/desk") and "POST" in methods
    )
    assert len(posts) >= 10, posts
    ids = {
        "tenant_id": desk.north,
        "refund_id": desk.north_refunds[0],
        "action": "claim",
        "filter_id": "01ABC",
        "job_id": "1",
    }
    for template in posts:
        path = template.format(**ids)
        for data in ({}, {"csrf_token": "forged"}):
            data |= {"refund_id": desk.north_refunds[0], "action": "claim", "confirm": "yes"}
            response = client.post(path, data=data, follow_redirects=False)
            assert response.status_code == 403, (path, response.status_code)
    assert claim_holder(desk.c, desk.north, desk.north_refunds[0]) is None
    assert client.get("/desk", follow_redirects=False).status_code in (200, 303)


def test_sign_in_with_a_password_and_a_totp_code(client: TestClient, desk: Desk) -> None:
    secret = pyotp.random_base32()
    make_user(
        desk.c, "two.step@console.example", roles={desk.north: Role.AGENT}, totp_secret=secret
    )
    token = form_token(client, "/desk/login")
    first = client.post(
        "/desk/login",
        data={"csrf_token": token, "email": "Two.Step@console.example", "password": PASSWORD},
        follow_redirects=False,
    )
    assert (first.status_code, first.headers["location"]) == (303, "/desk/login/code")
    assert client.get("/desk", follow_redirects=False).headers["location"] == "/desk/login"
    token = form_token(client, "/desk/login/code")
    wrong = str((int(pyotp.TOTP(secret).at(NOW)) + 1) % 1_000_000).zfill(6)
    refused = client.post("/desk/login/code", data={"csrf_token": token, "code": wrong})
    assert refused.status_code == 401
    right = client.post(
        "/desk/login/code",
        data={"csrf_token": token, "code": pyotp.TOTP(secret).at(NOW)},
        follow_redirects=False,
    )
    assert (right.status_code, right.headers["location"]) == (303, "/desk")
    assert client.get("/desk/queue", follow_redirects=False).status_code == 303  # to the queue
    assert client.get(f"/desk/t/{desk.north}/queue").status_code == 200


def test_a_user_turns_on_two_step_sign_in_from_the_account_page(
    client: TestClient, desk: Desk
) -> None:
    sign_in(client, "agent@north.example")
    token = form_token(client, "/desk/account")
    client.post("/desk/account/totp", data={"csrf_token": token})
    page = client.get("/desk/account").text
    assert "<svg" in page
    assert "style=" not in page.split("<svg", 1)[1].split("</svg>")[0]
    match = re.search(r'data-field="secret">([A-Z2-7]+)<', page)
    assert match, page
    code = pyotp.TOTP(match.group(1)).at(NOW)
    client.post("/desk/account/totp/confirm", data={"csrf_token": token, "code": code})
    with desk.c.db.read() as session:
        user = session.get(User, desk.agent_id)
        assert user is not None
        assert user.totp_secret == match.group(1)


def test_failed_sign_ins_are_throttled_even_for_the_right_password_afterwards(
    client: TestClient, desk: Desk
) -> None:
    token = form_token(client, "/desk/login")
    email = "agent@north.example"
    for _ in range(5):
        wrong = client.post(
            "/desk/login", data={"csrf_token": token, "email": email, "password": "nope nope nope"}
        )
        assert wrong.status_code == 401
    blocked = client.post(
        "/desk/login", data={"csrf_token": token, "email": email, "password": PASSWORD}
    )
    assert blocked.status_code == 429
    assert "Too many failed sign-ins" in blocked.text
    assert client.get("/desk", follow_redirects=False).headers["location"] == "/desk/login"


def test_a_disabled_user_is_signed_out_at_the_next_request(client: TestClient, desk: Desk) -> None:
    sign_in(client, "agent@north.example")
    assert client.get(f"/desk/t/{desk.north}/queue").status_code == 200
    with desk.c.db.write() as session:
        user = session.get(User, desk.agent_id)
        assert user is not None
        user.disabled_at = desk.c.clock.now()
    gone = client.get(f"/desk/t/{desk.north}/queue", follow_redirects=False)
    assert (gone.status_code, gone.headers["location"]) == (303, "/desk/login")


def queue_refs(client: TestClient, tenant_id: str, **params: str) -> list[str]:
    page = client.get(f"/desk/t/{tenant_id}/queue", params=params)
    assert page.status_code == 200, page.text
    return re.findall(r'<tr data-row data-refund-id="(\w+)"', page.text)


def test_claim_approve_and_the_refund_leaves_the_queue(client: TestClient, desk: Desk) -> None:
    sign_in(client, "agent@north.example")
    first = queue_refs(client, desk.north)
    # Most urgent first: with no clock nearer than another, the largest amount leads.
    assert first == [desk.north_refunds[1], desk.north_refunds[2], desk.north_refunds[0]]
    token = form_token(client, "/desk/queue")
    target = first[0]
    claimed = client.post(
        f"/desk/refunds/{desk.north}/{target}/claim",
        data={"csrf_token": token, "next": f"/desk/t/{desk.north}/queue"},
        follow_redirects=False,
    )
    assert claimed.headers["location"] == f"/desk/t/{desk.north}/queue"
    assert queue_refs(client, desk.north, scope="mine") == [target]
    assert target not in queue_refs(client, desk.north, scope="unclaimed")
    approved = client.post(
        f"/desk/refunds/{desk.north}/{target}/approve",
        data={"csrf_token": token, "next": f"/desk/t/{desk.north}/queue"},
    )
    assert approved.status_code == 200
    assert "is approved" in approved.text
    assert target not in queue_refs(client, desk.north)
    with desk.c.db.read() as session:
        refund = session.scalars(select(Refund).where(Refund.id == target)).one()
        assert refund.status == "approved"
    events = client.get(f"/desk/refunds/{desk.north}/{target}").text
    assert "Agent" in events  # the timeline names the user who acted


def test_a_claimed_refund_cannot_be_taken_but_a_supervisor_can_reassign_it(
    client: TestClient, container: Container, desk: Desk
) -> None:
    target = desk.north_refunds[0]
    sign_in(client, "agent@north.example")
    token = form_token(client, "/desk/queue")
    client.post(f"/desk/refunds/{desk.north}/{target}/claim", data={"csrf_token": token})
    other = make_user(container, "other@north.example", roles={desk.north: Role.AGENT})
    with TestClient(create_app(container)) as second:
        sign_in(second, "other@north.example")
        token2 = form_token(second, "/desk/queue")
        page = second.post(
            f"/desk/refunds/{desk.north}/{target}/claim", data={"csrf_token": token2}
        )
        assert "working on this refund already" in page.text
        assert claim_holder(container, desk.north, target) == desk.agent_id
        released = second.post(
            f"/desk/refunds/{desk.north}/{target}/release", data={"csrf_token": token2}
        )
        assert released.status_code == 403  # someone else's claim
    with TestClient(create_app(container)) as lead:
        sign_in(lead, user_with(desk, "supervisor"))
        token3 = form_token(lead, "/desk/queue")
        lead.post(
            f"/desk/refunds/{desk.north}/{target}/assign",
            data={"csrf_token": token3, "user_id": other},
        )
        assert claim_holder(container, desk.north, target) == other
        board = lead.get(f"/desk/t/{desk.north}/supervisor").text
        assert 'data-chart="workload"' in board
        assert re.search(r'data-user-id="\w+"><td>Other</td><td class="num">1<', board)


def test_bulk_approval_asks_for_confirmation_then_approves_each(
    client: TestClient, desk: Desk
) -> None:
    sign_in(client, user_with(desk, "supervisor"))
    token = form_token(client, "/desk/queue")
    picked = desk.north_refunds[:2]
    data = {"csrf_token": token, "action": "approve", "refund_id": picked}
    confirm = client.post(f"/desk/t/{desk.north}/bulk", data=data)
    assert confirm.status_code == 200
    assert "Approve 2 refunds?" in confirm.text
    assert all(status_of(desk.c, desk.north, r) == "pending_review" for r in picked)
    done = client.post(f"/desk/t/{desk.north}/bulk", data=data | {"confirm": "yes"})
    assert "Approve: 2 of 2 done." in done.text
    assert all(status_of(desk.c, desk.north, r) == "approved" for r in picked)
    assert status_of(desk.c, desk.north, desk.north_refunds[2]) == "pending_review"


def test_search_finds_a_refund_by_reference_order_email_and_phone(
    client: TestClient, container: Container, desk: Desk
) -> None:
    f = Factory(container)
    refund_id, reference = _refund(
        container,
        desk.north,
        f.order(
            desk.north,
            external_id="NW-55501",
            customer={"email": "grace@example.com", "name": "Grace H", "phone": "+4915112345678"},
            **OLD,
        ),
        800,
    )
    sign_in(client, "agent@north.example")
    for term in (reference.lower(), "NW-55501", "Grace@Example.com", "+49 151 12345678"):
        page = client.get("/desk/search", params={"q": term})
        assert page.status_code == 200
        assert f'/desk/refunds/{desk.north}/{refund_id}"' in page.text, term
    one = client.get("/desk/search", params={"q": reference, "go": "1"}, follow_redirects=False)
    assert one.headers["location"] == f"/desk/refunds/{desk.north}/{refund_id}"


def test_saved_filters_belong_to_their_user(
    client: TestClient, container: Container, desk: Desk
) -> None:
    sign_in(client, "agent@north.example")
    token = form_token(client, "/desk/queue")
    client.post(
        f"/desk/t/{desk.north}/filters",
        data={"csrf_token": token, "name": "big ones", "queue": "review", "min_amount": "1000"},
    )
    page = client.get(f"/desk/t/{desk.north}/queue").text
    assert "big ones" in page
    assert queue_refs(client, desk.north, min_amount="1000") == desk.north_refunds[1:]
    with container.db.read() as session:
        saved = session.scalars(select(SavedFilter)).one()
    make_user(container, "other@north.example", roles={desk.north: Role.AGENT})
    with TestClient(create_app(container)) as other:
        sign_in(other, "other@north.example")
        assert "big ones" not in other.get(f"/desk/t/{desk.north}/queue").text
        token2 = form_token(other, "/desk/queue")
        gone = other.post(
            f"/desk/t/{desk.north}/filters/{saved.id}/delete", data={"csrf_token": token2}
        )
        assert gone.status_code == 404
    client.post(f"/desk/t/{desk.north}/filters/{saved.id}/delete", data={"csrf_token": token})
    assert "big ones" not in client.get(f"/desk/t/{desk.north}/queue").text


@pytest.mark.parametrize(
    "params", [{"queue": "nope"}, {"scope": "x"}, {"min_amount": "-1"}, {"after": "garbage!!"}]
)
def test_odd_queue_parameters_are_a_message_not_an_error(
    client: TestClient, desk: Desk, params: dict[str, str]
) -> None:
    sign_in(client, "agent@north.example")
    page = client.get(f"/desk/t/{desk.north}/queue", params=params)
    assert page.status_code == 200
    assert "notice error" in page.text


def test_load_more_returns_the_next_rows_alone_for_htmx(
    client: TestClient, container: Container, desk: Desk
) -> None:
    f = Factory(container)
    for n in range(50):
        pending(container, f, desk.north, 100 + n)
    sign_in(client, "agent@north.example")
    first = client.get(f"/desk/t/{desk.north}/queue").text
    assert first.count("<tr data-row ") == 50
    more = re.search(r'hx-get="([^"]+)"', first)
    assert more, first
    fragment = client.get(more.group(1).replace("&amp;", "&"), headers={"HX-Request": "true"})
    assert fragment.status_code == 200
    assert "<html" not in fragment.text
    rows = re.findall(r'<tr data-row data-refund-id="(\w+)"', fragment.text)
    assert len(rows) == 3  # 53 in all
    assert not set(rows) & set(re.findall(r'<tr data-row data-refund-id="(\w+)"', first))
    assert "hx-get" not in fragment.text  # the last page offers no more

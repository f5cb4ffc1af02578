"""The server-rendered pages: home, customer tracking, and the desk (user sign-in)."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from refunddesk.bootstrap import Container
from refunddesk.jobs.orm import Job
from refunddesk.web.security import SESSION_COOKIE
from tests.console_support import PASSWORD
from tests.web_seed import Seed, seed_desk

NOT_FOUND = "No refund matches this reference and email"


@pytest.fixture
def seed(container: Container) -> Seed:
    return seed_desk(container)


def csrf(client: TestClient, path: str) -> str:
    page = client.get(path)
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert match, page.text
    return match.group(1)


def sign_in(client: TestClient, email: str, password: str = PASSWORD) -> None:
    token = csrf(client, "/desk/login")
    response = client.post(
        "/desk/login",
        data={"csrf_token": token, "email": email, "password": password},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text


def job_status(container: Container, job_id: int) -> str:
    with container.db.read() as session:
        return session.scalars(select(Job.status).where(Job.id == job_id)).one()


def test_home_page_shows_live_figures_and_links(client: TestClient, seed: Seed) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert '<html lang="en">' in page.text
    assert 'data-figure="total">6<' in page.text
    assert 'data-status="succeeded">2<' in page.text
    assert 'data-status="pending_review">1<' in page.text
    assert "12.50 EUR" in page.text
    assert "9.90 USD" in page.text
    for link in ('href="/track"', 'href="/desk"', 'href="/docs"'):
        assert link in page.text


def test_home_page_renders_on_an_empty_desk(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert "nothing yet" in page.text


def test_track_shows_the_timeline_for_the_right_email(client: TestClient, seed: Seed) -> None:
    token = csrf(client, "/track")
    page = client.post(
        "/track",
        data={
            "csrf_token": token,
            "reference": seed.reference.lower(),
            "email": "ADA.Lovelace@example.com ",
        },
    )
    assert page.status_code == 200, page.text
    assert "Northwind Outfitters" in page.text
    assert "12.50 EUR" in page.text
    assert 'data-status="succeeded">Paid<' in page.text
    assert "We received your refund request for 12.50 EUR." in page.text
    assert "Your refund of 12.50 EUR was paid to your card." in page.text
    assert "expect it by" in page.text
    assert page.headers["cache-control"] == "no-store"


def test_wrong_email_and_unknown_reference_look_the_same(client: TestClient, seed: Seed) -> None:
    token = csrf(client, "/track")
    wrong_email = client.post(
        "/track",
        data={"csrf_token": token, "reference": seed.reference, "email": "eve@example.com"},
    )
    unknown = client.post(
        "/track",
        data={"csrf_token": token, "reference": "RF-ZZZZZZZZ", "email": seed.tracked_email},
    )
    assert wrong_email.status_code == unknown.status_code == 404
    for page in (wrong_email, unknown):
        assert NOT_FOUND in page.text
        assert "Northwind" not in page.text


def test_a_link_from_an_email_tracks_by_get(client: TestClient, seed: Seed) -> None:
    page = client.get("/track", params={"reference": seed.reference, "email": seed.tracked_email})
    assert page.status_code == 200
    assert "was paid to your card" in page.text
    miss = client.get("/track", params={"reference": seed.reference, "email": "x@example.com"})
    assert miss.status_code == 404
    assert NOT_FOUND in miss.text


@pytest.mark.parametrize(
    ("reference", "email"),
    [
        ("", ""),
        ("RF-\x00", "a@b.c"),
        ("x" * 5000, "a@b.c"),
        ("RF-1", "\u202e\ufeff@\U0001f600"),
        ("%", "%"),
    ],
)
def test_odd_tracking_input_never_fails(
    client: TestClient, seed: Seed, reference: str, email: str
) -> None:
    token = csrf(client, "/track")
    posted = client.post(
        "/track", data={"csrf_token": token, "reference": reference, "email": email}
    )
    linked = client.get("/track", params={"reference": reference, "email": email})
    assert posted.status_code in (400, 404)
    assert linked.status_code in (200, 400, 404)


def test_tracking_without_a_valid_csrf_token_is_refused(client: TestClient, seed: Seed) -> None:
    csrf(client, "/track")
    data = {"reference": seed.reference, "email": seed.tracked_email}
    missing = client.post("/track", data=data)
    forged = client.post("/track", data={**data, "csrf_token": "forged"})
    assert missing.status_code == forged.status_code == 403
    assert "Northwind" not in missing.text


def test_desk_redirects_to_sign_in_when_signed_out(client: TestClient) -> None:
    response = client.get("/desk", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/desk/login"


def test_an_agent_signs_in_to_their_queue_not_the_desk_overview(
    client: TestClient, seed: Seed
) -> None:
    sign_in(client, seed.agent_email)
    desk = client.get("/desk", follow_redirects=False)
    assert (desk.status_code, desk.headers["location"]) == (303, "/desk/queue")
    queue = client.get("/desk/queue")
    assert queue.status_code == 200
    assert "Northwind Outfitters" in queue.text
    assert "Maple Home Goods" not in queue.text  # not a member there


def test_a_wrong_password_or_unknown_user_cannot_sign_in(client: TestClient, seed: Seed) -> None:
    token = csrf(client, "/desk/login")
    for email, password in (
        (seed.admin_email, "wrong password!"),
        ("nobody@desk.example", PASSWORD),
        ("", ""),
        ("x" * 1000, "\x00"),
    ):
        page = client.post(
            "/desk/login", data={"csrf_token": token, "email": email, "password": password}
        )
        assert page.status_code == 401
    assert client.get("/desk", follow_redirects=False).status_code == 303


def test_an_admin_signs_in_with_a_secure_session_cookie(client: TestClient, seed: Seed) -> None:
    token = csrf(client, "/desk/login")
    response = client.post(
        "/desk/login",
        data={"csrf_token": token, "email": seed.admin_email, "password": PASSWORD},
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/desk"
    cookie = response.headers["set-cookie"].lower()
    assert cookie.startswith(SESSION_COOKIE)
    assert "httponly" in cookie
    assert "samesite=lax" in cookie
    assert PASSWORD not in response.headers["set-cookie"]
    desk = client.get("/desk")
    assert desk.status_code == 200
    assert 'data-chart="status-by-tenant"' in desk.text


def test_login_without_csrf_token_is_refused(client: TestClient, seed: Seed) -> None:
    csrf(client, "/desk/login")
    page = client.post(
        "/desk/login",
        data={"email": seed.admin_email, "password": PASSWORD},
        follow_redirects=False,
    )
    assert page.status_code == 403
    assert client.get("/desk", follow_redirects=False).status_code == 303


def test_a_tampered_session_cookie_is_not_signed_in(client: TestClient, seed: Seed) -> None:
    client.cookies.set(
        SESSION_COOKIE, "eyJkZXNrIjogeyJrZXlfaWQiOiAiYSIsICJyb2xlIjogImFkbWluIn19.x.y"
    )
    assert client.get("/desk", follow_redirects=False).status_code == 303


def test_desk_counts_per_tenant_match_the_data(client: TestClient, seed: Seed) -> None:
    sign_in(client, seed.admin_email)
    page = client.get("/desk").text
    for name, expected in seed.expected.items():
        row = re.search(rf'<tr data-tenant-id="{seed.tenant_ids[name]}">(.*?)</tr>', page, re.S)
        assert row, name
        cells = dict(re.findall(r'data-status="(\w+)">(\d+)<', row.group(1)))
        shown = {status: int(n) for status, n in cells.items() if status != "total" and n != "0"}
        assert shown == expected
        assert int(cells["total"]) == sum(expected.values())
    assert "SMTP 554: relay refused" in page
    assert 'data-queue="dead">1<' in page
    assert seed.reference in page  # among the latest events


def test_rerunning_a_dead_job_from_the_desk_queues_it(
    client: TestClient, container: Container, seed: Seed
) -> None:
    sign_in(client, seed.admin_email)
    token = csrf(client, "/desk")
    response = client.post(
        f"/desk/jobs/{seed.dead_job_id}/rerun", data={"csrf_token": token}, follow_redirects=False
    )
    assert response.status_code == 303
    assert job_status(container, seed.dead_job_id) == "queued"
    page = client.get("/desk").text
    assert f"Job {seed.dead_job_id} is queued again." in page
    again = client.post(f"/desk/jobs/{seed.dead_job_id}/rerun", data={"csrf_token": token})
    assert again.status_code == 200
    assert "only dead jobs can be re-run" in again.text


def test_rerun_without_csrf_token_changes_nothing(
    client: TestClient, container: Container, seed: Seed
) -> None:
    sign_in(client, seed.admin_email)
    for data in ({}, {"csrf_token": "wrong"}):
        response = client.post(f"/desk/jobs/{seed.dead_job_id}/rerun", data=data)
        assert response.status_code == 403
    assert job_status(container, seed.dead_job_id) == "dead"


def test_rerun_when_signed_out_changes_nothing(
    client: TestClient, container: Container, seed: Seed
) -> None:
    token = csrf(client, "/track")
    response = client.post(
        f"/desk/jobs/{seed.dead_job_id}/rerun", data={"csrf_token": token}, follow_redirects=False
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/desk/login"
    assert job_status(container, seed.dead_job_id) == "dead"


@pytest.mark.parametrize("job_id", ["abc", "0", "-1", "99999999999999999999999", "999999"])
def test_rerun_of_a_bad_job_id_is_a_message_not_an_error(
    client: TestClient, seed: Seed, job_id: str
) -> None:
    sign_in(client, seed.admin_email)
    token = csrf(client, "/desk")
    page = client.post(f"/desk/jobs/{job_id}/rerun", data={"csrf_token": token})
    assert page.status_code == 200
    assert "notice error" in page.text


def test_sign_out_ends_the_desk_session(client: TestClient, seed: Seed) -> None:
    sign_in(client, seed.admin_email)
    token = csrf(client, "/desk")
    response = client.post("/desk/logout", data={"csrf_token": token}, follow_redirects=False)
    assert response.status_code == 303
    assert client.get("/desk", follow_redirects=False).status_code == 303


def test_pages_send_a_strict_content_security_policy(client: TestClient) -> None:
    for path in ("/", "/track", "/desk/login"):
        headers = client.get(path).headers
        assert "default-src 'self'" in headers["content-security-policy"]
        assert headers["x-frame-options"] == "DENY"
    css = client.get("/static/refunddesk.css")
    assert css.status_code == 200
    assert "text/css" in css.headers["content-type"]


@pytest.mark.parametrize("path", ["/track", "/desk/login", "/desk/logout", "/desk/jobs/1/rerun"])
def test_posts_that_are_not_forms_are_refused_without_errors(client: TestClient, path: str) -> None:
    csrf(client, "/track")
    as_json = client.post(path, json={"csrf_token": "x", "reference": "RF-1"})
    as_upload = client.post(path, files={"csrf_token": ("t.txt", b"x")})
    as_garbage = client.post(
        path, content=b"\xff\xfe%%%", headers={"content-type": "application/x-www-form-urlencoded"}
    )
    for response in (as_json, as_upload, as_garbage):
        assert response.status_code in (400, 403)

"""`refunddesk users ...` in subprocesses: the accounts they make can sign in to the console."""

from __future__ import annotations

from pathlib import Path

import pyotp
import pytest
from fastapi.testclient import TestClient

from refunddesk.api.app import create_app
from refunddesk.bootstrap import bootstrap
from refunddesk.settings import Settings
from tests.console_support import form_token
from tests.e2e.test_cli import make_tenant, run, run_json

pytestmark = pytest.mark.slow
PASSWORD = "a very long password"


def signs_in(url: str, email: str, password: str = PASSWORD) -> int:
    container = bootstrap(Settings(database_url=url))
    try:
        with TestClient(create_app(container)) as client:
            token = form_token(client, "/desk/login")
            response = client.post(
                "/desk/login",
                data={"csrf_token": token, "email": email, "password": password},
                follow_redirects=False,
            )
            return response.status_code
    finally:
        container.close()


def test_users_are_added_granted_revoked_and_disabled_from_the_command_line(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'users.db'}"
    run(url, "db", "upgrade")
    tenant = make_tenant(url)
    admin = run_json(url, "users", "add", "Boss@Example.com", "--admin", "--password", PASSWORD)
    assert admin["email"] == "boss@example.com"
    assert admin["is_admin"] is True
    agent = run_json(
        url, "users", "add", "ann@example.com", "--name", "Ann", "--password", PASSWORD,
        "--tenant", tenant.id, "--role", "agent",
    )  # fmt: skip
    assert agent["roles"] == {tenant.id: "agent"}
    again = run_json(url, "users", "add", "ann@example.com", "--password", PASSWORD, expect=2)
    assert again["error"] == "conflict"
    short = run_json(url, "users", "add", "bob@example.com", "--password", "short", expect=2)
    assert short["field"] == "password"

    granted = run_json(
        url, "users", "grant", "ann@example.com", "--tenant", tenant.id, "--role", "supervisor"
    )
    assert granted["roles"] == {tenant.id: "supervisor"}
    listed = run_json(url, "users", "list")
    assert [u["email"] for u in listed] == ["ann@example.com", "boss@example.com"]
    assert signs_in(url, "ann@example.com") == 303
    assert signs_in(url, "ann@example.com", "wrong password!") == 401

    run_json(url, "users", "password", "ann@example.com", "--password", "another long one")
    assert signs_in(url, "ann@example.com", "another long one") == 303

    totp = run_json(url, "users", "totp", "ann@example.com", "--qr", str(tmp_path / "qr.svg"))
    assert pyotp.parse_uri(totp["uri"]).secret == totp["secret"]
    assert (tmp_path / "qr.svg").read_text().startswith("<svg")

    revoked = run_json(url, "users", "revoke", "ann@example.com", "--tenant", tenant.id)
    assert revoked["roles"] == {}
    disabled = run_json(url, "users", "disable", "ann@example.com")
    assert disabled["disabled"] is True
    assert signs_in(url, "ann@example.com", "another long one") == 401

"""Console users for tests: made without re-hashing a password each time, and signed in."""

from __future__ import annotations

import re
from functools import cache

from fastapi.testclient import TestClient

from refunddesk.auth import users
from refunddesk.auth.domain import Role
from refunddesk.auth.orm import Membership, User
from refunddesk.bootstrap import Container
from refunddesk.core.ids import new_id

PASSWORD = "correct horse battery"


@cache
def password_hash() -> str:
    return users.hash_password(PASSWORD)  # argon2 is slow on purpose: hash once per run


def make_user(
    container: Container,
    email: str,
    *,
    admin: bool = False,
    roles: dict[str, Role] | None = None,
    name: str | None = None,
    totp_secret: str | None = None,
) -> str:
    """A user with PASSWORD and these roles per tenant; returns the user's id."""
    now = container.clock.now()
    with container.db.write() as session:
        user = User(
            id=new_id(),
            email=email.lower(),
            name=name or email.partition("@")[0].replace(".", " ").title(),
            password_hash=password_hash(),
            totp_secret=totp_secret,
            is_admin=admin,
            created_at=now,
            disabled_at=None,
        )
        session.add(user)
        session.flush()
        for tenant_id, role in (roles or {}).items():
            session.add(
                Membership(tenant_id=tenant_id, user_id=user.id, role=str(role), created_at=now)
            )
        return user.id


def form_token(client: TestClient, path: str) -> str:
    page = client.get(path)
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert match, page.text
    return match.group(1)


def sign_in(client: TestClient, email: str, password: str = PASSWORD) -> None:
    token = form_token(client, "/desk/login")
    response = client.post(
        "/desk/login",
        data={"csrf_token": token, "email": email, "password": password},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text

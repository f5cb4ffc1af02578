"""Desk users: accounts, argon2 passwords, TOTP second factors and tenant memberships."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from datetime import datetime

import pyotp
import segno
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from refunddesk.auth.domain import Role
from refunddesk.auth.orm import Membership, User
from refunddesk.core.clock import Clock
from refunddesk.core.errors import Conflict, Invalid, NotFound, Unauthorized
from refunddesk.core.ids import new_id
from refunddesk.tenants.orm import Tenant

MIN_PASSWORD = 10
MAX_PASSWORD = 200
MAX_EMAIL = 320
MAX_NAME = 200
TOTP_ISSUER = "refunddesk"
# Roles a user may hold in a tenant (admin is desk-wide, integration is for API keys).
USER_ROLES = (Role.AGENT, Role.SUPERVISOR, Role.FINANCE, Role.CLIENT_VIEWER)

_hasher = PasswordHasher()  # argon2id with the library's recommended parameters
# Verified against when the email is unknown, so a miss costs as long as a wrong password.
_DUMMY_HASH = _hasher.hash("not a password of anyone")


@dataclass(frozen=True, slots=True)
class UserView:
    """A user as the console and the CLI show it (never the hash or the secret)."""

    id: str
    email: str
    name: str
    is_admin: bool
    totp: bool
    disabled: bool
    created_at: datetime
    roles: dict[str, str] = field(default_factory=dict)  # tenant id -> role

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "email": self.email,
            "name": self.name,
            "is_admin": self.is_admin,
            "totp": self.totp,
            "disabled": self.disabled,
            "created_at": self.created_at.isoformat(),
            "roles": dict(self.roles),
        }


def normalize_email(email: str) -> str:
    """The address as stored: trimmed and lower-case."""
    return email.strip().lower()


def hash_password(password: str) -> str:
    check_password(password)
    return _hasher.hash(password)


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise Invalid(f"a password needs at least {MIN_PASSWORD} characters", field="password")
    if len(password) > MAX_PASSWORD:
        raise Invalid(f"a password has at most {MAX_PASSWORD} characters", field="password")


def password_matches(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def _check_email(email: str) -> str:
    email = normalize_email(email)
    local, at, domain = email.partition("@")
    if not at or not local or "." not in domain or len(email) > MAX_EMAIL or " " in email:
        raise Invalid("enter an email address like name@example.com", field="email")
    return email


def create_user(
    session: Session,
    *,
    clock: Clock,
    email: str,
    name: str,
    password: str,
    is_admin: bool = False,
) -> User:
    email = _check_email(email)
    name = name.strip() or email.partition("@")[0]
    if len(name) > MAX_NAME:
        raise Invalid(f"a name has at most {MAX_NAME} characters", field="name")
    if session.scalars(select(User.id).where(User.email == email)).first() is not None:
        raise Conflict(f"a user with email {email} exists already", field="email")
    user = User(
        id=new_id(),
        email=email,
        name=name,
        password_hash=hash_password(password),
        totp_secret=None,
        is_admin=is_admin,
        created_at=clock.now(),
        disabled_at=None,
    )
    session.add(user)
    session.flush()
    return user


def get_user(session: Session, email_or_id: str) -> User:
    """The user with this email (any case) or id."""
    key = email_or_id.strip()
    user = session.scalars(
        select(User).where((User.email == normalize_email(key)) | (User.id == key))
    ).first()
    if user is None:
        raise NotFound(f"no user {key}", field="user")
    return user


def roles_of(session: Session, user_id: str) -> dict[str, str]:
    """tenant id -> role, for every tenant the user is a member of."""
    rows = session.execute(
        select(Membership.tenant_id, Membership.role).where(Membership.user_id == user_id)
    )
    return {row.tenant_id: row.role for row in rows}


def view(session: Session, user: User) -> UserView:
    return UserView(
        id=user.id,
        email=user.email,
        name=user.name,
        is_admin=user.is_admin,
        totp=user.totp_secret is not None,
        disabled=user.disabled_at is not None,
        created_at=user.created_at,
        roles=roles_of(session, user.id),
    )


def list_users(session: Session, *, tenant_id: str | None = None) -> list[UserView]:
    query = select(User).order_by(User.email)
    if tenant_id is not None:
        query = query.join(Membership, Membership.user_id == User.id).where(
            Membership.tenant_id == tenant_id
        )
    return [view(session, user) for user in session.scalars(query)]


def grant(session: Session, *, clock: Clock, user: User, tenant_id: str, role: Role | str) -> None:
    """Give the user this role in the tenant (replacing any role held there)."""
    role = Role(role)
    if role not in USER_ROLES:
        allowed = ", ".join(str(r) for r in USER_ROLES)
        raise Invalid(f"a user's role in a tenant is one of {allowed}", field="role")
    if session.get(Tenant, tenant_id) is None:
        raise NotFound(f"no tenant {tenant_id}", field="tenant")
    held = session.get(Membership, (tenant_id, user.id))
    if held is None:
        session.add(
            Membership(tenant_id=tenant_id, user_id=user.id, role=str(role), created_at=clock.now())
        )
    else:
        held.role = str(role)
    session.flush()


def revoke(session: Session, *, user: User, tenant_id: str) -> None:
    held = session.get(Membership, (tenant_id, user.id))
    if held is None:
        raise NotFound(f"{user.email} is not a member of tenant {tenant_id}", field="tenant")
    session.delete(held)
    session.flush()


def disable(session: Session, *, clock: Clock, user: User) -> None:
    """Stop the user signing in; their sessions end at their next request."""
    if user.disabled_at is None:
        user.disabled_at = clock.now()


def set_password(session: Session, *, user: User, password: str) -> None:
    user.password_hash = hash_password(password)


def new_totp_secret() -> str:
    return pyotp.random_base32()


def enable_totp(session: Session, *, user: User) -> str:
    """Give the user a new TOTP secret and return it (shown once, for enrolment)."""
    user.totp_secret = new_totp_secret()
    return user.totp_secret


def disable_totp(session: Session, *, user: User) -> None:
    user.totp_secret = None


def provisioning_uri_for(email: str, secret: str) -> str:
    """The otpauth:// link an authenticator app enrols from."""
    return pyotp.TOTP(secret).provisioning_uri(name=email, issuer_name=TOTP_ISSUER)


def qr_svg(uri: str) -> str:
    """The enrolment QR code as an SVG document (segno), with no inline style."""
    out = io.BytesIO()
    segno.make(uri, error="m").save(out, kind="svg", scale=4, border=2, xmldecl=False)
    return out.getvalue().decode()


def totp_matches(secret: str, code: str, *, at: datetime) -> bool:
    """Whether the code is the secret's for this 30 s step or the one on either side."""
    code = code.strip().replace(" ", "")
    if not (code.isascii() and code.isdigit() and len(code) == 6):
        return False
    return pyotp.TOTP(secret).verify(code, for_time=at, valid_window=1)


def authenticate(session: Session, *, email: str, password: str) -> User:
    """The enabled user with this email and password; Unauthorized otherwise (same message)."""
    email = normalize_email(email)
    user = (
        session.scalars(select(User).where(User.email == email)).first()
        if 0 < len(email) <= MAX_EMAIL
        else None
    )
    if len(password) > MAX_PASSWORD:
        password = password[:MAX_PASSWORD]
    ok = password_matches(user.password_hash if user else _DUMMY_HASH, password)
    if user is None or not ok or user.disabled_at is not None:
        raise Unauthorized("that email and password do not match an active account")
    return user


def count_admins(session: Session) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(User)
            .where(User.is_admin.is_(True), User.disabled_at.is_(None))
        )
        or 0
    )

"""API keys (stored as hashes only), desk users and their tenant memberships."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from refunddesk.db.base import Base


class ApiKey(Base):
    __tablename__ = "api_keys"
    __table_args__ = (Index("ix_api_keys_tenant", "tenant_id", "role"),)

    id: Mapped[str] = mapped_column(String(26), primary_key=True)
    # NULL for desk-wide admin keys.
    tenant_id: Mapped[str | None] = mapped_column(String(26), ForeignKey("tenants.id"))
    role: Mapped[str] = mapped_column(String(32))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class User(Base):
    """A person who signs in to the console: an agent, supervisor, finance clerk or viewer."""

    __tablename__ = "users"
    __table_args__ = (Index("uq_users_email", "email", unique=True),)

    id: Mapped[str] = mapped_column(String(26), primary_key=True)
    email: Mapped[str] = mapped_column(String(320))  # stored lower-case
    name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(200))  # argon2id, PHC string
    # Base32 secret of the second factor; NULL: password only.
    totp_secret: Mapped[str | None] = mapped_column(String(64))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime]
    disabled_at: Mapped[datetime | None]


class Membership(Base):
    """A user's role in one tenant; a user may serve several tenants."""

    __tablename__ = "memberships"
    __table_args__ = (Index("ix_memberships_user", "user_id"),)

    tenant_id: Mapped[str] = mapped_column(String(26), ForeignKey("tenants.id"), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(26), ForeignKey("users.id"), primary_key=True)
    role: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime]

"""Create and find tenants (retailers)."""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select
from sqlalchemy.orm import Session

from refunddesk.auth.domain import Role
from refunddesk.auth.service import create_key
from refunddesk.core.clock import Clock
from refunddesk.core.errors import Invalid
from refunddesk.core.ids import new_id
from refunddesk.core.money import normalize_currency
from refunddesk.tenants.orm import Tenant


def create_tenant(
    session: Session, *, clock: Clock, name: str, currency: str = "EUR", timezone: str = "UTC"
) -> tuple[Tenant, str]:
    """Create a retailer and its first API key (role integration); return both."""
    name = name.strip()
    if not name:
        raise Invalid("a tenant needs a name", field="name")
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise Invalid(f"unknown time zone {timezone!r}", field="timezone") from exc
    tenant = Tenant(
        id=new_id(),
        name=name,
        currency=normalize_currency(currency),
        timezone=timezone,
        created_at=clock.now(),
    )
    session.add(tenant)
    session.flush()
    key = create_key(
        session,
        clock=clock,
        role=Role.INTEGRATION,
        tenant_id=tenant.id,
        name="initial integration key",
    )
    return tenant, key


def list_tenants(session: Session) -> list[Tenant]:
    return list(session.scalars(select(Tenant).order_by(Tenant.name)))

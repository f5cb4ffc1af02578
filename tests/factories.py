"""Test data factories: valid by default, overridable field by field."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from refunddesk.auth.domain import Role
from refunddesk.auth.service import create_key
from refunddesk.bootstrap import Container
from refunddesk.orders.schemas import OrderCreate
from refunddesk.orders.service import create_order
from refunddesk.policy.service import activate, create_version
from refunddesk.tenants.service import create_tenant

_seq = itertools.count(1)


@dataclass
class TenantHandle:
    id: str
    key: str  # integration role

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


def order_payload(**overrides: Any) -> dict[str, Any]:
    """A valid POST /v1/orders body: 2 x 10.00 + 1 x 5.00, shipping 4.90, tax 3.00 (EUR)."""
    n = next(_seq)
    body: dict[str, Any] = {
        "external_id": f"ORD-{n}",
        "customer": {
            "email": f"customer{n}@example.com",
            "name": "Ada Customer",
            "phone": "+4915112345678",
        },
        "currency": "EUR",
        "lines": [
            {
                "sku": "SKU-A",
                "name": "Thing A",
                "category": "general",
                "quantity": 2,
                "unit_price_minor": 1000,
            },
            {
                "sku": "SKU-B",
                "name": "Thing B",
                "category": "general",
                "quantity": 1,
                "unit_price_minor": 500,
            },
        ],
        "shipping_minor": 490,
        "tax_minor": 300,
        "payment": {"method": "card", "gateway": "sandbox", "reference": f"pi_{n}"},
        "purchased_at": "2026-11-10T10:00:00Z",
        "delivered_at": "2026-11-12T10:00:00Z",
    }
    body.update(overrides)
    return body


ORDER_TOTAL = 2 * 1000 + 500 + 490 + 300  # 3290


class Factory:
    def __init__(self, container: Container) -> None:
        self.c = container

    def tenant(
        self, name: str = "Acme", currency: str = "EUR", timezone: str = "Europe/Berlin"
    ) -> TenantHandle:
        with self.c.db.write() as session:
            tenant, key = create_tenant(
                session, clock=self.c.clock, name=name, currency=currency, timezone=timezone
            )
            return TenantHandle(tenant.id, key)

    def key(self, tenant_id: str | None, role: Role) -> str:
        with self.c.db.write() as session:
            return create_key(session, clock=self.c.clock, role=role, tenant_id=tenant_id)

    def policy(self, tenant_id: str, source: str) -> int:
        """Upload a policy document for the tenant and activate it; return its version."""
        with self.c.db.write() as session:
            row = create_version(
                session, clock=self.c.clock, tenant_id=tenant_id, source=source, actor="test"
            )
            activate(session, clock=self.c.clock, tenant_id=tenant_id, version=row.version)
            return row.version

    def order(self, tenant_id: str, **overrides: Any) -> str:
        """Store an order directly through the service; return its external id."""
        data = OrderCreate.model_validate(order_payload(**overrides))
        with self.c.db.write() as session:
            create_order(session, clock=self.c.clock, tenant_id=tenant_id, data=data)
        return data.external_id


def iso(at: datetime, days: float = 0) -> str:
    return (at + timedelta(days=days)).isoformat()

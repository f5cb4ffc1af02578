"""Helpers for returns tests: a retailer whose policy wants the goods back first."""

from __future__ import annotations

from refunddesk.bootstrap import Container
from refunddesk.policy import service as policy_service
from refunddesk.refunds.orm import Refund
from tests.factories import Factory, TenantHandle
from tests.integration.support import request

# Goods back first for every refund, 10 days to send them, nothing needs an approver.
RETURNS_POLICY = """\
format: 1
name: Goods back first
currency: EUR
window: {days: 30}
requirements:
  default: {condition: any, evidence: []}
returns:
  default: return
  deadline_days: 10
refund:
  shipping_for: []
  tax_for: none
  method: original
authorization:
  auto_approve_below: 100000
"""


def returns_tenant(container: Container, factory: Factory, name: str = "Acme") -> TenantHandle:
    """A retailer with RETURNS_POLICY active."""
    tenant = factory.tenant(name)
    with container.db.write() as session:
        version = policy_service.create_version(
            session,
            clock=container.clock,
            tenant_id=tenant.id,
            source=RETURNS_POLICY,
            actor="test",
        )
        policy_service.activate(
            session, clock=container.clock, tenant_id=tenant.id, version=version.version
        )
    return tenant


def awaiting_return(container: Container, factory: Factory, tenant_id: str) -> Refund:
    """A refund of the default order's goods (2 x SKU-A at 10.00, 1 x SKU-B at 5.00: 25.00),
    waiting for them to come back."""
    refund, _ = request(
        container,
        tenant_id,
        order_id=factory.order(tenant_id),
        lines=[{"sku": "SKU-A", "quantity": 2}, {"sku": "SKU-B", "quantity": 1}],
    )
    assert refund.status == "awaiting_return", refund.decision_reasons
    assert refund.amount_minor == 2500
    return refund

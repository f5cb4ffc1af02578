"""A tenant's SLA and escalation settings: the active policy's sections, cached per version."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, bindparam, select
from sqlalchemy.orm import Session

from refunddesk.core.errors import NotFound
from refunddesk.db.prepared import Driver, Prepared
from refunddesk.policy.document import parse_policy
from refunddesk.policy.orm import PolicyVersion
from refunddesk.sla.config import Escalation, Jurisdiction, Sla
from refunddesk.sla.domain import ClockRules
from refunddesk.tenants.orm import Tenant

_DEFAULT_SLA, _DEFAULT_ESCALATION = Sla(), Escalation()


@dataclass(frozen=True, slots=True)
class TenantSettings:
    tenant_id: str
    version: int  # the policy version they come from (0: built-in defaults)
    timezone: str
    sla: Sla
    escalation: Escalation

    def rules(self, jurisdiction: Jurisdiction) -> ClockRules:
        # Cached per policy version: the calendar keeps its working intervals per day.
        key = (self.tenant_id, self.version, self.timezone, jurisdiction)
        found = _rules.get(key)
        if found is None:
            found = ClockRules.of(self.sla, default_tz=self.timezone, jurisdiction=jurisdiction)
            with _lock:
                if len(_rules) > 4096:
                    _rules.clear()
                _rules[key] = found
        return found


_rules: dict[tuple[str, int, str, Jurisdiction], ClockRules] = {}
_parsed: dict[tuple[str, int], tuple[Sla, Escalation]] = {}
_lock = threading.Lock()


def _sections(conn: Connection, tenant_id: str, version: int) -> tuple[Sla, Escalation]:
    if version == 0:
        return _DEFAULT_SLA, _DEFAULT_ESCALATION
    key = (tenant_id, version)
    with _lock:
        hit = _parsed.get(key)
    if hit is not None:
        return hit
    row = conn.execute(
        select(PolicyVersion.source, PolicyVersion.format).where(
            PolicyVersion.tenant_id == tenant_id, PolicyVersion.version == version
        )
    ).first()
    if row is None:
        return _DEFAULT_SLA, _DEFAULT_ESCALATION
    policy = parse_policy(row.source, fmt="toml" if row.format == "toml" else "yaml")
    found = (policy.sla, policy.escalation)
    with _lock:
        _parsed[key] = found
    return found


_TENANT_ROW = Prepared(
    select(Tenant.active_policy_version, Tenant.timezone).where(Tenant.id == bindparam("tenant_id"))
)


def settings_fast(conn: Connection, tenant_id: str) -> TenantSettings | None:
    """One tenant's settings with a prepared statement (the intake hot path)."""
    row = Driver.of(conn).first(_TENANT_ROW, {"tenant_id": tenant_id})
    if row is None:
        return None
    version = row.active_policy_version or 0
    sla, escalation = _sections(conn, tenant_id, version)
    return TenantSettings(tenant_id, version, row.timezone, sla, escalation)


def settings_for(bind: Session | Connection, tenant_ids: set[str]) -> dict[str, TenantSettings]:
    """The settings of these tenants, from their active policy (Core reads: safe in a flush)."""
    conn = bind.connection() if isinstance(bind, Session) else bind
    out: dict[str, TenantSettings] = {}
    if not tenant_ids:
        return out
    rows = conn.execute(
        select(Tenant.id, Tenant.active_policy_version, Tenant.timezone).where(
            Tenant.id.in_(sorted(tenant_ids))
        )
    ).all()
    for row in rows:
        version = row.active_policy_version or 0
        sla, escalation = _sections(conn, row.id, version)
        out[row.id] = TenantSettings(row.id, version, row.timezone, sla, escalation)
    return out


def settings_of(bind: Session | Connection, tenant_id: str) -> TenantSettings:
    found = settings_for(bind, {tenant_id}).get(tenant_id)
    if found is None:
        raise NotFound(f"no tenant {tenant_id}")
    return found


def country_of(address: Any) -> str | None:
    """The ISO country of an order's shipping address, when it has one."""
    if isinstance(address, dict):
        country = address.get("country")
        return str(country) if country else None
    return None

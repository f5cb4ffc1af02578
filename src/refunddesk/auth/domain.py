"""Roles, what each may do, and the principal a request acts as."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from refunddesk.core.errors import Forbidden


class Role(StrEnum):
    ADMIN = "admin"  # the whole desk; acts on the tenant named in X-Tenant-Id
    AGENT = "agent"
    SUPERVISOR = "supervisor"
    FINANCE = "finance"
    CLIENT_VIEWER = "client_viewer"
    INTEGRATION = "integration"


TENANT_ROLES = frozenset(Role) - {Role.ADMIN}


class Permission(StrEnum):
    READ = "read"
    WRITE_ORDERS = "orders:write"
    CREATE_REFUNDS = "refunds:create"
    DECIDE_REFUNDS = "refunds:decide"  # approve / reject
    CANCEL_REFUNDS = "refunds:cancel"
    RETRY_PAYOUTS = "payouts:retry"
    MANAGE_DESK = "desk:manage"  # tenants, keys, jobs
    MANAGE_POLICY = "policies:manage"  # upload and activate policy versions
    MANAGE_GATEWAYS = "gateways:manage"  # a tenant's gateway accounts and their secrets
    MANAGE_WEBHOOKS = "webhooks:manage"  # a tenant's webhook endpoints and their secrets
    WORK_ESCALATIONS = "escalations:work"  # escalate, note, assign, resolve l1, log contacts
    RESOLVE_ESCALATIONS = "escalations:resolve"  # resolve l2 and finance escalations


P = Permission
ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.ADMIN: frozenset(Permission),
    Role.SUPERVISOR: frozenset(
        {
            P.READ,
            P.CREATE_REFUNDS,
            P.DECIDE_REFUNDS,
            P.CANCEL_REFUNDS,
            P.RETRY_PAYOUTS,
            P.MANAGE_POLICY,
            P.MANAGE_WEBHOOKS,
            P.WORK_ESCALATIONS,
            P.RESOLVE_ESCALATIONS,
        }
    ),
    Role.AGENT: frozenset(
        {P.READ, P.CREATE_REFUNDS, P.DECIDE_REFUNDS, P.CANCEL_REFUNDS, P.WORK_ESCALATIONS}
    ),
    Role.FINANCE: frozenset(
        {P.READ, P.DECIDE_REFUNDS, P.RETRY_PAYOUTS, P.WORK_ESCALATIONS, P.RESOLVE_ESCALATIONS}
    ),
    Role.CLIENT_VIEWER: frozenset({P.READ}),
    Role.INTEGRATION: frozenset({P.READ, P.WRITE_ORDERS, P.CREATE_REFUNDS, P.CANCEL_REFUNDS}),
}


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is acting: a key's role, and the one tenant it acts on (None: desk-wide only)."""

    key_id: str
    role: Role
    tenant_id: str | None
    # Set when a signed-in console user acts (key_id is then the user's id too).
    user_id: str | None = None

    @property
    def actor(self) -> str:
        if self.user_id is not None:
            return f"user:{self.user_id}"
        return f"{self.role}:{self.key_id}"

    def can(self, permission: Permission) -> bool:
        return permission in ROLE_PERMISSIONS[self.role]

    def require(self, permission: Permission) -> None:
        if not self.can(permission):
            raise Forbidden(f"role {self.role} may not {permission}")

    def require_tenant(self) -> str:
        if self.tenant_id is None:
            raise Forbidden(
                "name the tenant to act on in the X-Tenant-Id header", field="X-Tenant-Id"
            )
        return self.tenant_id

"""Who is signed in to the console, which tenants they may see, and what they may do there."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from refunddesk.auth.domain import Principal, Role
from refunddesk.auth.orm import Membership, User
from refunddesk.core.errors import Forbidden, NotFound
from refunddesk.tenants.orm import Tenant


class Action(StrEnum):
    VIEW = "view"  # queues, refund pages, search
    CLAIM = "claim"  # claim a refund for oneself, release one's own claim
    ASSIGN = "assign"  # give a refund to someone else, release anyone's claim
    APPROVE = "approve"
    REJECT = "reject"
    CANCEL = "cancel"
    RETRY = "retry"  # send a failed payout again
    ESCALATE = "escalate"
    LABEL = "label"  # mark a refund fraud or legit
    BULK = "bulk"  # claim, assign, approve or reject many at once
    SUPERVISE = "supervise"  # the supervisor's view


_WORKERS = frozenset({Role.AGENT, Role.SUPERVISOR, Role.FINANCE, Role.ADMIN})
_LEADS = frozenset({Role.SUPERVISOR, Role.ADMIN})

# The one table of what each role may do in a tenant's console (the server checks it on
# every request; pages only hide what it forbids).
ALLOWED: dict[Action, frozenset[Role]] = {
    Action.VIEW: _WORKERS | {Role.CLIENT_VIEWER},
    Action.CLAIM: _WORKERS,
    Action.ASSIGN: _LEADS,
    Action.APPROVE: _WORKERS,
    Action.REJECT: _WORKERS,
    Action.CANCEL: frozenset({Role.AGENT, Role.SUPERVISOR, Role.ADMIN}),
    Action.RETRY: frozenset({Role.FINANCE, Role.SUPERVISOR, Role.ADMIN}),
    Action.ESCALATE: _WORKERS,
    Action.LABEL: frozenset({Role.AGENT, Role.SUPERVISOR, Role.ADMIN}),
    Action.BULK: _LEADS,
    Action.SUPERVISE: _LEADS,
}


def role_may(role: Role, action: Action) -> bool:
    return role in ALLOWED[action]


@dataclass(frozen=True, slots=True)
class ConsoleUser:
    """The signed-in user: their tenants (all of them for a desk admin) and roles there."""

    id: str
    email: str
    name: str
    is_admin: bool
    totp: bool
    roles: dict[str, Role]  # tenant id -> role; every tenant for an admin
    tenant_names: dict[str, str]  # tenant id -> name, the tenant switcher's choices

    @property
    def actor(self) -> str:
        return f"user:{self.id}"

    @property
    def tenant_ids(self) -> list[str]:
        return list(self.roles)

    def role_in(self, tenant_id: str) -> Role | None:
        return self.roles.get(tenant_id)

    def may(self, action: Action, tenant_id: str) -> bool:
        role = self.roles.get(tenant_id)
        return role is not None and role_may(role, action)

    def require_tenant(self, tenant_id: str) -> Role:
        """The user's role in the tenant; NotFound when they are no member (as if none)."""
        role = self.roles.get(tenant_id)
        if role is None:
            raise NotFound("no such retailer")
        return role

    def require(self, action: Action, tenant_id: str) -> Role:
        role = self.require_tenant(tenant_id)
        if not role_may(role, action):
            raise Forbidden(f"the {role} role may not {action} here", action=str(action))
        return role

    def principal(self, tenant_id: str) -> Principal:
        return Principal(
            key_id=self.id,
            role=self.require_tenant(tenant_id),
            tenant_id=tenant_id,
            user_id=self.id,
        )


def load(session: Session, user_id: str) -> ConsoleUser | None:
    """The enabled user with this id and their tenants, or None."""
    user = session.get(User, user_id)
    if user is None or user.disabled_at is not None:
        return None
    names: dict[str, str] = {}
    roles: dict[str, Role] = {}
    if user.is_admin:
        for row in session.execute(select(Tenant.id, Tenant.name).order_by(Tenant.name)):
            names[row.id], roles[row.id] = row.name, Role.ADMIN
    else:
        for member in session.execute(
            select(Tenant.id, Tenant.name, Membership.role)
            .join(Membership, Membership.tenant_id == Tenant.id)
            .where(Membership.user_id == user_id)
            .order_by(Tenant.name)
        ):
            names[member.id], roles[member.id] = member.name, Role(member.role)
    return ConsoleUser(
        id=user.id,
        email=user.email,
        name=user.name,
        is_admin=user.is_admin,
        totp=user.totp_secret is not None,
        roles=roles,
        tenant_names=names,
    )

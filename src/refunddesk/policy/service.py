"""Policy versions per tenant: upload (validated), activate, and the active policy, cached."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Literal
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from refunddesk.core.clock import Clock, as_utc
from refunddesk.core.errors import NotFound
from refunddesk.policy.describe import describe
from refunddesk.policy.document import Policy, PolicyError, default_policy, parse_policy
from refunddesk.policy.orm import PolicyVersion
from refunddesk.policy.schemas import PolicyDetail, PolicyList, PolicyVersionPublic
from refunddesk.tenants.orm import Tenant

DEFAULT_VERSION = 0  # the built-in default policy, for tenants that never uploaded one


@dataclass(frozen=True, slots=True)
class ActivePolicy:
    policy: Policy
    version: int
    timezone: ZoneInfo


class PolicyCache:
    """Parsed policies by (tenant, version): versions never change, so entries never go stale."""

    def __init__(self) -> None:
        self._parsed: dict[tuple[str, int], Policy] = {}
        self._lock = threading.Lock()

    def parsed(self, session: Session, tenant_id: str, version: int) -> Policy:
        if version == DEFAULT_VERSION:
            return _DEFAULT
        key = (tenant_id, version)
        with self._lock:
            hit = self._parsed.get(key)
        if hit is not None:
            return hit
        row = session.get(PolicyVersion, (tenant_id, version))
        if row is None:
            raise NotFound(f"no policy version {version}")
        policy = parse_policy(row.source, fmt=row.format)  # type: ignore[arg-type]
        with self._lock:
            self._parsed[key] = policy
        return policy


_DEFAULT = default_policy()
CACHE = PolicyCache()


def active_policy(session: Session, *, tenant_id: str, cache: PolicyCache = CACHE) -> ActivePolicy:
    """The policy that decides this tenant's new refunds now, with its version and time zone."""
    row = session.execute(
        select(Tenant.active_policy_version, Tenant.timezone).where(Tenant.id == tenant_id)
    ).first()
    if row is None:
        raise NotFound(f"no tenant {tenant_id}")
    version = row.active_policy_version or DEFAULT_VERSION
    return ActivePolicy(cache.parsed(session, tenant_id, version), version, ZoneInfo(row.timezone))


def create_version(
    session: Session,
    *,
    clock: Clock,
    tenant_id: str,
    source: str,
    fmt: Literal["yaml", "toml"] = "yaml",
    note: str = "",
    actor: str,
) -> PolicyVersion:
    """Validate and store a new version (not active yet); a bad document raises PolicyError."""
    parse_policy(source, fmt=fmt)  # refuses with the line and field at fault; nothing stored
    tenant = session.scalars(select(Tenant).where(Tenant.id == tenant_id).with_for_update()).first()
    if tenant is None:
        raise NotFound(f"no tenant {tenant_id}")
    latest = session.scalar(
        select(func.coalesce(func.max(PolicyVersion.version), 0)).where(
            PolicyVersion.tenant_id == tenant_id
        )
    )
    row = PolicyVersion(
        tenant_id=tenant_id,
        version=int(latest or 0) + 1,
        source=source,
        format=fmt,
        note=note,
        created_at=clock.now(),
        created_by=actor,
        activated_at=None,
    )
    session.add(row)
    session.flush()
    return row


def activate(
    session: Session, *, clock: Clock, tenant_id: str, version: int, actor: str = "system"
) -> PolicyVersion:
    """Make version decide new refunds from now on; past decisions keep their version."""
    row = session.get(PolicyVersion, (tenant_id, version))
    if row is None:
        raise NotFound(f"no policy version {version}", field="version")
    tenant = session.get(Tenant, tenant_id, with_for_update=True)
    assert tenant is not None  # the version's foreign key guarantees it
    if tenant.active_policy_version == version:
        return row  # already active: keep the time it became so
    tenant.active_policy_version = version
    row.activated_at = clock.now()
    row.activated_by = actor
    return row


def list_versions(session: Session, *, tenant_id: str) -> list[PolicyVersion]:
    return list(
        session.scalars(
            select(PolicyVersion)
            .where(PolicyVersion.tenant_id == tenant_id)
            .order_by(PolicyVersion.version.desc())
        )
    )


# --- read models for the API, the CLI and the pages ------------------------------------------

BUILT_IN_AUTHOR = "refunddesk"


def _tenant(session: Session, tenant_id: str) -> Tenant:
    tenant = session.get(Tenant, tenant_id)
    if tenant is None:
        raise NotFound(f"no tenant {tenant_id}")
    return tenant


def _public(row: PolicyVersion, *, active_version: int, policy: Policy) -> PolicyVersionPublic:
    return PolicyVersionPublic(
        version=row.version,
        active=row.version == active_version,
        name=policy.name,
        format=row.format,
        note=row.note,
        created_by=row.created_by,
        created_at=as_utc(row.created_at),
        activated_at=as_utc(row.activated_at) if row.activated_at else None,
        activated_by=row.activated_by,
    )


def read_versions(session: Session, *, tenant_id: str, cache: PolicyCache = CACHE) -> PolicyList:
    """Every version of a tenant's policy, newest first, with which one is active."""
    active_version = _tenant(session, tenant_id).active_policy_version or DEFAULT_VERSION
    items = []
    for row in list_versions(session, tenant_id=tenant_id):
        try:
            policy = cache.parsed(session, tenant_id, row.version)
        except PolicyError:
            policy = Policy(name="(no longer valid)")
        items.append(_public(row, active_version=active_version, policy=policy))
    return PolicyList(active_version=active_version, items=items)


def read_version(
    session: Session, *, tenant_id: str, version: int, cache: PolicyCache = CACHE
) -> PolicyDetail:
    """One version with its source, the parsed document and the plain-language summary."""
    tenant = _tenant(session, tenant_id)
    active_version = tenant.active_policy_version or DEFAULT_VERSION
    if version == DEFAULT_VERSION:
        policy = _DEFAULT
        base = PolicyVersionPublic(
            version=DEFAULT_VERSION,
            active=active_version == DEFAULT_VERSION,
            name=policy.name,
            format="yaml",
            note="the built-in default, used until a version is activated",
            created_by=BUILT_IN_AUTHOR,
            created_at=as_utc(tenant.created_at),
            activated_at=None,
            activated_by=None,
        )
        source = ""
    else:
        row = session.get(PolicyVersion, (tenant_id, version))
        if row is None:
            raise NotFound(f"no policy version {version}", field="version")
        policy = cache.parsed(session, tenant_id, version)
        base = _public(row, active_version=active_version, policy=policy)
        source = row.source
    return PolicyDetail(
        **base.model_dump(),
        source=source,
        document=policy.model_dump(mode="json"),
        summary=describe(policy),
    )


def read_active(session: Session, *, tenant_id: str, cache: PolicyCache = CACHE) -> PolicyDetail:
    """The version deciding the tenant's new refunds now (version 0: the built-in default)."""
    version = _tenant(session, tenant_id).active_policy_version or DEFAULT_VERSION
    return read_version(session, tenant_id=tenant_id, version=version, cache=cache)

"""Create and check API keys; keys are random and stored as SHA-256 hashes."""

from __future__ import annotations

import hashlib
import secrets
import threading
import time

from sqlalchemy import select
from sqlalchemy.orm import Session

from refunddesk.auth.domain import TENANT_ROLES, Principal, Role
from refunddesk.auth.orm import ApiKey
from refunddesk.core.clock import Clock
from refunddesk.core.errors import Invalid, NotFound, Unauthorized
from refunddesk.core.ids import new_id
from refunddesk.tenants.orm import Tenant

KEY_PREFIX = "rd_"


def hash_key(raw: str) -> str:
    """SHA-256 suffices: keys carry 256 random bits, so there is nothing to brute-force."""
    return hashlib.sha256(raw.encode()).hexdigest()


def create_key(
    session: Session, *, clock: Clock, role: Role, tenant_id: str | None, name: str = ""
) -> str:
    """Store a new key and return it in clear: the only time it is ever shown."""
    if role is Role.ADMIN and tenant_id is not None:
        raise Invalid("admin keys are desk-wide and take no tenant", field="tenant")
    if role in TENANT_ROLES:
        if tenant_id is None:
            raise Invalid(f"a {role} key needs a tenant", field="tenant")
        if session.get(Tenant, tenant_id) is None:
            raise NotFound(f"no tenant {tenant_id}", field="tenant")
    raw = KEY_PREFIX + secrets.token_urlsafe(32)
    session.add(
        ApiKey(
            id=new_id(),
            tenant_id=tenant_id,
            role=str(role),
            key_hash=hash_key(raw),
            prefix=raw[:10],
            name=name,
            created_at=clock.now(),
            revoked_at=None,
        )
    )
    return raw


class KeyAuthenticator:
    """Resolve bearer keys to principals, caching hits briefly to keep the hot path cheap."""

    def __init__(self, *, cache_seconds: float) -> None:
        self._ttl = cache_seconds
        self._cache: dict[str, tuple[float, Principal]] = {}
        self._lock = threading.Lock()

    def cached(self, raw: str) -> Principal | None:
        """The key's principal if it was checked within the cache time, else None."""
        with self._lock:
            hit = self._cache.get(hash_key(raw))
        return hit[1] if hit and hit[0] > time.monotonic() else None

    def lookup(self, session: Session, raw: str) -> Principal:
        """The key's principal as stored (admin keys have no tenant yet)."""
        digest = hash_key(raw)
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(digest)
        if hit and hit[0] > now:
            return hit[1]
        row = session.execute(
            select(ApiKey.id, ApiKey.role, ApiKey.tenant_id).where(
                ApiKey.key_hash == digest, ApiKey.revoked_at.is_(None)
            )
        ).first()
        if row is None:
            raise Unauthorized("unknown or revoked API key")
        view = Principal(key_id=row.id, role=Role(row.role), tenant_id=row.tenant_id)
        if self._ttl > 0:
            with self._lock:
                if len(self._cache) > 10_000:
                    self._cache.clear()
                self._cache[digest] = (now + self._ttl, view)
        return view


def principal_for(key: Principal, *, tenant_header: str | None) -> Principal:
    """The principal a request acts as: admin keys take their tenant from X-Tenant-Id."""
    if key.role is Role.ADMIN:
        return Principal(key_id=key.key_id, role=key.role, tenant_id=tenant_header or None)
    return Principal(key_id=key.key_id, role=key.role, tenant_id=key.tenant_id)

"""Annotated dependencies: the container, sessions and the acting principal."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session

from refunddesk.auth.domain import Principal, Role
from refunddesk.auth.service import principal_for
from refunddesk.bootstrap import Container
from refunddesk.core.errors import NotFound, Unauthorized
from refunddesk.tenants.orm import Tenant


async def get_container(request: Request) -> Container:
    """The app's container (async: no thread hop for a dictionary lookup)."""
    container: Container = request.app.state.container
    return container


ContainerDep = Annotated[Container, Depends(get_container)]


def read_session(container: ContainerDep) -> Iterator[Session]:
    with container.db.read() as session:
        yield session


ReadSession = Annotated[Session, Depends(read_session)]


async def get_principal(
    container: ContainerDep,
    authorization: Annotated[str | None, Header(description="Bearer <api key>")] = None,
    x_tenant_id: Annotated[
        str | None, Header(max_length=64, description="admin keys: the tenant to act on")
    ] = None,
) -> Principal:
    if not authorization or not authorization.lower().startswith("bearer "):
        raise Unauthorized("send an API key as 'Authorization: Bearer <key>'")
    raw = authorization[7:].strip()
    if not raw or len(raw) > 200:
        raise Unauthorized("unknown or revoked API key")
    cached = container.authenticator.cached(raw)
    if cached is not None and cached.role is not Role.ADMIN:
        return principal_for(cached, tenant_header=x_tenant_id)  # the hot path: no I/O
    return await run_in_threadpool(_lookup, container, raw, x_tenant_id)


def _lookup(container: Container, raw: str, x_tenant_id: str | None) -> Principal:
    with container.db.read() as session:
        key = container.authenticator.lookup(session, raw)
        principal = principal_for(key, tenant_header=x_tenant_id)
        if (
            key.role is Role.ADMIN
            and principal.tenant_id is not None
            and session.get(Tenant, principal.tenant_id) is None
        ):
            raise NotFound(f"no tenant {principal.tenant_id}", field="X-Tenant-Id")
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]

"""HTTP routes for policy versions: list, upload, read, activate."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from refunddesk.api.deps import ContainerDep, PrincipalDep, ReadSession
from refunddesk.api.errors import problem
from refunddesk.auth.domain import Permission
from refunddesk.bootstrap import Container
from refunddesk.core.errors import DomainError
from refunddesk.policy import service
from refunddesk.policy.document import PolicyError, Problem
from refunddesk.policy.schemas import (
    MAX_NOTE,
    PolicyCreate,
    PolicyDetail,
    PolicyList,
    PolicyVersionPublic,
)

router = APIRouter(prefix="/v1/policies", tags=["policies"])
Version = Annotated[int, Path(ge=0, le=2_147_483_647, description="0 is the built-in default")]
Format = Literal["yaml", "toml"]

RAW_TYPES: dict[str, Format] = {
    "application/yaml": "yaml",
    "application/x-yaml": "yaml",
    "text/yaml": "yaml",
    "application/toml": "toml",
}
_RAW_SCHEMA = {"type": "string", "description": "the policy document itself"}
CREATE_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": PolicyCreate.model_json_schema()},
            "application/yaml": {"schema": _RAW_SCHEMA},
            "text/yaml": {"schema": _RAW_SCHEMA},
            "application/toml": {"schema": _RAW_SCHEMA},
        },
    }
}


class UnsupportedMediaType(DomainError):
    code = "unsupported_media_type"
    status = 415
    title = "Unsupported media type"


def policy_problem(exc: PolicyError) -> Response:
    """422 naming every problem with its line (when known), field and message."""
    errors = [
        {"field": p.path or "policy", "line": p.line, "message": p.message, "type": exc.code}
        for p in exc.problems
    ]
    return problem(422, exc.title, exc.detail, code=exc.code, errors=errors)


async def _document(request: Request) -> tuple[str, Format, str | None]:
    """(source, format, note) from a raw YAML/TOML body or a JSON one."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = await request.body()
    if media in RAW_TYPES:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise PolicyError([Problem(None, "", "the document is not valid UTF-8 text")]) from None
        return text.removeprefix("\ufeff"), RAW_TYPES[media], None
    if media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    ):
        try:
            data = PolicyCreate.model_validate_json(body)
        except ValidationError as exc:
            raise RequestValidationError(
                [{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]
            ) from None
        return data.source, data.format, data.note
    raise UnsupportedMediaType(
        "send the policy as application/yaml, text/yaml or application/toml, or as JSON "
        '{"source": ..., "format": "yaml"|"toml"}'
    )


@router.get("", operation_id="list_policies")
def list_policies(principal: PrincipalDep, session: ReadSession) -> PolicyList:
    """Every version of this tenant's policy, newest first, and which one is active."""
    principal.require(Permission.READ)
    return service.read_versions(session, tenant_id=principal.require_tenant())


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    operation_id="create_policy",
    response_model=PolicyDetail,
    openapi_extra=CREATE_BODY,
    responses={422: {"description": "the document is invalid; errors[] name line and field"}},
)
async def create_policy(
    request: Request,
    principal: PrincipalDep,
    container: ContainerDep,
    activate: Annotated[bool, Query(description="make it the active version at once")] = False,
    note: Annotated[
        str | None, Query(max_length=MAX_NOTE, description="for a raw YAML or TOML body")
    ] = None,
) -> PolicyDetail | Response:
    """Store a new version (validated; refused with line and field); optionally activate it."""
    principal.require(Permission.MANAGE_POLICY)
    tenant_id = principal.require_tenant()
    try:
        source, fmt, body_note = await _document(request)
        if "\x00" in source:
            raise PolicyError([Problem(None, "", "the document may not contain NUL characters")])
        return await run_in_threadpool(
            _create,
            container,
            tenant_id,
            source,
            fmt,
            body_note or note or "",
            principal.actor,
            activate,
        )
    except PolicyError as exc:  # every problem with its own line and field, not one summary
        return policy_problem(exc)


def _create(
    container: Container,
    tenant_id: str,
    source: str,
    fmt: Format,
    note: str,
    actor: str,
    activate: bool,
) -> PolicyDetail:
    with container.db.write() as session:
        row = service.create_version(
            session,
            clock=container.clock,
            tenant_id=tenant_id,
            source=source,
            fmt=fmt,
            note=note,
            actor=actor,
        )
        if activate:
            service.activate(
                session,
                clock=container.clock,
                tenant_id=tenant_id,
                version=row.version,
                actor=actor,
            )
        session.flush()
        return service.read_version(session, tenant_id=tenant_id, version=row.version)


@router.get("/active", operation_id="get_active_policy")
def get_active_policy(principal: PrincipalDep, session: ReadSession) -> PolicyDetail:
    """The version deciding new refunds now, in plain language too."""
    principal.require(Permission.READ)
    return service.read_active(session, tenant_id=principal.require_tenant())


@router.get("/{version}", operation_id="get_policy")
def get_policy(version: Version, principal: PrincipalDep, session: ReadSession) -> PolicyDetail:
    """One version: its source, the parsed document and a plain-language summary."""
    principal.require(Permission.READ)
    return service.read_version(session, tenant_id=principal.require_tenant(), version=version)


@router.post("/{version}/activate", operation_id="activate_policy")
def activate_policy(
    version: Version, principal: PrincipalDep, container: ContainerDep
) -> PolicyVersionPublic:
    """Make this version decide new refunds from now on; past decisions keep their version."""
    principal.require(Permission.MANAGE_POLICY)
    tenant_id = principal.require_tenant()
    with container.db.write() as session:
        service.activate(
            session,
            clock=container.clock,
            tenant_id=tenant_id,
            version=version,
            actor=principal.actor,
        )
        session.flush()
        detail = service.read_version(session, tenant_id=tenant_id, version=version)
    return PolicyVersionPublic(**detail.model_dump(include=set(PolicyVersionPublic.model_fields)))

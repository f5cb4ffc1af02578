"""HTTP routes for policy versions: list, upload, read, activate, and backtest a draft."""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Path, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import ConfigDict, Field, ValidationError

from refunddesk.api.deps import ContainerDep, PrincipalDep, ReadSession
from refunddesk.api.errors import problem
from refunddesk.auth.domain import Permission
from refunddesk.bootstrap import Container
from refunddesk.core.errors import DomainError
from refunddesk.core.schemas import StrictModel
from refunddesk.policy import service
from refunddesk.policy.backtest import backtest
from refunddesk.policy.document import Policy, PolicyError, Problem, parse_policy
from refunddesk.policy.schemas import (
    MAX_NOTE,
    PolicyCreate,
    PolicyDetail,
    PolicyList,
    PolicyVersionPublic,
)
from refunddesk.tenants.orm import Tenant

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


class BacktestRequest(StrictModel):
    """A draft policy to replay the tenant's stored refunds against."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)

    # Small enough that even a one-too-long, fully escaped draft stays under the body limit.
    source: Annotated[str, Field(max_length=100_000, description="the draft's YAML or TOML")]
    format: Format = "yaml"
    since: date | None = Field(default=None, description="only refunds asked from this day on")


@router.post("/backtest", operation_id="backtest_policy", response_model=dict[str, Any])
async def backtest_policy(
    body: BacktestRequest, principal: PrincipalDep, container: ContainerDep
) -> Response | dict[str, Any]:
    """Replay stored refunds against a draft and report what would change; writes nothing."""
    principal.require(Permission.MANAGE_POLICY)
    tenant_id = principal.require_tenant()
    try:
        draft = parse_policy(body.source, fmt=body.format)
    except PolicyError as exc:
        return policy_problem(exc)
    return await run_in_threadpool(_backtest, container, tenant_id, draft, body.since)


def _backtest(
    container: Container, tenant_id: str, draft: Policy, since: date | None
) -> dict[str, Any]:
    with container.db.read() as session:
        tenant = session.get(Tenant, tenant_id)
        zone = ZoneInfo(tenant.timezone) if tenant is not None else ZoneInfo("UTC")
        start = datetime.combine(since, time.min, tzinfo=zone) if since else None
        return backtest(session, tenant_id=tenant_id, policy=draft, since=start).to_dict()

"""Every error leaves as application/problem+json (RFC 9457)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from refunddesk.core.errors import DomainError

log = logging.getLogger(__name__)
PROBLEM = "application/problem+json"
TYPE_BASE = "https://refunddesk.dev/problems/"


def problem(
    status: int,
    title: str,
    detail: str,
    *,
    code: str,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body = {
        "type": TYPE_BASE + code,
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        **extra,
    }
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def _field(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [p for p in loc if p not in ("body", "query", "path", "header")]
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or (str(loc[0]) if loc else "")


def _is_json(content_type: str | None) -> bool:
    media = (content_type or "").split(";")[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def _validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = []
    for error in exc.errors():
        if error.get("type") == "json_invalid":
            return problem(
                400, "Malformed JSON", "the request body is not valid JSON", code="malformed_json"
            )
        # FastAPI hands a non-JSON body to the model as bytes; say what is actually wrong.
        if (
            tuple(error.get("loc", ())) == ("body",)
            and error.get("type") != "missing"
            and not _is_json(request.headers.get("content-type"))
        ):
            return problem(
                415,
                "Unsupported media type",
                "send the body as JSON with 'Content-Type: application/json'",
                code="unsupported_media_type",
            )
        message = str(error.get("msg", "invalid"))
        errors.append(
            {"field": _field(error.get("loc", ())), "message": message, "type": error.get("type")}
        )
    first = errors[0] if errors else {"field": "", "message": "invalid"}
    return problem(
        422,
        "Validation failed",
        f"{first['field']}: {first['message']}",
        code="validation_failed",
        errors=errors,
    )


def _domain(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DomainError)
    extra: dict[str, Any] = {k: v for k, v in exc.extra.items()}
    if exc.field:
        extra["errors"] = [{"field": exc.field, "message": exc.detail, "type": exc.code}]
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return problem(exc.status, exc.title, exc.detail, code=exc.code, headers=headers, **extra)


def _http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    titles = {
        404: "Not found",
        405: "Method not allowed",
        413: "Request body too large",
        415: "Unsupported media type",
        400: "Bad request",
        429: "Too many requests",
    }
    title = titles.get(exc.status_code, "Error")
    return problem(
        exc.status_code,
        title,
        str(exc.detail),
        code=title.lower().replace(" ", "_"),
        headers=dict(exc.headers) if exc.headers else None,
    )


def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return problem(
        500,
        "Internal error",
        "something went wrong on our side; it was logged",
        code="internal_error",
    )


PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "type": "object",
    "description": "An RFC 9457 problem; errors[] names each field that was refused.",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "code": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["field", "message"],
                "properties": {
                    "field": {"type": "string"},
                    "message": {"type": "string"},
                    "type": {"type": ["string", "null"]},
                },
            },
        },
    },
}


def _document_problems(spec: dict[str, Any]) -> None:
    """Say in the schema what errors really look like: problem+json, not FastAPI's 422 body."""
    spec.setdefault("components", {}).setdefault("schemas", {})["Problem"] = PROBLEM_SCHEMA
    content = {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for path in spec.get("paths", {}).values():
        for operation in path.values():
            responses = operation.setdefault("responses", {})
            if "422" in responses:
                responses["422"] = {"description": "Validation failed", "content": content}
            responses.setdefault("default", {"description": "An error", "content": content})
    schemas = spec["components"]["schemas"]
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(DomainError, _domain)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(Exception, _unexpected)
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        fresh = app.openapi_schema is None
        spec = generate()
        if fresh or "Problem" not in spec.get("components", {}).get("schemas", {}):
            _document_problems(spec)
        return spec

    app.openapi = openapi  # type: ignore[method-assign]

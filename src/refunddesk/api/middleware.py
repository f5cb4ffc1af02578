"""ASGI middleware: body size limit and request metrics."""

from __future__ import annotations

import json
import logging
import time

from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUESTS = Counter("refunddesk_http_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram(
    "refunddesk_http_request_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)


def _too_large(limit: int) -> tuple[Message, Message]:
    body = json.dumps(
        {
            "type": "https://refunddesk.dev/problems/request_too_large",
            "title": "Request body too large",
            "status": 413,
            "detail": f"the body may be at most {limit} bytes",
            "code": "request_too_large",
        }
    ).encode()
    start: Message = {
        "type": "http.response.start",
        "status": 413,
        "headers": [
            (b"content-type", b"application/problem+json"),
            (b"content-length", str(len(body)).encode()),
        ],
    }
    return start, {"type": "http.response.body", "body": body}


class BodyLimit:
    """Refuse bodies over limit bytes, by Content-Length or while streaming.

    `larger` allows bigger bodies on the paths it names exactly (the portal's photo upload).
    """

    def __init__(self, app: ASGIApp, limit: int, larger: dict[str, int] | None = None) -> None:
        self.app = app
        self.default = limit
        self.larger = larger or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.larger.get(scope.get("path", ""), self.default)
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    too_big = int(value) > limit
                except ValueError:
                    too_big = False
                if too_big:
                    for message in _too_large(limit):
                        await send(message)
                    return
        seen = 0
        started = False
        exceeded = False

        async def limited_receive() -> Message:
            nonlocal seen, exceeded
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    exceeded = True
                    raise _BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if exceeded:
                # The app caught _BodyTooLarge while reading the body (FastAPI turns it into a
                # 400); answer 413 in place of whatever it says.
                if message["type"] == "http.response.start" and not started:
                    started = True
                    for reply in _too_large(limit):
                        await send(reply)
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            if not started:
                for message in _too_large(limit):
                    await send(message)


class _BodyTooLarge(Exception):
    pass


class RefuseNul:
    """Refuse a NUL in the path or query string: PostgreSQL text cannot hold one."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (
            "\x00" in scope.get("path", "") or b"%00" in scope.get("query_string", b"")
        ):
            body = json.dumps(
                {
                    "type": "https://refunddesk.dev/problems/bad_request",
                    "title": "Bad request",
                    "status": 400,
                    "detail": "the path and query may not contain NUL characters",
                    "code": "bad_request",
                }
            ).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 400,
                    "headers": [
                        (b"content-type", b"application/problem+json"),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)


ACCESS_LOG = logging.getLogger("refunddesk.access")


class Metrics:
    """Count, time and log requests by route template (raw paths would explode labels)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            elapsed = time.perf_counter() - started
            REQUESTS.labels(scope["method"], path, str(status)).inc()
            LATENCY.labels(scope["method"], path).observe(elapsed)
            if ACCESS_LOG.isEnabledFor(logging.INFO):
                ACCESS_LOG.info(
                    "%s %s %s %.1fms",
                    scope["method"],
                    scope.get("path", ""),
                    status,
                    elapsed * 1000,
                    extra={
                        "method": scope["method"],
                        "route": path,
                        "status": status,
                        "duration_ms": round(elapsed * 1000, 2),
                    },
                )

"""Session, CSRF and response-header helpers for the server-rendered pages."""

from __future__ import annotations

import hmac
import secrets
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

CSRF_FIELD = "csrf_token"
SESSION_COOKIE = "refunddesk_session"
SESSION_MAX_AGE = 8 * 3600  # one working shift
_CSRF_KEY = "csrf"
_DESK_KEY = "desk"
_SECOND_FACTOR_KEY = "second_factor"
SECOND_FACTOR_SECONDS = 300  # to type the code after the password

# No inline script or style anywhere, so the policy can stay strict; SVG uses attributes.
CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def csrf_token(request: Request) -> str:
    """This session's CSRF token, made on first use."""
    token = request.session.get(_CSRF_KEY)
    if not isinstance(token, str) or len(token) < 32:
        token = secrets.token_urlsafe(32)
        request.session[_CSRF_KEY] = token
    return token


def csrf_valid(request: Request, submitted: object) -> bool:
    """Whether a submitted token is this session's, compared in constant time."""
    expected = request.session.get(_CSRF_KEY)
    if not isinstance(expected, str) or not isinstance(submitted, str) or not submitted:
        return False
    return hmac.compare_digest(expected.encode(), submitted.encode("utf-8", "replace"))


def sign_in(request: Request, *, user_id: str) -> None:
    """Start a desk session: a fresh session (and CSRF token) so nothing carries over."""
    request.session.clear()
    request.session[_DESK_KEY] = {"user_id": user_id}
    csrf_token(request)


def sign_out(request: Request) -> None:
    request.session.clear()


def forget_user(request: Request) -> None:
    """Drop a signed-in user the desk no longer accepts (a sign-in half done stays)."""
    if request.session.pop(_DESK_KEY, None) is not None:
        request.session.clear()


def desk_user_id(request: Request) -> str | None:
    """The id of the user the session signed in as, if any."""
    value: Any = request.session.get(_DESK_KEY)
    if not isinstance(value, dict):
        return None
    user_id = value.get("user_id")
    return user_id if isinstance(user_id, str) and 0 < len(user_id) <= 26 else None


def start_second_factor(request: Request, *, user_id: str, now: float) -> None:
    """The password was right: remember whose code to ask for (not signed in yet)."""
    request.session.clear()
    request.session[_SECOND_FACTOR_KEY] = {"user_id": user_id, "at": now}
    csrf_token(request)


def second_factor_user(request: Request, *, now: float) -> str | None:
    """The user whose TOTP code is awaited, for a few minutes after the password."""
    value: Any = request.session.get(_SECOND_FACTOR_KEY)
    if not isinstance(value, dict):
        return None
    user_id, at = value.get("user_id"), value.get("at")
    if not isinstance(user_id, str) or not isinstance(at, int | float):
        return None
    return user_id if 0 <= now - at <= SECOND_FACTOR_SECONDS else None


def flash(request: Request, message: str, kind: str = "info") -> None:
    request.session["flash"] = {"message": message, "kind": kind}


def pop_flash(request: Request) -> dict[str, str] | None:
    value: Any = request.session.pop("flash", None)
    if isinstance(value, dict) and isinstance(value.get("message"), str):
        return {"message": value["message"], "kind": str(value.get("kind", "info"))}
    return None


def secure(response: Response) -> Response:
    """Add the page security headers to a response."""
    for name, value in PAGE_HEADERS.items():
        response.headers.setdefault(name, value)
    return response

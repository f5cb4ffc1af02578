"""Domain errors: services raise these; the API maps them to problem+json."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """Base of every error a user can cause; carries a stable machine code."""

    code: str = "domain_error"
    status: int = 400
    title: str = "Request cannot be processed"

    def __init__(self, detail: str, *, field: str | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field
        self.extra = extra


class NotFound(DomainError):
    code = "not_found"
    status = 404
    title = "Not found"


class Conflict(DomainError):
    code = "conflict"
    status = 409
    title = "Conflict"


class IllegalTransition(Conflict):
    code = "illegal_transition"
    title = "Illegal state transition"


class IdempotencyConflict(Conflict):
    code = "idempotency_key_reused"
    title = "Idempotency key reused with a different request"


class Invalid(DomainError):
    """The request is well formed but breaks a business rule."""

    code = "invalid"
    status = 422
    title = "Invalid request"


class InvalidCurrency(Invalid):
    code = "invalid_currency"
    title = "Invalid currency"


class CurrencyMismatch(Invalid):
    code = "currency_mismatch"
    title = "Currency does not match"


class OverBudget(Invalid):
    code = "over_refund_budget"
    title = "Refund exceeds what is left to refund on the order"


class Forbidden(DomainError):
    code = "forbidden"
    status = 403
    title = "Forbidden"


class Unauthorized(DomainError):
    code = "unauthorized"
    status = 401
    title = "Unauthorized"


class Unavailable(DomainError):
    """Something this request depends on is down; the caller should try again later."""

    code = "unavailable"
    status = 503
    title = "Service unavailable"

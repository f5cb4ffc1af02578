"""A fake PayPal REST API: OAuth, capture refunds, refund lookup and webhook verification.

What it does like PayPal: client-credentials tokens that expire; ``PayPal-Request-Id``
replays the first answer without a second refund; amounts are decimal strings checked
against PayPal's rules (no decimals for HUF, JPY, TWD; only PayPal's currencies); refunds
beyond what is left of the capture are refused (``REFUND_AMOUNT_EXCEEDED``,
``CAPTURE_FULLY_REFUNDED``); refunds are COMPLETED or PENDING; webhooks it sends carry
PayPal's transmission headers and ``/v1/notifications/verify-webhook-signature`` answers
SUCCESS only for an unaltered event sent to the configured webhook id. (Real PayPal signs
with an RSA certificate; the fake uses an HMAC, which the adapter never sees.)

Outcomes by capture id (case-insensitive substring): ``decline`` -> REFUND_NOT_ALLOWED,
``nofunds`` -> REFUND_FAILED_INSUFFICIENT_FUNDS, ``dispute`` -> TRANSACTION_DISPUTED,
``pending`` -> a PENDING refund until ``settle()``, ``unknown`` -> 404. Any other id is a
capture of ``default_capture`` in the refund's currency, created on first use.

Run it: ``python -m refunddesk.payouts.fakes.paypal --port 8102 --notify-url URL``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from refunddesk.payouts.fakes._server import run_forever, serve_in_thread

DEFAULT_CLIENT_ID = "fake-client-id"
DEFAULT_CLIENT_SECRET = "fake-client-secret"  # noqa: S105 - a fake's well-known test value
DEFAULT_WEBHOOK_ID = "8PT597110X687430LKGECATA"

# PayPal's currency codes for payments, and those it takes in whole units only.
CURRENCIES = frozenset(
    {"AUD", "BRL", "CAD", "CNY", "CZK", "DKK", "EUR", "HKD", "HUF", "ILS", "JPY", "MYR"}
    | {"MXN", "TWD", "NZD", "NOK", "PHP", "PLN", "GBP", "SGD", "SEK", "CHF", "THB", "USD"}
)
WHOLE_UNITS = frozenset({"HUF", "JPY", "TWD"})
_VALUE = re.compile(r"^[0-9]{1,10}(\.[0-9]+)?$")

# Capture id substring -> (issue, description) of PayPal's 422 answer.
REFUSALS = {
    "decline": ("REFUND_NOT_ALLOWED", "Capture cannot be refunded."),
    "nofunds": (
        "REFUND_FAILED_INSUFFICIENT_FUNDS",
        "Capture could not be refunded due to insufficient funds.",
    ),
    "dispute": (
        "TRANSACTION_DISPUTED",
        "Partial refunds cannot be offered at this time because there is an open case on "
        "this transaction.",
    ),
}


@dataclass
class Capture:
    id: str
    amount: Decimal
    currency: str


@dataclass
class Refund:
    id: str
    capture_id: str
    amount: Decimal
    currency: str
    invoice_id: str | None
    custom_id: str | None
    request_id: str | None
    status: str  # COMPLETED | PENDING | FAILED | CANCELLED
    status_reason: str | None
    create_time: str
    update_time: str
    acquirer_reference_number: str

    def resource(self, base_url: str = "https://api.paypal.com") -> dict[str, Any]:
        """The refund as PayPal shows it (``return=representation``)."""
        data: dict[str, Any] = {
            "id": self.id,
            "amount": {"currency_code": self.currency, "value": _money(self.amount, self.currency)},
            "status": self.status,
            "acquirer_reference_number": self.acquirer_reference_number,
            "create_time": self.create_time,
            "update_time": self.update_time,
            "links": [
                {
                    "href": f"{base_url}/v2/payments/refunds/{self.id}",
                    "rel": "self",
                    "method": "GET",
                },
                {
                    "href": f"{base_url}/v2/payments/captures/{self.capture_id}",
                    "rel": "up",
                    "method": "GET",
                },
            ],
        }
        if self.invoice_id:
            data["invoice_id"] = self.invoice_id
        if self.custom_id:
            data["custom_id"] = self.custom_id
        if self.status_reason:
            data["status_details"] = {"reason": self.status_reason}
        return data


@dataclass
class Call:
    method: str
    path: str
    request_id: str | None
    status: int


@dataclass
class FakePayPal:
    """The fake's state: captures, refunds, tokens, calls, and knobs tests can turn."""

    client_id: str = DEFAULT_CLIENT_ID
    client_secret: str = DEFAULT_CLIENT_SECRET
    webhook_id: str = DEFAULT_WEBHOOK_ID
    token_ttl: int = 32_400  # seconds, as PayPal's sandbox gives
    default_capture: Decimal | None = Decimal(100_000)  # None: unknown captures are 404
    latency_ms: float = 0.0  # delay before answering (after the refund is made)
    notify_url: str | None = None
    notify_delay: float = 0.0
    force_verification: str | None = None  # "FAILURE" to refuse every signature
    captures: dict[str, Capture] = field(default_factory=dict)
    refunds: dict[str, Refund] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    fail_next: list[int] = field(default_factory=list)  # HTTP statuses for the next API calls
    tokens_issued: int = 0
    deliveries: list[tuple[str, int | None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.lock = threading.RLock()
        self._secret = secrets.token_bytes(32)
        self._tokens: dict[str, float] = {}
        self._answers: dict[str, tuple[str, int, dict[str, Any]]] = {}

    # -- what tests read -------------------------------------------------------------

    def reset(self, **settings: Any) -> None:
        """Forget everything and start again with ``settings`` (one served fake, many tests)."""
        with self.lock:
            self.__dict__.update(type(self)(**settings).__dict__)

    def add_capture(self, capture_id: str, amount: str, currency: str) -> None:
        with self.lock:
            self.captures[capture_id] = Capture(capture_id, Decimal(amount), currency)

    def refunds_for(self, capture_id: str) -> list[Refund]:
        with self.lock:
            return [r for r in self.refunds.values() if r.capture_id == capture_id]

    def forget_request_ids(self) -> None:
        """Drop the remembered PayPal-Request-Ids, as PayPal does after a while."""
        with self.lock:
            self._answers.clear()

    def expire_tokens(self) -> None:
        """Make every issued token invalid, as if they had all expired."""
        with self.lock:
            self._tokens.clear()

    # -- webhooks --------------------------------------------------------------------

    def _signature(self, transmission_id: str, time_: str, webhook_id: str, event: Any) -> str:
        canonical = json.dumps(event, sort_keys=True, separators=(",", ":")).encode()
        message = f"{transmission_id}|{time_}|{webhook_id}|{zlib.crc32(canonical)}"
        return base64.b64encode(
            hmac.new(self._secret, message.encode(), hashlib.sha256).digest()
        ).decode()

    def signed_webhook(
        self, event_type: str, resource: dict[str, Any], *, resource_type: str = "refund"
    ) -> tuple[dict[str, str], bytes]:
        """A webhook as PayPal would POST it: (headers, body)."""
        now = _now()
        event = {
            "id": f"WH-{secrets.token_hex(8).upper()}-{secrets.token_hex(8).upper()}",
            "event_version": "1.0",
            "create_time": now,
            "resource_type": resource_type,
            "resource_version": "2.0",
            "event_type": event_type,
            "summary": f"{event_type} (fake)",
            "resource": resource,
        }
        transmission_id = secrets.token_hex(16)
        headers = {
            "Content-Type": "application/json",
            "PAYPAL-AUTH-ALGO": "SHA256withRSA",
            "PAYPAL-CERT-URL": "https://api.sandbox.paypal.com/v1/notifications/certs/CERT-fake",
            "PAYPAL-TRANSMISSION-ID": transmission_id,
            "PAYPAL-TRANSMISSION-SIG": self._signature(
                transmission_id, now, self.webhook_id, event
            ),
            "PAYPAL-TRANSMISSION-TIME": now,
        }
        return headers, json.dumps(event).encode()

    def deliver(
        self, url: str, headers: dict[str, str], body: bytes, *, attempts: int = 1
    ) -> int | None:
        status: int | None = None
        for attempt in range(attempts):
            try:
                status = httpx.post(url, content=body, headers=headers, timeout=10).status_code
            except httpx.HTTPError:
                status = None
            with self.lock:
                self.deliveries.append((url, status))
            if status is not None and 200 <= status < 300:
                break
            time.sleep(min(0.2 * 2**attempt, 5.0))
        return status

    def settle(self, refund_id: str, status: str = "COMPLETED") -> dict[str, Any]:
        """Decide a pending refund; a COMPLETED one is announced by webhook if notify_url."""
        with self.lock:
            refund = self.refunds[refund_id]
            refund.status = status
            refund.status_reason = None
            refund.update_time = _now()
            resource = refund.resource()
        if status == "COMPLETED" and self.notify_url:
            headers, body = self.signed_webhook("PAYMENT.CAPTURE.REFUNDED", resource)
            self.deliver(self.notify_url, headers, body, attempts=5)
        return resource

    # -- the API ---------------------------------------------------------------------

    def _issue_token(
        self, authorization: str | None, grant_type: str | None
    ) -> tuple[int, dict[str, Any]]:
        credentials = _basic(authorization)
        if credentials != (self.client_id, self.client_secret):
            return 401, {
                "error": "invalid_client",
                "error_description": "Client Authentication failed",
            }
        if grant_type != "client_credentials":
            return 400, {
                "error": "unsupported_grant_type",
                "error_description": "Grant Type is NULL",
            }
        token = f"A21AA{secrets.token_urlsafe(24)}"
        self._tokens[token] = time.monotonic() + self.token_ttl
        self.tokens_issued += 1
        return 200, {
            "scope": "https://uri.paypal.com/services/payments/refund",
            "access_token": token,
            "token_type": "Bearer",
            "app_id": "APP-FAKE",
            "expires_in": self.token_ttl,
            "nonce": secrets.token_hex(8),
        }

    def _authorized(self, authorization: str | None) -> bool:
        if not authorization or not authorization.startswith("Bearer "):
            return False
        expires = self._tokens.get(authorization.removeprefix("Bearer "))
        return expires is not None and time.monotonic() < expires

    def _refund(
        self, capture_id: str, request_id: str | None, body: dict[str, Any]
    ) -> tuple[int, dict[str, Any], Refund | None]:
        fingerprint = json.dumps([capture_id, body], sort_keys=True)
        if request_id is not None and request_id in self._answers:
            seen, status, answer = self._answers[request_id]
            if seen == fingerprint:
                return status, answer, None
            return (
                422,
                _unprocessable("DUPLICATE_REQUEST_ID", "Request id reused with another body."),
                None,
            )
        status, answer, refund = self._new_refund(capture_id, request_id, body)
        if request_id is not None:
            self._answers[request_id] = (fingerprint, status, answer)
        return status, answer, refund

    def _new_refund(
        self, capture_id: str, request_id: str | None, body: dict[str, Any]
    ) -> tuple[int, dict[str, Any], Refund | None]:
        amount = body.get("amount")
        if not isinstance(amount, dict):
            return 400, _invalid("MISSING_REQUIRED_PARAMETER", "amount is required (fake)."), None
        currency, value = amount.get("currency_code"), amount.get("value")
        if not isinstance(value, str) or not _VALUE.match(value):
            return (
                400,
                _invalid("INVALID_PARAMETER_SYNTAX", "amount.value is not a decimal string."),
                None,
            )
        if currency not in CURRENCIES:
            return (
                422,
                _unprocessable("CURRENCY_NOT_SUPPORTED", f"{currency} is not supported."),
                None,
            )
        decimal = Decimal(value)
        places = len(value.partition(".")[2])
        if currency in WHOLE_UNITS and places:
            return (
                422,
                _unprocessable("DECIMALS_NOT_SUPPORTED", f"{currency} takes no decimals."),
                None,
            )
        if places > 2:
            return 422, _unprocessable("DECIMAL_PRECISION", "Too many decimal places."), None
        if decimal <= 0:
            return 422, _unprocessable("CANNOT_BE_ZERO_OR_NEGATIVE", "Must be above zero."), None
        lowered = capture_id.lower()
        capture = self.captures.get(capture_id)
        if capture is None and "unknown" not in lowered and self.default_capture is not None:
            capture = Capture(capture_id, self.default_capture, currency)
            self.captures[capture_id] = capture
        if capture is None:
            return (
                404,
                {
                    "name": "RESOURCE_NOT_FOUND",
                    "message": "The specified resource does not exist.",
                    "details": [
                        {
                            "issue": "INVALID_RESOURCE_ID",
                            "description": "Specified resource ID does not exist.",
                        }
                    ],
                },
                None,
            )
        if currency != capture.currency:
            return (
                422,
                _unprocessable(
                    "REFUND_CAPTURE_CURRENCY_MISMATCH",
                    "Refund must be in the same currency as the capture",
                ),
                None,
            )
        invoice_id = body.get("invoice_id")
        if invoice_id and any(r.invoice_id == invoice_id for r in self.refunds.values()):
            return (
                422,
                _unprocessable(
                    "DUPLICATE_INVOICE_ID", "Invoice ID was previously used to refund a capture."
                ),
                None,
            )
        for word, (issue, description) in REFUSALS.items():
            if word in lowered:
                return 422, _unprocessable(issue, description), None
        refunded = sum(
            (
                r.amount
                for r in self.refunds_for(capture_id)
                if r.status in ("COMPLETED", "PENDING")
            ),
            Decimal(0),
        )
        if refunded >= capture.amount:
            return (
                422,
                _unprocessable(
                    "CAPTURE_FULLY_REFUNDED", "The capture has already been fully refunded"
                ),
                None,
            )
        if refunded + decimal > capture.amount:
            return (
                422,
                _unprocessable(
                    "REFUND_AMOUNT_EXCEEDED",
                    "The refund amount must be less than or equal to the capture amount that "
                    "has not yet been refunded.",
                ),
                None,
            )
        now = _now()
        pending = "pending" in lowered
        refund = Refund(
            id=secrets.token_hex(9).upper()[:17],
            capture_id=capture_id,
            amount=decimal,
            currency=currency,
            invoice_id=invoice_id if isinstance(invoice_id, str) else None,
            custom_id=body.get("custom_id") if isinstance(body.get("custom_id"), str) else None,
            request_id=request_id,
            status="PENDING" if pending else "COMPLETED",
            status_reason="ECHECK" if pending else None,
            create_time=now,
            update_time=now,
            acquirer_reference_number=str(secrets.randbelow(10**23)).zfill(23),
        )
        self.refunds[refund.id] = refund
        return 201, refund.resource(), refund

    def _verify(self, body: dict[str, Any]) -> dict[str, Any]:
        event = body.get("webhook_event")
        expected = self._signature(
            str(body.get("transmission_id")),
            str(body.get("transmission_time")),
            self.webhook_id,
            event,
        )
        ok = (
            self.force_verification is None
            and body.get("webhook_id") == self.webhook_id
            and body.get("auth_algo") == "SHA256withRSA"
            and hmac.compare_digest(str(body.get("transmission_sig")), expected)
        )
        return {"verification_status": "SUCCESS" if ok else (self.force_verification or "FAILURE")}

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            refunds = [{**asdict(r), "amount": str(r.amount)} for r in self.refunds.values()]
            return {
                "refunds": refunds,
                "calls": len(self.calls),
                "tokens_issued": self.tokens_issued,
                "deliveries": len(self.deliveries),
            }


def _money(amount: Decimal, currency: str) -> str:
    return f"{amount:.0f}" if currency in WHOLE_UNITS else f"{amount:.2f}"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _basic(authorization: str | None) -> tuple[str, str] | None:
    if not authorization or not authorization.startswith("Basic "):
        return None
    try:
        user, _, password = base64.b64decode(authorization[6:]).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return user, password


def _unprocessable(issue: str, description: str) -> dict[str, Any]:
    return {
        "name": "UNPROCESSABLE_ENTITY",
        "message": "The requested action could not be performed, semantically incorrect, or "
        "failed business validation.",
        "debug_id": secrets.token_hex(6),
        "details": [{"issue": issue, "description": description}],
    }


def _invalid(issue: str, description: str) -> dict[str, Any]:
    return {
        "name": "INVALID_REQUEST",
        "message": "Request is not well-formed, syntactically incorrect, or violates schema.",
        "debug_id": secrets.token_hex(6),
        "details": [{"issue": issue, "description": description}],
    }


_AUTH_FAILURE = {
    "name": "AUTHENTICATION_FAILURE",
    "message": "Authentication failed due to invalid authentication credentials or a missing "
    "Authorization header.",
}


def create_app(state: FakePayPal) -> Starlette:
    """The ASGI app serving ``state``."""

    def record(request: Request, status: int) -> None:
        with state.lock:
            state.calls.append(
                Call(
                    request.method,
                    request.url.path,
                    request.headers.get("paypal-request-id"),
                    status,
                )
            )

    def injected_failure() -> int | None:
        with state.lock:
            return state.fail_next.pop(0) if state.fail_next else None

    async def token(request: Request) -> Response:
        form = await request.form()
        grant = form.get("grant_type")
        with state.lock:
            status, answer = state._issue_token(
                request.headers.get("authorization"), grant if isinstance(grant, str) else None
            )
        record(request, status)
        return JSONResponse(answer, status_code=status)

    async def refund(request: Request) -> Response:
        failure = injected_failure()
        if failure is not None:
            record(request, failure)
            return JSONResponse(
                {"name": "INTERNAL_SERVER_ERROR", "message": "fake outage"}, status_code=failure
            )
        with state.lock:
            authorized = state._authorized(request.headers.get("authorization"))
        if not authorized:
            record(request, 401)
            return JSONResponse(_AUTH_FAILURE, status_code=401)
        try:
            body = await request.json()
        except ValueError:
            body = None
        created: Refund | None = None
        if not isinstance(body, dict):
            status, answer = (
                400,
                _invalid("MALFORMED_REQUEST_JSON", "The request JSON is not well formed."),
            )
        else:
            with state.lock:
                status, answer, created = state._refund(
                    request.path_params["capture"], request.headers.get("paypal-request-id"), body
                )
        record(request, status)
        if state.latency_ms:
            await asyncio.sleep(state.latency_ms / 1000)
        background = None
        if created is not None and created.status == "COMPLETED" and state.notify_url:
            background = BackgroundTask(_notify_later, state, state.notify_url, created.resource())
        return JSONResponse(answer, status_code=status, background=background)

    async def show_refund(request: Request) -> Response:
        failure = injected_failure()
        if failure is not None:
            record(request, failure)
            return JSONResponse(
                {"name": "INTERNAL_SERVER_ERROR", "message": "fake outage"}, status_code=failure
            )
        with state.lock:
            authorized = state._authorized(request.headers.get("authorization"))
            found = state.refunds.get(request.path_params["refund"])
            answer = found.resource() if found else None
        status = 401 if not authorized else 200 if answer else 404
        record(request, status)
        if status == 401:
            return JSONResponse(_AUTH_FAILURE, status_code=401)
        if answer is None:
            return JSONResponse(
                {"name": "RESOURCE_NOT_FOUND", "message": "The specified resource does not exist."},
                status_code=404,
            )
        return JSONResponse(answer)

    async def verify(request: Request) -> Response:
        failure = injected_failure()
        if failure is not None:
            record(request, failure)
            return JSONResponse(
                {"name": "INTERNAL_SERVER_ERROR", "message": "fake outage"}, status_code=failure
            )
        with state.lock:
            authorized = state._authorized(request.headers.get("authorization"))
        if not authorized:
            record(request, 401)
            return JSONResponse(_AUTH_FAILURE, status_code=401)
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            record(request, 400)
            return JSONResponse(_invalid("MALFORMED_REQUEST_JSON", "Not JSON."), status_code=400)
        answer = state._verify(body)
        record(request, 200)
        return JSONResponse(answer)

    async def snapshot(request: Request) -> Response:
        return JSONResponse(state.snapshot())

    async def settle(request: Request) -> Response:
        refund_id = request.path_params["refund"]
        if refund_id not in state.refunds:
            return JSONResponse({"error": "no such refund"}, status_code=404)
        status = request.query_params.get("status", "COMPLETED")
        return JSONResponse(await asyncio.to_thread(state.settle, refund_id, status))

    return Starlette(
        routes=[
            Route("/v1/oauth2/token", token, methods=["POST"]),
            Route("/v2/payments/captures/{capture}/refund", refund, methods=["POST"]),
            Route("/v2/payments/refunds/{refund}", show_refund, methods=["GET"]),
            Route("/v1/notifications/verify-webhook-signature", verify, methods=["POST"]),
            Route("/_fake/state", snapshot, methods=["GET"]),
            Route("/_fake/refunds/{refund}/settle", settle, methods=["POST"]),
        ]
    )


def _notify_later(state: FakePayPal, url: str, resource: dict[str, Any]) -> None:
    if state.notify_delay:
        time.sleep(state.notify_delay)
    headers, body = state.signed_webhook("PAYMENT.CAPTURE.REFUNDED", resource)
    state.deliver(url, headers, body, attempts=5)


@contextmanager
def serve(state: FakePayPal | None = None) -> Iterator[tuple[str, FakePayPal]]:
    """Run the fake on 127.0.0.1 in a background thread; yields (base URL, state)."""
    state = state or FakePayPal()
    with serve_in_thread(create_app(state)) as url:
        yield url, state


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A fake PayPal REST API on 127.0.0.1.")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--client-id", default=DEFAULT_CLIENT_ID)
    parser.add_argument("--client-secret", default=DEFAULT_CLIENT_SECRET)
    parser.add_argument("--webhook-id", default=DEFAULT_WEBHOOK_ID)
    parser.add_argument("--notify-url", default=None, help="where to POST webhooks")
    parser.add_argument("--notify-delay", type=float, default=0.0)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    args = parser.parse_args(argv)
    state = FakePayPal(
        client_id=args.client_id,
        client_secret=args.client_secret,
        webhook_id=args.webhook_id,
        notify_url=args.notify_url,
        notify_delay=args.notify_delay,
        latency_ms=args.latency_ms,
    )
    run_forever(create_app(state), args.port)


if __name__ == "__main__":
    main()

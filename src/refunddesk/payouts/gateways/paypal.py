"""PayPal: refunds of captured payments through the Payments v2 REST API.

``POST /v2/payments/captures/{capture_id}/refund`` with ``PayPal-Request-Id`` (our stable
per-attempt key: PayPal answers a repeated id with the original refund instead of paying
twice) returns the refund with its status: COMPLETED, PENDING (e.g. an eCheck capture),
FAILED or CANCELLED. ``GET /v2/payments/refunds/{id}`` tells the status later, which is how
``lookup()`` and the sync job follow pending refunds. Webhooks are verified by PayPal itself
through ``POST /v1/notifications/verify-webhook-signature``.

The attempt's key is also the refund's ``invoice_id``, which PayPal never accepts twice: a
second guard should a re-send come after PayPal has forgotten the request id.

Amounts are decimal strings in the currency's major unit (``"12.50"``, ``"1200"`` for JPY);
PayPal refuses decimals for HUF and TWD although ISO 4217 gives them two.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from refunddesk.core.errors import InvalidCurrency
from refunddesk.core.money import Money
from refunddesk.payouts.gateways._parse import json_object, text, timestamp
from refunddesk.payouts.gateways.base import (
    FailureReason,
    GatewayNotification,
    GatewayUnavailable,
    InvalidSignature,
    NotificationKind,
    PayoutOutcome,
    PayoutRequest,
    PayoutResult,
)

# Currencies PayPal takes in whole units only, whatever their ISO 4217 exponent.
WHOLE_UNITS_ONLY = frozenset({"HUF", "JPY", "TWD"})

# Refresh the OAuth token this long before PayPal says it expires.
TOKEN_MARGIN_SECONDS = 60.0

# PayPal documents PAYMENT.CAPTURE.REFUNDED (resource: the refund) for v2 refunds; refund
# events of the PAYMENT.REFUND.* family are read the same way, by the refund's status.
# PAYMENT.CAPTURE.REVERSED is PayPal taking the *payment* back (a dispute), not our refund.
REFUND_EVENT = "PAYMENT.CAPTURE.REFUNDED"
REFUND_EVENT_PREFIX = "PAYMENT.REFUND."

_ISSUES: Mapping[str, FailureReason] = {
    "CAPTURE_FULLY_REFUNDED": FailureReason.ALREADY_REFUNDED,
    "REFUND_AMOUNT_EXCEEDED": FailureReason.ALREADY_REFUNDED,
    # Our invoice_id is the attempt's key: PayPal saw this very attempt refunded already
    # (a re-send after PayPal forgot the PayPal-Request-Id). Never pay it again.
    "DUPLICATE_INVOICE_ID": FailureReason.ALREADY_REFUNDED,
    "REFUND_FAILED_INSUFFICIENT_FUNDS": FailureReason.INSUFFICIENT_FUNDS,
    "TRANSACTION_DISPUTED": FailureReason.DISPUTED,
    "REFUND_NOT_PERMITTED_DUE_TO_CHARGEBACK": FailureReason.DISPUTED,
    "INVALID_CURRENCY_CODE": FailureReason.CURRENCY_NOT_SUPPORTED,
    "CURRENCY_NOT_SUPPORTED": FailureReason.CURRENCY_NOT_SUPPORTED,
    "DECIMALS_NOT_SUPPORTED": FailureReason.CURRENCY_NOT_SUPPORTED,
    "DECIMAL_PRECISION": FailureReason.CURRENCY_NOT_SUPPORTED,
    "CURRENCY_MISMATCH": FailureReason.CURRENCY_NOT_SUPPORTED,
    "REFUND_CAPTURE_CURRENCY_MISMATCH": FailureReason.CURRENCY_NOT_SUPPORTED,
    "REFUND_CURRENCY_MISMATCH": FailureReason.CURRENCY_NOT_SUPPORTED,
    "PAYEE_ACCOUNT_LOCKED_OR_CLOSED": FailureReason.INVALID_ACCOUNT,
    "PAYER_ACCOUNT_LOCKED_OR_CLOSED": FailureReason.INVALID_ACCOUNT,
    "PAYEE_ACCOUNT_RESTRICTED": FailureReason.INVALID_ACCOUNT,
    "REFUND_IS_RESTRICTED": FailureReason.GATEWAY_NOT_CONFIGURED,
    "PERMISSION_DENIED": FailureReason.GATEWAY_NOT_CONFIGURED,
    "NOT_AUTHORIZED": FailureReason.GATEWAY_NOT_CONFIGURED,
}

_STATUS: Mapping[str, PayoutOutcome] = {
    "COMPLETED": PayoutOutcome.SUCCEEDED,
    "PENDING": PayoutOutcome.PENDING,
    "FAILED": PayoutOutcome.FAILED,
    "CANCELLED": PayoutOutcome.FAILED,
}

_KIND: Mapping[PayoutOutcome, NotificationKind] = {
    PayoutOutcome.SUCCEEDED: NotificationKind.SUCCEEDED,
    PayoutOutcome.PENDING: NotificationKind.PENDING,
    PayoutOutcome.FAILED: NotificationKind.FAILED,
}

_SIGNATURE_HEADERS = {
    "auth_algo": "paypal-auth-algo",
    "cert_url": "paypal-cert-url",
    "transmission_id": "paypal-transmission-id",
    "transmission_sig": "paypal-transmission-sig",
    "transmission_time": "paypal-transmission-time",
}


class PayPalConfig(BaseModel):
    """One PayPal REST app: client credentials and the id of its webhook."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    client_id: str = Field(min_length=1)
    client_secret: SecretStr
    webhook_id: str = Field(min_length=1)
    api_base: str = "https://api-m.sandbox.paypal.com"  # live: https://api-m.paypal.com
    timeout_seconds: float = Field(default=10.0, gt=0, le=120)

    @field_validator("api_base")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("api_base must be an http(s) URL")
        return value.rstrip("/")


def paypal_amount(amount_minor: int, currency: str) -> str:
    """Minor units as PayPal's decimal string; ValueError if PayPal cannot take it."""
    money = Money(amount_minor, currency)
    value = money.as_decimal()
    if currency in WHOLE_UNITS_ONLY:
        if value != value.to_integral_value():
            raise ValueError(f"PayPal takes {currency} in whole units only")
        return f"{value:.0f}"
    return f"{value:.{money.exponent}f}"


class _NotConfigured(Exception):
    """PayPal refused our client credentials."""


class PayPalGateway:
    """Refunds, lookups and webhooks for one PayPal REST app. Thread-safe."""

    def __init__(
        self, name: str, config: PayPalConfig, *, transport: httpx.BaseTransport | None = None
    ) -> None:
        self.name = name
        self.config = config
        self._client = httpx.Client(
            base_url=config.api_base,
            timeout=httpx.Timeout(config.timeout_seconds),
            transport=transport,
        )
        self._token_lock = threading.Lock()
        self._token: str | None = None
        self._token_expires = 0.0  # time.monotonic() after which the token is stale

    def close(self) -> None:
        self._client.close()

    # -- OAuth -----------------------------------------------------------------------

    def _access_token(self, *, refresh: bool = False) -> str:
        with self._token_lock:
            if not refresh and self._token and time.monotonic() < self._token_expires:
                return self._token
            response = self._send(
                "POST",
                "/v1/oauth2/token",
                data={"grant_type": "client_credentials"},
                auth=(self.config.client_id, self.config.client_secret.get_secret_value()),
            )
            if response.status_code in (400, 401, 403):
                raise _NotConfigured(
                    f"paypal: client credentials refused (HTTP {response.status_code})"
                )
            data = json_object(response)
            token = data.get("access_token")
            if response.status_code != 200 or not isinstance(token, str):
                raise GatewayUnavailable(
                    f"paypal: token request answered HTTP {response.status_code}"
                )
            expires_in = float(data.get("expires_in") or 0)
            self._token = token
            self._token_expires = time.monotonic() + max(0.0, expires_in - TOKEN_MARGIN_SECONDS)
            return token

    def _authorized(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Call the API with the cached token, fetching a fresh one once if PayPal says 401."""
        headers = dict(kwargs.pop("headers", {}))
        response: httpx.Response | None = None
        for refresh in (False, True):
            headers["Authorization"] = f"Bearer {self._access_token(refresh=refresh)}"
            response = self._send(method, path, headers=headers, **kwargs)
            if response.status_code != 401:
                break
        assert response is not None
        if response.status_code == 401:
            raise _NotConfigured("paypal: access token refused (HTTP 401)")
        return response

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._client.request(method, path, **kwargs)
        except httpx.TransportError as exc:  # timeouts, refused connections, broken pipes
            raise GatewayUnavailable(f"paypal: {type(exc).__name__}: {exc}") from exc
        if response.status_code == 429 or response.status_code >= 500:
            raise GatewayUnavailable(f"paypal: HTTP {response.status_code}")
        return response

    # -- refunds ---------------------------------------------------------------------

    def refund(self, request: PayoutRequest) -> PayoutResult:
        try:
            value = paypal_amount(request.amount_minor, request.currency)
        except (InvalidCurrency, ValueError) as exc:
            return PayoutResult.failed(FailureReason.CURRENCY_NOT_SUPPORTED, f"paypal: {exc}")
        body = {
            "amount": {"value": value, "currency_code": request.currency},
            # Unique per attempt (PayPal refuses a reused invoice_id) and echoed in webhooks.
            "invoice_id": request.idempotency_key,
            "custom_id": request.reference,
            "note_to_payer": f"Refund {request.reference}",
        }
        try:
            response = self._authorized(
                "POST",
                f"/v2/payments/captures/{request.payment_reference}/refund",
                json=body,
                headers={
                    "PayPal-Request-Id": request.idempotency_key,
                    "Prefer": "return=representation",
                },
            )
        except _NotConfigured as exc:
            return PayoutResult.failed(FailureReason.GATEWAY_NOT_CONFIGURED, str(exc))
        if response.status_code in (200, 201):
            return _refund_result(json_object(response))
        return _error_result(response)

    def lookup(self, request: PayoutRequest, gateway_reference: str | None) -> PayoutResult | None:
        # Without a refund id we cannot search; re-posting with the same PayPal-Request-Id
        # returns the original refund, so "never received" is the safe answer.
        if gateway_reference is None:
            return None
        try:
            response = self._authorized("GET", f"/v2/payments/refunds/{gateway_reference}")
        except _NotConfigured as exc:
            raise GatewayUnavailable(str(exc)) from exc  # cannot ask now; the payout stays as is
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise GatewayUnavailable(f"paypal: refund lookup answered HTTP {response.status_code}")
        return _refund_result(json_object(response))

    # -- webhooks --------------------------------------------------------------------

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> list[GatewayNotification]:
        lowered = {key.lower(): value for key, value in headers.items()}
        fields = {name: lowered.get(header, "") for name, header in _SIGNATURE_HEADERS.items()}
        missing = [header for name, header in _SIGNATURE_HEADERS.items() if not fields[name]]
        if missing:
            raise InvalidSignature(f"paypal: webhook without {', '.join(missing)}")
        try:
            event = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError("paypal: webhook body is not JSON") from exc
        if not isinstance(event, dict) or not isinstance(event.get("event_type"), str):
            raise ValueError("paypal: webhook body is not a PayPal event")
        self._verify(fields, body)
        return [_notification(event)]

    def _verify(self, fields: Mapping[str, str], body: bytes) -> None:
        # The event goes back byte for byte: PayPal checks the signature over the body as it
        # sent it, and a re-serialised copy (other spacing, key order) may not verify.
        head = json.dumps({**fields, "webhook_id": self.config.webhook_id})
        payload = head[:-1].encode() + b', "webhook_event": ' + body + b"}"
        try:
            response = self._authorized(
                "POST",
                "/v1/notifications/verify-webhook-signature",
                content=payload,
                headers={"Content-Type": "application/json"},
            )
        except _NotConfigured as exc:
            raise InvalidSignature(f"paypal: cannot verify with this account: {exc}") from exc
        status = json_object(response).get("verification_status")
        if response.status_code != 200 or status != "SUCCESS":
            raise InvalidSignature(
                f"paypal: webhook signature not verified ({status or response.status_code})"
            )

    def webhook_ack(self) -> tuple[str, bytes]:
        return "application/json", b"{}"


def _refund_result(data: Mapping[str, Any]) -> PayoutResult:
    refund_id = text(data.get("id"))
    status = str(data.get("status") or "")
    outcome = _STATUS.get(status)
    if refund_id is None or outcome is None:
        raise GatewayUnavailable(f"paypal: unreadable refund (status {status or 'missing'})")
    arn = text(data.get("acquirer_reference_number"))
    if outcome is PayoutOutcome.FAILED:
        return PayoutResult.failed(
            FailureReason.DECLINED, _status_message(data), gateway_reference=refund_id
        )
    return PayoutResult(outcome, gateway_reference=refund_id, arn=arn)


def _status_message(data: Mapping[str, Any]) -> str:
    details = data.get("status_details")
    reason = details.get("reason") if isinstance(details, dict) else None
    status = str(data.get("status") or "FAILED").lower()
    return f"paypal: refund {status}" + (f" ({reason})" if reason else "")


def _error_result(response: httpx.Response) -> PayoutResult:
    data = json_object(response)
    details = data.get("details")
    first = (
        details[0] if isinstance(details, list) and details and isinstance(details[0], dict) else {}
    )
    issue = str(first.get("issue") or data.get("name") or f"HTTP {response.status_code}")
    description = first.get("description") or data.get("message") or ""
    message = f"paypal: {issue}" + (f": {description}" if description else "")
    if response.status_code == 409:
        # A request with this PayPal-Request-Id is still in flight: the outcome is unknown.
        raise GatewayUnavailable(message)
    if response.status_code == 403:
        return PayoutResult.failed(FailureReason.GATEWAY_NOT_CONFIGURED, message)
    return PayoutResult.failed(_ISSUES.get(issue, FailureReason.DECLINED), message)


def _notification(event: Mapping[str, Any]) -> GatewayNotification:
    event_type = str(event["event_type"])
    resource = event.get("resource")
    resource = resource if isinstance(resource, dict) else {}
    event_id = text(event.get("id"))
    if event_id is None:
        raise ValueError("paypal: webhook event without id")
    occurred = timestamp(resource.get("update_time")) or timestamp(event.get("create_time"))
    if event_type in DISPUTE_EVENTS:
        return _dispute(event_id, event_type, resource, occurred)
    is_refund = event_type == REFUND_EVENT or (
        event_type.startswith(REFUND_EVENT_PREFIX) and event.get("resource_type") == "refund"
    )
    outcome = _STATUS.get(str(resource.get("status") or "")) if is_refund else None
    if outcome is None:
        return GatewayNotification(
            event_id=event_id, type=event_type, kind=NotificationKind.IGNORED, occurred_at=occurred
        )
    failed = outcome is PayoutOutcome.FAILED
    return GatewayNotification(
        event_id=event_id,
        type=event_type,
        kind=_KIND[outcome],
        gateway_reference=text(resource.get("id")),
        idempotency_key=text(resource.get("invoice_id")),
        failure_reason=FailureReason.DECLINED if failed else None,
        failure_message=_status_message(resource) if failed else None,
        arn=text(resource.get("acquirer_reference_number")),
        occurred_at=occurred,
    )


# A dispute holds the capture's refunds; only one resolved in the seller's favour lifts it.
DISPUTE_EVENTS = frozenset(
    {"CUSTOMER.DISPUTE.CREATED", "CUSTOMER.DISPUTE.UPDATED", "CUSTOMER.DISPUTE.RESOLVED"}
)


def _dispute(
    event_id: str, event_type: str, resource: Mapping[str, Any], occurred: datetime | None
) -> GatewayNotification:
    outcome = resource.get("dispute_outcome")
    code = outcome.get("outcome_code") if isinstance(outcome, dict) else None
    won = event_type == "CUSTOMER.DISPUTE.RESOLVED" and code == "RESOLVED_SELLER_FAVOUR"
    transactions = resource.get("disputed_transactions")
    captures = tuple(
        str(t["seller_transaction_id"])
        for t in (transactions if isinstance(transactions, list) else [])
        if isinstance(t, dict) and t.get("seller_transaction_id")
    )
    return GatewayNotification(
        event_id=event_id,
        type=event_type,
        kind=NotificationKind.DISPUTE_CLOSED if won else NotificationKind.DISPUTE_OPENED,
        gateway_reference=text(resource.get("dispute_id")),
        failure_message=f"paypal: dispute {resource.get('status')}: {resource.get('reason')}",
        occurred_at=occurred,
        payment_references=captures,
    )


def build(name: str, config: Mapping[str, Any]) -> PayPalGateway:
    """The GatewayFactory for provider ``paypal``."""
    return PayPalGateway(name, PayPalConfig.model_validate(dict(config)))

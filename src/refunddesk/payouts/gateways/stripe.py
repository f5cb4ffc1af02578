"""Stripe: card and wallet refunds on PaymentIntents or charges, and signed Stripe webhooks.

Talks to Stripe only through the official SDK, one `StripeClient` per account (no global
`stripe.api_key`), so several tenants' accounts live side by side in one process. The SDK
never retries by itself (max_network_retries defaults to 0): the payout service retries
with the same idempotency key, after asking lookup() what Stripe already has.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import stripe
from pydantic import BaseModel, ConfigDict, Field, HttpUrl, SecretStr, ValidationError

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

if TYPE_CHECKING:
    from stripe.params import RefundCreateParams, RefundListParams

STRIPE_API_BASE = "https://api.stripe.com"
SIGNATURE_HEADER = "stripe-signature"
ARN_REFERENCE_TYPE = "acquirer_reference_number"

# Events about one refund object; every other event type is stored and ignored.
REFUND_EVENTS = frozenset(
    {"refund.created", "refund.updated", "refund.failed", "charge.refund.updated"}
)

_OUTCOMES: Mapping[str, PayoutOutcome] = {
    "succeeded": PayoutOutcome.SUCCEEDED,
    "pending": PayoutOutcome.PENDING,
    "requires_action": PayoutOutcome.PENDING,
    "failed": PayoutOutcome.FAILED,
    "canceled": PayoutOutcome.FAILED,
}

_KINDS: Mapping[PayoutOutcome, NotificationKind] = {
    PayoutOutcome.SUCCEEDED: NotificationKind.SUCCEEDED,
    PayoutOutcome.PENDING: NotificationKind.PENDING,
    PayoutOutcome.FAILED: NotificationKind.FAILED,
}

# A refund's own `failure_reason` once it is failed or canceled.
_REFUND_FAILURES: Mapping[str, FailureReason] = {
    "expired_or_canceled_card": FailureReason.EXPIRED_OR_CANCELED_CARD,
    "lost_or_stolen_card": FailureReason.LOST_OR_STOLEN_CARD,
    "insufficient_funds": FailureReason.INSUFFICIENT_FUNDS,
    "declined": FailureReason.DECLINED,
    "charge_for_pending_refund_disputed": FailureReason.DISPUTED,
    "merchant_request": FailureReason.UNKNOWN,  # canceled by someone in the dashboard
    "unknown": FailureReason.UNKNOWN,
}

# Error codes (and card decline codes) of a refused create-refund request.
_ERROR_CODES: Mapping[str, FailureReason] = {
    "charge_already_refunded": FailureReason.ALREADY_REFUNDED,
    "charge_disputed": FailureReason.DISPUTED,
    "balance_insufficient": FailureReason.INSUFFICIENT_FUNDS,
    "insufficient_funds": FailureReason.INSUFFICIENT_FUNDS,
    "expired_card": FailureReason.EXPIRED_OR_CANCELED_CARD,
    "lost_card": FailureReason.LOST_OR_STOLEN_CARD,
    "stolen_card": FailureReason.LOST_OR_STOLEN_CARD,
    "card_declined": FailureReason.DECLINED,
    "amount_too_large": FailureReason.DECLINED,
    "amount_too_small": FailureReason.DECLINED,
    "parameter_invalid_integer": FailureReason.DECLINED,
    "refund_disputed_payment": FailureReason.DISPUTED,
}


class StripeConfig(BaseModel):
    """One Stripe account's settings, as a tenant stores them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    api_key: SecretStr = Field(min_length=1)
    webhook_secret: SecretStr | None = None  # whsec_...; without it webhooks never verify
    api_base: HttpUrl = HttpUrl(STRIPE_API_BASE)
    timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    max_network_retries: int = Field(default=0, ge=0, le=5)


class _EventData(BaseModel):
    object: dict[str, Any]


class _Event(BaseModel):
    """The envelope of a Stripe webhook event: what this adapter reads of it."""

    id: str
    type: str
    created: int
    data: _EventData


class StripeGateway:
    """Refunds through one Stripe account; also its webhook receiver."""

    def __init__(self, name: str, config: StripeConfig) -> None:
        self.name = name
        self.config = config
        # The requests-based client keeps one session per thread: safe from a thread pool.
        self._client = stripe.StripeClient(
            config.api_key.get_secret_value(),
            base_addresses={"api": str(config.api_base).rstrip("/")},
            max_network_retries=config.max_network_retries,
            http_client=stripe.RequestsClient(timeout=config.timeout_seconds),
        )

    def refund(self, request: PayoutRequest) -> PayoutResult:
        params: RefundCreateParams = {
            "amount": request.amount_minor,
            "metadata": {
                "refund_id": request.refund_id,
                "reference": request.reference,
                "idempotency_key": request.idempotency_key,
                "tenant_id": request.tenant_id,
            },
        }
        reference = request.payment_reference
        if reference.startswith("pi_"):
            params["payment_intent"] = reference
        elif reference.startswith(("ch_", "py_")):
            params["charge"] = reference
        else:
            return PayoutResult.failed(
                FailureReason.UNKNOWN,
                f"{reference!r} is not a Stripe PaymentIntent (pi_...) or charge (ch_...)",
            )
        try:
            refund = self._client.v1.refunds.create(
                params=params, options={"idempotency_key": request.idempotency_key}
            )
        except stripe.StripeError as error:
            return _refused(error)
        return _result(refund.to_dict())

    def lookup(self, request: PayoutRequest, gateway_reference: str | None) -> PayoutResult | None:
        try:
            if gateway_reference is not None:
                return _result(self._client.v1.refunds.retrieve(gateway_reference).to_dict())
            for refund in self._refunds_of(request.payment_reference):
                if (refund.get("metadata") or {}).get("idempotency_key") == request.idempotency_key:
                    return _result(refund)
        except stripe.InvalidRequestError as error:
            if error.http_status == 404:  # no such refund, or no such payment
                return None
            raise _unavailable(error) from error
        except stripe.StripeError as error:
            raise _unavailable(error) from error
        return None

    def _refunds_of(self, payment_reference: str) -> Iterable[dict[str, Any]]:
        params: RefundListParams = {"limit": 100}
        if payment_reference.startswith("pi_"):
            params["payment_intent"] = payment_reference
        elif payment_reference.startswith(("ch_", "py_")):
            params["charge"] = payment_reference
        else:
            return
        for refund in self._client.v1.refunds.list(params=params).auto_paging_iter():
            yield refund.to_dict()

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> list[GatewayNotification]:
        signature = next(
            (value for key, value in headers.items() if key.lower() == SIGNATURE_HEADER), None
        )
        secret = self.config.webhook_secret
        if not signature or secret is None:
            raise InvalidSignature("stripe: missing Stripe-Signature header or webhook secret")
        try:
            verified = self._client.construct_event(body, signature, secret.get_secret_value())
        except (stripe.SignatureVerificationError, UnicodeDecodeError) as error:
            raise InvalidSignature(f"stripe: {error}") from error
        except (ValueError, AttributeError, TypeError) as error:  # signed, but not JSON object
            raise ValueError(f"stripe: not a Stripe event: {error}") from error
        try:
            event = _Event.model_validate(verified.to_dict())
        except ValidationError as error:  # signed, but not an event
            raise ValueError(f"stripe: not a Stripe event: {error}") from error
        return [_notification(event)]

    def webhook_ack(self) -> tuple[str, bytes]:
        return "application/json", b'{"received": true}'


def build(name: str, config: Mapping[str, Any]) -> StripeGateway:
    """The GatewayFactory for provider `stripe`."""
    return StripeGateway(name, StripeConfig.model_validate(config))


def _result(refund: Mapping[str, Any]) -> PayoutResult:
    """A Stripe Refund object in the desk's words."""
    status = str(refund.get("status"))
    outcome = _OUTCOMES.get(status, PayoutOutcome.PENDING)  # an unknown new status: poll on
    if outcome is PayoutOutcome.FAILED:
        code = refund.get("failure_reason") or "unknown"
        return PayoutResult(
            PayoutOutcome.FAILED,
            gateway_reference=refund.get("id"),
            failure_reason=_REFUND_FAILURES.get(code, FailureReason.UNKNOWN),
            failure_message=f"Stripe refund {status}: {code.replace('_', ' ')}",
            arn=_arn(refund),
        )
    return PayoutResult(outcome, gateway_reference=refund.get("id"), arn=_arn(refund))


def _arn(refund: Mapping[str, Any]) -> str | None:
    card = (refund.get("destination_details") or {}).get("card") or {}
    if card.get("reference_type") == ARN_REFERENCE_TYPE and card.get("reference"):
        return str(card["reference"])
    return None


def _refused(error: stripe.StripeError) -> PayoutResult:
    """A create-refund call Stripe answered with an error: a final no, or GatewayUnavailable."""
    message = f"Stripe: {error.user_message or type(error).__name__}"
    if isinstance(error, stripe.AuthenticationError | stripe.PermissionError):
        return PayoutResult.failed(FailureReason.GATEWAY_NOT_CONFIGURED, message)
    if isinstance(error, stripe.IdempotencyError):
        # Same key, other parameters: a bug on our side; never guess, let an agent look.
        return PayoutResult.failed(FailureReason.UNKNOWN, message)
    if isinstance(error, stripe.CardError | stripe.InvalidRequestError):
        details = error.json_body.get("error") if isinstance(error.json_body, dict) else None
        decline_code = details.get("decline_code") if isinstance(details, dict) else None
        for code in (decline_code, error.code):
            if isinstance(code, str) and code in _ERROR_CODES:
                return PayoutResult.failed(_ERROR_CODES[code], message)
        # A card decline, or an amount Stripe will not refund (more than is left, say).
        if isinstance(error, stripe.CardError) or error.param == "amount":
            return PayoutResult.failed(FailureReason.DECLINED, message)
        return PayoutResult.failed(FailureReason.UNKNOWN, message)
    raise _unavailable(error)


def _unavailable(error: stripe.StripeError) -> GatewayUnavailable:
    """Rate limits, connection errors, timeouts and 5xx: the outcome is unknown."""
    return GatewayUnavailable(f"stripe: {type(error).__name__}: {error.user_message or error}")


def _notification(event: _Event) -> GatewayNotification:
    occurred_at = datetime.fromtimestamp(event.created, tz=UTC)
    refund = event.data.object
    if event.type in DISPUTE_EVENTS and refund.get("object") == "dispute":
        return _dispute(event, refund, occurred_at)
    if event.type not in REFUND_EVENTS or refund.get("object") != "refund":
        return GatewayNotification(
            event.id, event.type, NotificationKind.IGNORED, occurred_at=occurred_at
        )
    result = _result(refund)
    return GatewayNotification(
        event_id=event.id,
        type=event.type,
        # Failed after succeeded is still FAILED: the service reads that as a reversal.
        kind=_KINDS[result.outcome],
        gateway_reference=result.gateway_reference,
        idempotency_key=(refund.get("metadata") or {}).get("idempotency_key"),
        failure_reason=result.failure_reason,
        failure_message=result.failure_message,
        arn=result.arn,
        occurred_at=occurred_at,
    )


# A dispute opens the hold; only one closed in the merchant's favour lifts it. A lost dispute
# already gave the customer the money back through the bank: the hold stays for an agent.
DISPUTE_EVENTS = frozenset(
    {"charge.dispute.created", "charge.dispute.updated", "charge.dispute.closed"}
)


def _dispute(
    event: _Event, dispute: Mapping[str, Any], occurred_at: datetime
) -> GatewayNotification:
    won = event.type == "charge.dispute.closed" and dispute.get("status") == "won"
    references = tuple(str(r) for r in (dispute.get("payment_intent"), dispute.get("charge")) if r)
    return GatewayNotification(
        event_id=event.id,
        type=event.type,
        kind=NotificationKind.DISPUTE_CLOSED if won else NotificationKind.DISPUTE_OPENED,
        gateway_reference=str(dispute.get("id") or "") or None,
        failure_message=f"stripe: dispute {dispute.get('status')}: {dispute.get('reason')}",
        occurred_at=occurred_at,
        payment_references=references,
    )

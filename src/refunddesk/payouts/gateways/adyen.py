"""Adyen: refunds through the Checkout API, results by HMAC-signed standard webhooks.

An Adyen refund is asynchronous: ``POST /v71/payments/{paymentPspReference}/refunds`` only
says ``received``; the answer comes later as a ``REFUND`` notification (success true or
false), possibly followed by ``REFUND_FAILED`` (the scheme refused it after all) or
``REFUNDED_REVERSED`` (the money came back). So ``refund()`` returns PENDING with the
refund's own pspReference, and notifications finish the payout.

Exactly once: every request carries ``Idempotency-Key`` (our stable per-attempt key, kept by
Adyen for at least 7 days) and the key is also the refund's ``reference``, which Adyen
echoes as ``merchantReference`` in notifications. Adyen has no endpoint to look a refund
up, so ``lookup()`` answers None when we never learnt a pspReference (the service then
re-sends with the same key, which Adyen answers with the original response instead of
refunding twice) and PENDING when we did (the final word comes by notification).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import httpx
from Adyen.util import is_valid_hmac_notification  # type: ignore[import-untyped]
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from refunddesk.core.errors import InvalidCurrency
from refunddesk.core.money import currency_exponent
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

API_VERSION = "v71"

# Adyen's minor units differ from ISO 4217 for a few currencies (Adyen's "Currency codes"
# page marks them "differs from standard"); amounts are scaled to Adyen's before sending.
ADYEN_EXPONENT_OVERRIDES: Mapping[str, int] = {"CLP": 2, "CVE": 0, "ISK": 2}

REFUND_EVENTS = frozenset({"REFUND", "REFUND_FAILED", "REFUNDED_REVERSED"})

# Adyen's refusal texts (API messages and notification `reason`), matched by lower-cased
# substring, first match wins. Anything unmatched with a text is a plain decline.
_REASON_WORDS: tuple[tuple[tuple[str, ...], FailureReason], ...] = (
    (
        ("insufficient balance on payment", "already", "exceeds", "fully refunded"),
        FailureReason.ALREADY_REFUNDED,
    ),
    (("insufficient", "balance"), FailureReason.INSUFFICIENT_FUNDS),
    (("dispute", "chargeback"), FailureReason.DISPUTED),
    (("lost", "stolen"), FailureReason.LOST_OR_STOLEN_CARD),
    (
        ("expired card", "card expired", "canceled card", "cancelled card"),
        FailureReason.EXPIRED_OR_CANCELED_CARD,
    ),
    (("account closed", "closed account", "invalid account"), FailureReason.INVALID_ACCOUNT),
    (("currency",), FailureReason.CURRENCY_NOT_SUPPORTED),
    (
        ("merchant account", "not allowed", "unauthorized", "permission"),
        FailureReason.GATEWAY_NOT_CONFIGURED,
    ),
)


def failure_reason_for(refusal: str | None) -> FailureReason:
    """Map an Adyen refusal text onto the desk's failure reasons."""
    if not refusal:
        return FailureReason.UNKNOWN
    lowered = refusal.lower()
    for words, reason in _REASON_WORDS:
        if any(word in lowered for word in words):
            return reason
    return FailureReason.DECLINED


class AdyenConfig(BaseModel):
    """One Adyen merchant account: API credential, account code and webhook HMAC key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    api_key: SecretStr
    merchant_account: str = Field(min_length=1)
    hmac_key: SecretStr  # hex, as shown in the Customer Area for the webhook
    # Test: https://checkout-test.adyen.com; live: https://{prefix}-checkout-live.adyenpayments.com/checkout
    api_base: str = "https://checkout-test.adyen.com"
    timeout_seconds: float = Field(default=10.0, gt=0, le=120)

    @field_validator("hmac_key")
    @classmethod
    def _hex_key(cls, value: SecretStr) -> SecretStr:
        raw = value.get_secret_value()
        try:
            if not raw or len(bytes.fromhex(raw)) == 0:
                raise ValueError
        except ValueError:
            raise ValueError("hmac_key must be the hexadecimal key from Adyen") from None
        return value

    @field_validator("api_base")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("api_base must be an http(s) URL")
        return value.rstrip("/")


def adyen_minor_units(amount_minor: int, currency: str) -> int:
    """ISO 4217 minor units to Adyen's; ValueError if Adyen cannot express the amount."""
    iso = currency_exponent(currency)
    adyen = ADYEN_EXPONENT_OVERRIDES.get(currency, iso)
    if adyen >= iso:
        return amount_minor * int(10 ** (adyen - iso))
    factor = int(10 ** (iso - adyen))
    if amount_minor % factor:
        raise ValueError(f"Adyen takes {currency} in whole units only")
    return amount_minor // factor


class AdyenGateway:
    """Refunds and notifications for one Adyen merchant account. Thread-safe."""

    def __init__(
        self, name: str, config: AdyenConfig, *, transport: httpx.BaseTransport | None = None
    ) -> None:
        self.name = name
        self.config = config
        self._client = httpx.Client(
            base_url=f"{config.api_base}/{API_VERSION}",
            timeout=httpx.Timeout(config.timeout_seconds),
            headers={"X-API-Key": config.api_key.get_secret_value()},
            transport=transport,
        )

    def close(self) -> None:
        self._client.close()

    # -- refunds ---------------------------------------------------------------------

    def refund(self, request: PayoutRequest) -> PayoutResult:
        try:
            value = adyen_minor_units(request.amount_minor, request.currency)
        except (InvalidCurrency, ValueError) as exc:
            return PayoutResult.failed(FailureReason.CURRENCY_NOT_SUPPORTED, str(exc))
        body = {
            "merchantAccount": self.config.merchant_account,
            "amount": {"value": value, "currency": request.currency},
            "reference": request.idempotency_key,
        }
        try:
            response = self._client.post(
                f"/payments/{request.payment_reference}/refunds",
                json=body,
                headers={"Idempotency-Key": request.idempotency_key},
            )
        except httpx.TransportError as exc:  # timeouts, refused connections, broken pipes
            raise GatewayUnavailable(f"adyen: {type(exc).__name__}: {exc}") from exc
        return self._result(response)

    def _result(self, response: httpx.Response) -> PayoutResult:
        status = response.status_code
        if status == 429 or status >= 500 or status == 409:
            # 409: a request with this Idempotency-Key is still being processed.
            raise GatewayUnavailable(f"adyen: HTTP {status}")
        data = json_object(response)
        message = str(data.get("message") or f"HTTP {status}")
        if status in (200, 201):
            psp = data.get("pspReference")
            if not isinstance(psp, str) or not psp:
                raise GatewayUnavailable("adyen: refund answer without pspReference")
            return PayoutResult(PayoutOutcome.PENDING, gateway_reference=psp)
        if status in (401, 403):
            return PayoutResult.failed(
                FailureReason.GATEWAY_NOT_CONFIGURED,
                f"adyen: {message} (check api_key and merchant_account)",
            )
        code = data.get("errorCode")
        words = f"adyen: {message}" + (f" (error {code})" if code else "")
        reason = failure_reason_for(message)
        if status in (400, 404, 422) and reason is FailureReason.UNKNOWN:
            reason = FailureReason.DECLINED
        return PayoutResult.failed(reason, words)

    def lookup(self, request: PayoutRequest, gateway_reference: str | None) -> PayoutResult | None:
        # Adyen cannot be asked about a refund. Without its pspReference we never got the
        # answer: re-sending with the same Idempotency-Key returns the original one.
        if gateway_reference is None:
            return None
        return PayoutResult(PayoutOutcome.PENDING, gateway_reference=gateway_reference)

    # -- notifications ---------------------------------------------------------------

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> list[GatewayNotification]:
        try:
            document = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError("adyen: webhook body is not JSON") from exc
        items = document.get("notificationItems") if isinstance(document, dict) else None
        if not isinstance(items, list) or not items:
            raise ValueError("adyen: webhook body has no notificationItems")
        parsed: list[dict[str, Any]] = []
        for wrapper in items:
            item = wrapper.get("NotificationRequestItem") if isinstance(wrapper, dict) else None
            if not isinstance(item, dict):
                raise ValueError("adyen: notificationItems entry without NotificationRequestItem")
            # Every item carries its own signature; one bad item refuses the whole batch.
            self._verify(item)
            parsed.append(item)
        return [_notification(item) for item in parsed]

    def _verify(self, item: dict[str, Any]) -> None:
        extra = item.get("additionalData")
        signature = extra.get("hmacSignature") if isinstance(extra, dict) else None
        if not isinstance(signature, str) or not signature:
            raise InvalidSignature("adyen: notification item has no hmacSignature")
        if not isinstance(item.get("amount"), dict):
            raise ValueError("adyen: notification item without amount")
        try:
            valid = is_valid_hmac_notification(item, self.config.hmac_key.get_secret_value())
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidSignature(f"adyen: cannot verify notification: {exc}") from exc
        if not valid:
            raise InvalidSignature("adyen: notification HMAC signature does not match")

    def webhook_ack(self) -> tuple[str, bytes]:
        return "text/plain", b"[accepted]"


# Chargebacks: any of these opens the hold on the payment's refunds; a chargeback reversed
# (won by the merchant) lifts it. A plain CHARGEBACK means the money already went back.
DISPUTE_OPENING = frozenset(
    {"NOTIFICATION_OF_CHARGEBACK", "REQUEST_FOR_INFORMATION", "CHARGEBACK", "SECOND_CHARGEBACK"}
)
DISPUTE_CLOSING = frozenset({"CHARGEBACK_REVERSED", "PREARBITRATION_WON"})


def _notification(item: Mapping[str, Any]) -> GatewayNotification:
    event_code = str(item.get("eventCode") or "")
    success = str(item.get("success") or "").lower()
    psp = text(item.get("pspReference"))
    reason_text = text(item.get("reason"))
    kind = NotificationKind.IGNORED
    failure: FailureReason | None = None
    message: str | None = None
    if event_code == "REFUND" and success == "true":
        kind = NotificationKind.SUCCEEDED
    elif event_code == "REFUND" or (event_code == "REFUND_FAILED"):
        kind = NotificationKind.FAILED
        failure = failure_reason_for(reason_text)
        if failure is FailureReason.UNKNOWN:
            failure = FailureReason.DECLINED
        message = f"adyen: {reason_text or event_code.lower().replace('_', ' ')}"
    elif event_code == "REFUNDED_REVERSED":
        kind = NotificationKind.REVERSED
        failure = FailureReason.REVERSED
        message = f"adyen: refund reversed{': ' + reason_text if reason_text else ''}"
    payments: tuple[str, ...] = ()
    if event_code in DISPUTE_OPENING or event_code in DISPUTE_CLOSING:
        # The chargeback's own pspReference names the dispute; originalReference the payment.
        kind = (
            NotificationKind.DISPUTE_CLOSED
            if event_code in DISPUTE_CLOSING
            else NotificationKind.DISPUTE_OPENED
        )
        payments = tuple(r for r in [text(item.get("originalReference"))] if r)
        message = f"adyen: {event_code.lower().replace('_', ' ')}: {reason_text or ''}".strip()
    is_refund = event_code in REFUND_EVENTS
    return GatewayNotification(
        # Adyen sends no event id; pspReference + eventCode + success names one fact, and
        # Adyen's own retries of the same notification repeat exactly these three.
        event_id=f"{psp}:{event_code}:{success}",
        type=event_code,
        kind=kind,
        gateway_reference=psp,
        idempotency_key=text(item.get("merchantReference")) if is_refund else None,
        failure_reason=failure,
        failure_message=message,
        occurred_at=timestamp(item.get("eventDate")),
        payment_references=payments,
    )


def build(name: str, config: Mapping[str, Any]) -> AdyenGateway:
    """The GatewayFactory for provider ``adyen``."""
    return AdyenGateway(name, AdyenConfig.model_validate(dict(config)))

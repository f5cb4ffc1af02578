"""The gateway port: gateway-neutral requests, results and notifications at the boundary.

Every adapter (stripe, adyen, paypal, bank_transfer, store_credit, sandbox) speaks this
language and nothing else leaks past it: the payout service never sees a provider's own
status words or error codes, only the outcome and the failure taxonomy below.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable


class PayoutOutcome(StrEnum):
    SUCCEEDED = "succeeded"  # the money is on its way to the customer
    PENDING = "pending"  # accepted; the final answer comes later (webhook, poll, bank file)
    FAILED = "failed"  # a final no; failure_reason says why


class FailureReason(StrEnum):
    """Why a payout failed, in the desk's words; every adapter maps its codes onto these."""

    EXPIRED_OR_CANCELED_CARD = "expired_or_canceled_card"
    LOST_OR_STOLEN_CARD = "lost_or_stolen_card"
    INSUFFICIENT_FUNDS = "insufficient_funds"  # the merchant's balance cannot cover it
    DECLINED = "declined"
    DISPUTED = "disputed"  # the payment has an open dispute or chargeback
    ALREADY_REFUNDED = "already_refunded"
    INVALID_ACCOUNT = "invalid_account"  # IBAN/BIC wrong, account closed, no such customer
    CURRENCY_NOT_SUPPORTED = "currency_not_supported"
    REVERSED = "reversed"  # paid, then taken back by the gateway or the bank
    GATEWAY_NOT_CONFIGURED = "gateway_not_configured"
    GATEWAY_TIMEOUT = "gateway_timeout"
    RATE_LIMITED = "rate_limited"
    UNKNOWN = "unknown"


# Failures worth trying again later with the same idempotency key; every other one is final
# and moves the refund to failed, from where an agent (or the customer) picks a fallback.
RETRYABLE: frozenset[FailureReason] = frozenset(
    {FailureReason.GATEWAY_TIMEOUT, FailureReason.RATE_LIMITED}
)

# What an agent reads, and what to do next.
FAILURE_HELP: Mapping[FailureReason, str] = {
    FailureReason.EXPIRED_OR_CANCELED_CARD: (
        "The card was expired or canceled. Offer a bank transfer or store credit."
    ),
    FailureReason.LOST_OR_STOLEN_CARD: (
        "The card was reported lost or stolen. Confirm the customer's identity, then offer a "
        "bank transfer or store credit."
    ),
    FailureReason.INSUFFICIENT_FUNDS: (
        "The retailer's gateway balance cannot cover the refund. Ask the retailer's finance "
        "team to top it up, then retry."
    ),
    FailureReason.DECLINED: (
        "The gateway declined the refund. Offer a bank transfer or store credit."
    ),
    FailureReason.DISPUTED: (
        "The payment has an open dispute or chargeback; refunding now could pay twice. "
        "Wait for the dispute to close."
    ),
    FailureReason.ALREADY_REFUNDED: (
        "The gateway says this payment was already refunded. Check the gateway's dashboard "
        "before paying again."
    ),
    FailureReason.INVALID_ACCOUNT: (
        "The destination account is invalid or closed. Ask the customer for other details."
    ),
    FailureReason.CURRENCY_NOT_SUPPORTED: (
        "The gateway cannot pay in this currency. Use another method."
    ),
    FailureReason.REVERSED: (
        "The gateway reversed a refund it had paid. Find out why, then pay by another method."
    ),
    FailureReason.GATEWAY_NOT_CONFIGURED: (
        "No gateway account for this retailer matches the order's gateway. Configure it "
        "(refunddesk gateways set), then retry."
    ),
    FailureReason.GATEWAY_TIMEOUT: "The gateway did not answer; the desk retries on its own.",
    FailureReason.RATE_LIMITED: "The gateway asked us to slow down; the desk retries on its own.",
    FailureReason.UNKNOWN: "The gateway gave no usable reason. Check its dashboard, then retry.",
}


@dataclass(frozen=True, slots=True)
class BankAccount:
    """Where a bank transfer goes."""

    iban: str
    holder: str
    bic: str | None = None


@dataclass(frozen=True, slots=True)
class PayoutRequest:
    idempotency_key: str  # stable per payout attempt, reused on every retry of that attempt
    tenant_id: str
    refund_id: str
    reference: str  # the refund's public reference (RF-...), for statements and dashboards
    amount_minor: int
    currency: str
    method: str  # card | wallet | bank_transfer | store_credit
    payment_reference: str  # the original payment at the gateway (PaymentIntent, PSP ref, ...)
    customer_email: str | None = None
    customer_name: str | None = None
    bank_account: BankAccount | None = None  # bank_transfer only


@dataclass(frozen=True, slots=True)
class PayoutResult:
    outcome: PayoutOutcome
    gateway_reference: str | None = None  # the gateway's own id for this refund
    failure_reason: FailureReason | None = None
    failure_message: str | None = None  # the gateway's words, for agents
    arn: str | None = None  # acquirer reference number, when the gateway gives one

    @classmethod
    def failed(
        cls, reason: FailureReason, message: str, *, gateway_reference: str | None = None
    ) -> PayoutResult:
        return cls(
            PayoutOutcome.FAILED,
            gateway_reference=gateway_reference,
            failure_reason=reason,
            failure_message=message,
        )


class GatewayUnavailable(Exception):
    """A transient failure (timeout, 5xx, 429): the outcome is unknown; retry with the same key."""


class InvalidSignature(Exception):
    """A webhook whose signature does not verify; it is refused and never stored."""


class Gateway(Protocol):
    name: str  # the name orders use in payment.gateway

    def refund(self, request: PayoutRequest) -> PayoutResult:
        """Pay the refund back; the same idempotency key must never pay twice."""
        ...

    def lookup(self, request: PayoutRequest, gateway_reference: str | None) -> PayoutResult | None:
        """What the gateway knows of this payout now, or None if it never received it.

        Called after a crash or a timeout before sending again, and by the sync job for
        payouts still pending. Finds the payout by gateway_reference when known, else by
        the request's idempotency key (or the merchant reference carrying it).
        """
        ...


class NotificationKind(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REVERSED = "reversed"  # a paid refund taken back
    # A dispute (chargeback) on the original payment opened, or closed in the merchant's
    # favour; while one is open no refund of that payment is paid (it could pay twice).
    DISPUTE_OPENED = "dispute_opened"
    DISPUTE_CLOSED = "dispute_closed"
    IGNORED = "ignored"  # an event this desk does not act on (still stored)


@dataclass(frozen=True, slots=True)
class GatewayNotification:
    """One fact about one refund, parsed from a verified gateway webhook."""

    event_id: str  # the provider's id, for deduplication
    type: str  # the provider's event type, as sent
    kind: NotificationKind
    gateway_reference: str | None = None
    idempotency_key: str | None = None  # ours, echoed back (metadata or merchant reference)
    failure_reason: FailureReason | None = None
    failure_message: str | None = None
    arn: str | None = None
    occurred_at: datetime | None = None
    # Disputes: the payment(s) disputed, as orders name them (PaymentIntent and charge, ...);
    # gateway_reference is then the dispute's id.
    payment_references: tuple[str, ...] = ()


@runtime_checkable
class WebhookReceiver(Protocol):
    """A gateway that reports by webhook. Body is the raw bytes as received."""

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> list[GatewayNotification]:
        """Verify the signature (InvalidSignature if it fails) and parse the notifications.

        Raises ValueError when the body is not what the provider sends, and
        GatewayUnavailable when verifying needs the provider (PayPal) and it is down.
        """
        ...

    def webhook_ack(self) -> tuple[str, bytes]:
        """The (media type, body) the provider expects as a successful answer."""
        ...


class GatewayFactory(Protocol):
    """Builds an adapter for one tenant's gateway account from its stored config."""

    def __call__(self, name: str, config: Mapping[str, Any]) -> Gateway: ...


class GatewayRegistry:
    """Gateways by name: desk-wide ones (sandbox, store credit) and each tenant's accounts."""

    def __init__(
        self,
        gateways: list[Gateway],
        *,
        default: str | None = None,
        factories: Mapping[str, GatewayFactory] | None = None,
    ) -> None:
        self._by_name = {g.name: g for g in gateways}
        if default is not None and default not in self._by_name:
            raise ValueError(f"default gateway {default!r} is not configured")
        self.default = default
        self.factories: dict[str, GatewayFactory] = dict(factories or {})
        self._accounts: dict[tuple[str, str], tuple[str, str, Gateway]] = {}

    def for_order(self, gateway_name: str) -> Gateway:
        """A desk-wide gateway by name, or the default one (kept for desks with one gateway)."""
        gateway = self._by_name.get(gateway_name)
        if gateway is None:
            if self.default is None:
                raise KeyError(gateway_name)
            gateway = self._by_name[self.default]
        return gateway

    def desk_wide(self, name: str) -> Gateway | None:
        return self._by_name.get(name)

    def account_gateway(
        self, tenant_id: str, name: str, provider: str, config: Mapping[str, Any], version: str
    ) -> Gateway:
        """The adapter for a tenant's account, built once per version of its config."""
        key = (tenant_id, name)
        cached = self._accounts.get(key)
        if cached is not None and cached[0] == provider and cached[1] == version:
            return cached[2]
        factory = self.factories.get(provider)
        if factory is None:
            raise KeyError(f"no adapter for provider {provider!r}")
        gateway = factory(name, config)
        self._accounts[key] = (provider, version, gateway)
        if cached is not None:  # the account's config changed: let the old adapter go
            _close(cached[2])
        return gateway

    def close(self) -> None:
        for _, _, gateway in self._accounts.values():
            _close(gateway)
        self._accounts.clear()

    def names(self) -> list[str]:
        return sorted(self._by_name)


def _close(gateway: Gateway) -> None:
    close = getattr(gateway, "close", None)
    if callable(close):
        close()

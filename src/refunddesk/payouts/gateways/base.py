"""The gateway port: gateway-neutral requests and results at the boundary."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol


class PayoutOutcome(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class PayoutRequest:
    idempotency_key: str  # stable per payout attempt, reused on every retry of that attempt
    tenant_id: str
    refund_id: str
    amount_minor: int
    currency: str
    method: str
    payment_reference: str


@dataclass(frozen=True, slots=True)
class PayoutResult:
    outcome: PayoutOutcome
    gateway_reference: str | None = None
    failure_reason: str | None = None
    failure_message: str | None = None


class GatewayUnavailable(Exception):
    """A transient failure (timeout, 5xx): the outcome is unknown; retry with the same key."""


class Gateway(Protocol):
    name: str

    def refund(self, request: PayoutRequest) -> PayoutResult:
        """Pay the refund back; the same idempotency key must never pay twice."""
        ...


class GatewayRegistry:
    """Gateways by name, with a fallback for orders whose gateway is not configured here."""

    def __init__(self, gateways: list[Gateway], *, default: str) -> None:
        self._by_name = {g.name: g for g in gateways}
        if default not in self._by_name:
            raise ValueError(f"default gateway {default!r} is not configured")
        self.default = default

    def for_order(self, gateway_name: str) -> Gateway:
        return self._by_name.get(gateway_name) or self._by_name[self.default]

    def names(self) -> list[str]:
        return sorted(self._by_name)

"""A simulated payment gateway for demos, tests and load tests.

It behaves like a real one where it matters: latency, declines, transient outages, and
idempotency (the same key never pays twice). It records every payout it makes and every
call it receives, so tests can count them.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field

from refunddesk.core.ids import new_id
from refunddesk.payouts.gateways.base import (
    FailureReason,
    GatewayUnavailable,
    PayoutOutcome,
    PayoutRequest,
    PayoutResult,
)


@dataclass
class SandboxGateway:
    latency_ms: float = 0.0
    failure_rate: float = 0.0  # share of payouts declined (a final answer)
    error_rate: float = 0.0  # share of calls that time out (outcome unknown, retry)
    seed: int | None = None
    name: str = "sandbox"
    calls: int = 0
    lookups: int = 0
    payouts: dict[str, tuple[PayoutRequest, PayoutResult]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._rng = random.Random(self.seed)

    def refund(self, request: PayoutRequest) -> PayoutResult:
        if self.latency_ms:
            time.sleep(self.latency_ms / 1000)
        with self._lock:
            self.calls += 1
            if self._rng.random() < self.error_rate:
                raise GatewayUnavailable("sandbox: simulated gateway timeout")
            seen = self.payouts.get(request.idempotency_key)
            if seen is not None:
                if seen[0] != request:
                    return PayoutResult.failed(
                        FailureReason.UNKNOWN, "sandbox: same idempotency key, different request"
                    )
                return seen[1]
            if self._rng.random() < self.failure_rate:
                result = PayoutResult.failed(
                    FailureReason.DECLINED,
                    "sandbox: simulated decline",
                    gateway_reference=f"sbx_{new_id()}",
                )
            else:
                result = PayoutResult(PayoutOutcome.SUCCEEDED, gateway_reference=f"sbx_{new_id()}")
            self.payouts[request.idempotency_key] = (request, result)
            return result

    def lookup(self, request: PayoutRequest, gateway_reference: str | None) -> PayoutResult | None:
        with self._lock:
            self.lookups += 1
            seen = self.payouts.get(request.idempotency_key)
            return None if seen is None else seen[1]

    def paid_count(self) -> int:
        """How many distinct payouts succeeded."""
        with self._lock:
            return sum(1 for _, r in self.payouts.values() if r.outcome is PayoutOutcome.SUCCEEDED)

    def paid_refund_ids(self) -> list[str]:
        with self._lock:
            return [
                req.refund_id
                for req, r in self.payouts.values()
                if r.outcome is PayoutOutcome.SUCCEEDED
            ]


class SandboxConfig(BaseModel):
    """A tenant account served by the simulator (demos, load tests)."""

    latency_ms: float = Field(default=0.0, ge=0, le=60_000)
    failure_rate: float = Field(default=0.0, ge=0, le=1)
    error_rate: float = Field(default=0.0, ge=0, le=1)


def build(name: str, config: Mapping[str, Any]) -> SandboxGateway:
    c = SandboxConfig.model_validate(dict(config))
    return SandboxGateway(
        latency_ms=c.latency_ms, failure_rate=c.failure_rate, error_rate=c.error_rate, name=name
    )

"""A simulated payment gateway for demos, tests and load tests.

It behaves like a real one where it matters: latency, declines, transient outages, and
idempotency (the same key never pays twice). It records every payout it makes and every
call it receives, so tests can count them.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field

from refunddesk.core.ids import new_id
from refunddesk.payouts.gateways.base import (
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
                    return PayoutResult(
                        PayoutOutcome.FAILED,
                        failure_reason="idempotency_error",
                        failure_message="same key, different request",
                    )
                return seen[1]
            if self._rng.random() < self.failure_rate:
                result = PayoutResult(
                    PayoutOutcome.FAILED,
                    gateway_reference=f"sbx_{new_id()}",
                    failure_reason="declined",
                    failure_message="sandbox: simulated decline",
                )
            else:
                result = PayoutResult(PayoutOutcome.SUCCEEDED, gateway_reference=f"sbx_{new_id()}")
            self.payouts[request.idempotency_key] = (request, result)
            return result

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

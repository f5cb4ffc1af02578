"""A webhook receiver for the Adyen and PayPal fakes: parses what arrives with the adapter."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from refunddesk.payouts.fakes._server import serve_in_thread
from refunddesk.payouts.gateways.base import (
    GatewayNotification,
    InvalidSignature,
    PayoutRequest,
    WebhookReceiver,
)


@dataclass
class Received:
    """What the receiver got: parsed notifications and refused deliveries."""

    notifications: list[GatewayNotification] = field(default_factory=list)
    refused: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def wait_for(self, count: int, timeout: float = 5.0) -> list[GatewayNotification]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.notifications) >= count:
                    return list(self.notifications)
            time.sleep(0.02)
        raise AssertionError(f"expected {count} notifications, got {self.notifications}")


@contextmanager
def webhook_receiver(gateway: WebhookReceiver) -> Iterator[tuple[str, Received]]:
    """Serve POST /webhooks on 127.0.0.1, verifying each delivery as the desk would."""
    received = Received()

    async def webhooks(request: Request) -> Response:
        body = await request.body()
        try:
            parsed = gateway.parse_webhook(dict(request.headers), body)
        except InvalidSignature:
            with received.lock:
                received.refused += 1
            return Response("bad signature", status_code=401)
        with received.lock:
            received.notifications.extend(parsed)
        media_type, ack = gateway.webhook_ack()
        return Response(ack, media_type=media_type)

    app = Starlette(routes=[Route("/webhooks", webhooks, methods=["POST"])])
    with serve_in_thread(app) as url:
        yield f"{url}/webhooks", received


def payout_request(**overrides: object) -> PayoutRequest:
    values: dict[str, object] = {
        "idempotency_key": "rd-01JTESTREFUND-1",
        "tenant_id": "tenant-1",
        "refund_id": "01JTESTREFUND",
        "reference": "RF-7K3M9Q",
        "amount_minor": 1250,
        "currency": "EUR",
        "method": "card",
        "payment_reference": "PAY-0001",
        "customer_email": "ada@example.com",
    }
    values.update(overrides)
    return PayoutRequest(**values)  # type: ignore[arg-type]

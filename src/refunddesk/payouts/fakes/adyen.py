"""A fake Adyen Checkout API (refunds) that sends HMAC-signed standard webhooks.

What it does like Adyen: ``POST /v71/payments/{paymentPspReference}/refunds`` answers 201
``received`` and the outcome follows as a ``REFUND`` notification; ``Idempotency-Key``
replays the first answer without a second refund; ``X-API-Key`` and the merchant account
are checked (401, 403); validation errors are 422 with ``errorCode``; refunds beyond the
captured amount fail with "Insufficient balance on payment".

Outcomes by payment reference (case-insensitive substring): ``decline`` -> refused,
``nofunds`` -> insufficient merchant balance, ``dispute`` -> open dispute, ``pending`` ->
stays received until ``settle()``, ``unknown`` -> no such payment (422). Any other
reference is a captured payment of ``default_capture`` minor units, created on first use.

Run it: ``python -m refunddesk.payouts.fakes.adyen --port 8101 --notify-url URL``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from refunddesk.payouts.fakes._server import run_forever, serve_in_thread

# Any hex string works; deliberately not the key of Adyen's published example.
DEFAULT_HMAC_KEY = "6B1F2E3D4C5B6A79887766554433221100FFEEDDCCBBAA99887766554433221A"
DEFAULT_MERCHANT_ACCOUNT = "RefunddeskTest"

SIGNED_FIELDS = (
    "pspReference",
    "originalReference",
    "merchantAccountCode",
    "merchantReference",
    "value",
    "currency",
    "eventCode",
    "success",
)

# Payment reference substring -> the refusal text Adyen would put in `reason`.
REFUSALS = {
    "decline": "Refused",
    "nofunds": "Insufficient in-flight balance on merchant account",
    "dispute": "Dispute is open for this payment",
}


def sign_item(item: dict[str, Any], hmac_key: str) -> str:
    """Adyen's HMAC for one NotificationRequestItem, written independently of Adyen's library."""
    amount = item.get("amount") or {}
    values = {**item, "value": amount.get("value", ""), "currency": amount.get("currency", "")}
    payload = ":".join(str(values.get(name, "")) for name in SIGNED_FIELDS)
    digest = hmac.new(bytes.fromhex(hmac_key), payload.encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


@dataclass
class Payment:
    psp_reference: str
    value: int  # Adyen minor units
    currency: str


@dataclass
class Refund:
    psp_reference: str
    payment_psp_reference: str
    merchant_account: str
    value: int
    currency: str
    reference: str
    idempotency_key: str | None
    status: str = "received"  # received | succeeded | failed | reversed
    reason: str | None = None


@dataclass
class Call:
    method: str
    path: str
    idempotency_key: str | None
    status: int


@dataclass
class FakeAdyen:
    """The fake's state: payments, refunds, calls, and knobs tests can turn."""

    hmac_key: str = DEFAULT_HMAC_KEY
    api_key: str | None = None  # None: any non-empty X-API-Key is accepted
    merchant_account: str | None = DEFAULT_MERCHANT_ACCOUNT  # None: any account
    default_capture: int | None = 10_000_000  # None: unknown payments are refused
    latency_ms: float = 0.0  # delay before answering (after the refund is made)
    notify_url: str | None = None  # where to send notifications on its own
    notify_delay: float = 0.0
    payments: dict[str, Payment] = field(default_factory=dict)
    refunds: dict[str, Refund] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    fail_next: list[int] = field(default_factory=list)  # HTTP statuses for the next calls
    deliveries: list[tuple[str, int | None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.lock = threading.RLock()
        self._answers: dict[str, tuple[str, int, dict[str, Any]]] = {}

    # -- what tests read -------------------------------------------------------------

    def reset(self, **settings: Any) -> None:
        """Forget everything and start again with ``settings`` (one served fake, many tests)."""
        with self.lock:
            self.__dict__.update(type(self)(**settings).__dict__)

    def add_payment(self, psp_reference: str, value: int, currency: str) -> None:
        with self.lock:
            self.payments[psp_reference] = Payment(psp_reference, value, currency)

    def refunds_for(self, payment_psp_reference: str) -> list[Refund]:
        with self.lock:
            return [
                r for r in self.refunds.values() if r.payment_psp_reference == payment_psp_reference
            ]

    def refunded(self, payment_psp_reference: str) -> int:
        """Minor units refunded or on their way for a payment (failed refunds excluded)."""
        return sum(
            r.value
            for r in self.refunds_for(payment_psp_reference)
            if r.status in ("received", "succeeded")
        )

    # -- notifications ---------------------------------------------------------------

    def notification_item(
        self, refund: Refund, event_code: str, *, success: bool, reason: str | None = None
    ) -> dict[str, Any]:
        item: dict[str, Any] = {
            "amount": {"value": refund.value, "currency": refund.currency},
            "eventCode": event_code,
            "eventDate": datetime.now(UTC).isoformat(timespec="seconds"),
            "merchantAccountCode": refund.merchant_account,
            "merchantReference": refund.reference,
            "originalReference": refund.payment_psp_reference,
            "paymentMethod": "visa",
            "pspReference": refund.psp_reference,
            "reason": reason or "",
            "success": "true" if success else "false",
        }
        item["additionalData"] = {"hmacSignature": sign_item(item, self.hmac_key)}
        return item

    @staticmethod
    def notification_body(items: list[dict[str, Any]]) -> bytes:
        wrapped = [{"NotificationRequestItem": item} for item in items]
        return json.dumps({"live": "false", "notificationItems": wrapped}).encode()

    def deliver(self, url: str, items: list[dict[str, Any]], *, attempts: int = 1) -> int | None:
        """POST a notification batch to ``url``; retries like Adyen until a 2xx or out of tries."""
        status: int | None = None
        for attempt in range(attempts):
            try:
                status = httpx.post(
                    url,
                    content=self.notification_body(items),
                    headers={"Content-Type": "application/json"},
                    timeout=10,
                ).status_code
            except httpx.HTTPError:
                status = None
            with self.lock:
                self.deliveries.append((url, status))
            if status is not None and 200 <= status < 300:
                break
            time.sleep(min(0.2 * 2**attempt, 5.0))
        return status

    def _finish(
        self, psp: str, status: str, event_code: str, success: bool, reason: str | None
    ) -> dict[str, Any]:
        with self.lock:
            refund = self.refunds[psp]
            refund.status = status
            refund.reason = reason
            item = self.notification_item(refund, event_code, success=success, reason=reason)
        if self.notify_url:
            self.deliver(self.notify_url, [item], attempts=5)
        return item

    def settle(
        self, psp: str, *, success: bool = True, reason: str | None = None
    ) -> dict[str, Any]:
        """Decide a pending refund; returns the REFUND notification (sent if notify_url)."""
        status = "succeeded" if success else "failed"
        return self._finish(
            psp, status, "REFUND", success, None if success else reason or "Refused"
        )

    def fail_after_success(
        self, psp: str, reason: str = "Refund failed at the scheme"
    ) -> dict[str, Any]:
        """The scheme refused a refund Adyen had accepted: REFUND_FAILED."""
        return self._finish(psp, "failed", "REFUND_FAILED", True, reason)

    def reverse(self, psp: str, reason: str = "Refund reversed by the issuer") -> dict[str, Any]:
        """A paid refund came back: REFUNDED_REVERSED."""
        return self._finish(psp, "reversed", "REFUNDED_REVERSED", True, reason)

    # -- the API ---------------------------------------------------------------------

    def _refund(
        self, payment_ref: str, api_key: str | None, key: str | None, body: dict[str, Any]
    ) -> tuple[int, dict[str, Any], dict[str, Any] | None]:
        """One refund request; returns (status, answer, notification item to send or None)."""
        if self.fail_next:
            return self.fail_next.pop(0), _error(500, "901", "Internal error", "internal"), None
        if not api_key or (self.api_key is not None and api_key != self.api_key):
            return 401, _error(401, "000", "HTTP Status Response - Unauthorized", "security"), None
        merchant = body.get("merchantAccount")
        if not isinstance(merchant, str) or not merchant:
            return (
                422,
                _error(422, "100", "Required field 'merchantAccount' is not provided."),
                None,
            )
        if self.merchant_account is not None and merchant != self.merchant_account:
            return 403, _error(403, "901", "Invalid Merchant Account", "security"), None
        fingerprint = json.dumps([payment_ref, body], sort_keys=True)
        if key is not None and key in self._answers:
            seen, status, answer = self._answers[key]
            if seen != fingerprint:
                return (
                    422,
                    _error(422, "704", "Idempotency key reused with a different request"),
                    None,
                )
            return status, answer, None
        status, answer, item = self._new_refund(payment_ref, merchant, key, body)
        if key is not None:
            self._answers[key] = (fingerprint, status, answer)
        return status, answer, item

    def _new_refund(
        self, payment_ref: str, merchant: str, key: str | None, body: dict[str, Any]
    ) -> tuple[int, dict[str, Any], dict[str, Any] | None]:
        amount = body.get("amount")
        if not isinstance(amount, dict):
            return 422, _error(422, "100", "Required object 'amount' is not provided."), None
        value, currency = amount.get("value"), amount.get("currency")
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            return 422, _error(422, "137", "Invalid amount specified"), None
        if not isinstance(currency, str) or len(currency) != 3:
            return 422, _error(422, "138", "Invalid currency specified"), None
        payment = self.payments.get(payment_ref)
        if payment is None and "unknown" not in payment_ref.lower() and self.default_capture:
            payment = Payment(payment_ref, self.default_capture, currency)
            self.payments[payment_ref] = payment
        if payment is None:
            return (
                422,
                _error(422, "167", "Original pspReference required for this operation"),
                None,
            )
        if currency != payment.currency:
            return (
                422,
                _error(
                    422,
                    "137",
                    f"Invalid amount specified: currency {currency} does not match the payment",
                ),
                None,
            )
        refund = Refund(
            psp_reference=secrets.token_hex(8).upper(),
            payment_psp_reference=payment_ref,
            merchant_account=merchant,
            value=value,
            currency=currency,
            reference=str(body.get("reference") or ""),
            idempotency_key=key,
        )
        lowered = payment_ref.lower()
        reason = next((text for word, text in REFUSALS.items() if word in lowered), None)
        if reason is None and self.refunded(payment_ref) + value > payment.value:
            reason = "Insufficient balance on payment"
        self.refunds[refund.psp_reference] = refund
        item: dict[str, Any] | None = None
        if reason is not None:
            refund.status, refund.reason = "failed", reason
            item = self.notification_item(refund, "REFUND", success=False, reason=reason)
        elif "pending" not in lowered:
            refund.status = "succeeded"
            item = self.notification_item(refund, "REFUND", success=True)
        answer = {
            "merchantAccount": merchant,
            "paymentPspReference": payment_ref,
            "pspReference": refund.psp_reference,
            "reference": refund.reference,
            "status": "received",
            "amount": {"value": value, "currency": currency},
        }
        return 201, answer, item

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "refunds": [asdict(r) for r in self.refunds.values()],
                "calls": len(self.calls),
                "deliveries": len(self.deliveries),
            }


def _error(status: int, code: str, message: str, kind: str = "validation") -> dict[str, Any]:
    return {"status": status, "errorCode": code, "message": message, "errorType": kind}


def create_app(state: FakeAdyen) -> Starlette:
    """The ASGI app serving ``state``."""

    async def refunds(request: Request) -> Response:
        payment_ref = request.path_params["payment"]
        key = request.headers.get("idempotency-key")
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            status, answer, item = (
                422,
                _error(422, "702", "Structure of the request is invalid"),
                None,
            )
        else:
            with state.lock:
                status, answer, item = state._refund(
                    payment_ref, request.headers.get("x-api-key"), key, body
                )
        with state.lock:
            state.calls.append(Call(request.method, request.url.path, key, status))
        if state.latency_ms:
            await asyncio.sleep(state.latency_ms / 1000)
        background = None
        if item is not None and state.notify_url:
            background = BackgroundTask(_notify_later, state, state.notify_url, item)
        return JSONResponse(answer, status_code=status, background=background)

    async def snapshot(request: Request) -> Response:
        return JSONResponse(state.snapshot())

    async def settle(request: Request) -> Response:
        psp = request.path_params["psp"]
        if psp not in state.refunds:
            return JSONResponse({"error": "no such refund"}, status_code=404)
        success = request.query_params.get("success", "true") == "true"
        item = await asyncio.to_thread(state.settle, psp, success=success)
        return JSONResponse(item)

    return Starlette(
        routes=[
            Route("/v71/payments/{payment}/refunds", refunds, methods=["POST"]),
            Route("/_fake/state", snapshot, methods=["GET"]),
            Route("/_fake/refunds/{psp}/settle", settle, methods=["POST"]),
        ]
    )


def _notify_later(state: FakeAdyen, url: str, item: dict[str, Any]) -> None:
    if state.notify_delay:
        time.sleep(state.notify_delay)
    state.deliver(url, [item], attempts=5)


@contextmanager
def serve(state: FakeAdyen | None = None) -> Iterator[tuple[str, FakeAdyen]]:
    """Run the fake on 127.0.0.1 in a background thread; yields (base URL, state)."""
    state = state or FakeAdyen()
    with serve_in_thread(create_app(state)) as url:
        yield url, state


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A fake Adyen Checkout API on 127.0.0.1.")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--hmac-key", default=DEFAULT_HMAC_KEY)
    parser.add_argument("--api-key", default=None, help="accept only this X-API-Key")
    parser.add_argument("--merchant-account", default=DEFAULT_MERCHANT_ACCOUNT)
    parser.add_argument("--notify-url", default=None, help="where to POST notifications")
    parser.add_argument("--notify-delay", type=float, default=0.0)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    args = parser.parse_args(argv)
    state = FakeAdyen(
        hmac_key=args.hmac_key,
        api_key=args.api_key,
        merchant_account=args.merchant_account,
        notify_url=args.notify_url,
        notify_delay=args.notify_delay,
        latency_ms=args.latency_ms,
    )
    run_forever(create_app(state), args.port)


if __name__ == "__main__":
    main()

"""A small stateful fake of the Stripe API, served on 127.0.0.1 for the stripe adapter's tests.

Why not an existing mock:
- `localstripe` (PyPI) makes every refund succeed at once (no pending, failed or canceled
  refund, no failure_reason, no ARN), ignores Idempotency-Key, accepts over-refunds,
  listens on all interfaces ('::') instead of loopback, and pickles its state to a fixed
  /tmp/localstripe.pickle that concurrent test runs would share.
- `stripe-stateful-mock` checks the refund rules and idempotency but needs Node and npm,
  and `make test` must run on a fresh machine with only Python.

So this fake implements only what the adapter uses, with Stripe's rules for them:
PaymentIntents and charges (always paid, for setup), and create / retrieve / list refunds.
Refunds honour Idempotency-Key like Stripe (same key and same parameters replay the first
answer with `Idempotent-Replayed: true`; same key, other parameters: 400
idempotency_error), refuse refunds of fully refunded (charge_already_refunded) or disputed
(charge_disputed) charges and more than what is left, and list newest first with cursor
pagination. Tests steer it from Python: a refund's initial status, later status changes,
injected 429/5xx answers, and an answer held back past the client's timeout.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from refunddesk.payouts.fakes._server import serve_in_thread

API_KEY = "sk_test_fake_refunddesk"
MAX_AMOUNT = 99_999_999


class StripeApiError(Exception):
    """An error answer, in Stripe's error envelope."""

    def __init__(self, status: int, type_: str, message: str, **details: str) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": {"type": type_, "message": message, **details}}


@dataclass
class _Script:
    status: str = "succeeded"
    failure_reason: str | None = None
    arn: str | None = None


@dataclass
class FakeStripe:
    """The fake's state; every method is safe to call from the test's thread."""

    api_key: str = API_KEY
    url: str = ""
    payment_intents: dict[str, dict[str, Any]] = field(default_factory=dict)
    charges: dict[str, dict[str, Any]] = field(default_factory=dict)
    refund_objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    refund_creations: int = 0  # create-refund requests executed (replays not counted)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._idempotent: dict[tuple[str, str], tuple[dict[str, Any], int, bytes]] = {}
        self._faults: list[StripeApiError] = []
        self._scripts: dict[str, _Script] = {}
        self._delay_next_refund = 0.0

    # -- steering, from tests ---------------------------------------------------------------

    def reset(self) -> None:
        with self._lock:
            self.payment_intents.clear()
            self.charges.clear()
            self.refund_objects.clear()
            self.refund_creations = 0
            self._idempotent.clear()
            self._faults.clear()
            self._scripts.clear()
            self._delay_next_refund = 0.0

    def script_refunds(
        self,
        payment: str,
        status: str = "succeeded",
        *,
        failure_reason: str | None = None,
        arn: str | None = None,
    ) -> None:
        """How the next refunds of this PaymentIntent or charge start out."""
        with self._lock:
            self._scripts[payment] = _Script(status, failure_reason, arn)

    def update_refund(
        self,
        refund_id: str,
        status: str,
        *,
        failure_reason: str | None = None,
        arn: str | None = None,
    ) -> dict[str, Any]:
        """Move a refund on (as Stripe does days later); returns the refund as now."""
        with self._lock:
            refund = self.refund_objects[refund_id]
            if status in ("failed", "canceled") and refund["status"] not in ("failed", "canceled"):
                self.charges[refund["charge"]]["amount_refunded"] -= refund["amount"]
            refund["status"] = status
            if failure_reason is not None:
                refund["failure_reason"] = failure_reason
            if arn is not None:
                refund["destination_details"] = _card_details(arn)
            return copy.deepcopy(refund)

    def dispute(self, payment: str) -> None:
        with self._lock:
            self.charges[self._charge_id(payment)]["disputed"] = True

    def fail_next(self, status: int, type_: str = "api_error", times: int = 1) -> None:
        """The next `times` API requests get this error answer without being executed."""
        message = "Too many requests" if status == 429 else "An unexpected error occurred"
        code = {"code": "rate_limit"} if status == 429 else {}
        with self._lock:
            self._faults.extend(
                StripeApiError(status, type_, message, **code) for _ in range(times)
            )

    def hold_next_refund_answer(self, seconds: float) -> None:
        """Execute the next create-refund request, then answer only after `seconds`."""
        with self._lock:
            self._delay_next_refund = seconds

    def refunds(self, payment: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            charge = self._charge_id(payment) if payment else None
            return [dict(r) for r in self.refund_objects.values() if charge in (None, r["charge"])]

    # -- the API -------------------------------------------------------------------------

    def _charge_id(self, payment: str) -> str:
        if payment in self.payment_intents:
            return str(self.payment_intents[payment]["latest_charge"])
        return payment

    def _new_charge(self, amount: int, currency: str, payment_intent: str | None) -> str:
        charge_id = f"ch_{uuid.uuid4().hex[:24]}"
        self.charges[charge_id] = {
            "id": charge_id,
            "object": "charge",
            "amount": amount,
            "amount_refunded": 0,
            "currency": currency,
            "captured": True,
            "paid": True,
            "status": "succeeded",
            "payment_intent": payment_intent,
            "disputed": False,
            "created": int(time.time()),
        }
        return charge_id

    def create_payment_intent(self, params: dict[str, Any]) -> dict[str, Any]:
        amount, currency = _amount(params, "amount"), str(params.get("currency", "eur"))
        pi_id = f"pi_{uuid.uuid4().hex[:24]}"
        intent = {
            "id": pi_id,
            "object": "payment_intent",
            "amount": amount,
            "amount_received": amount,
            "currency": currency,
            "status": "succeeded",
            "latest_charge": self._new_charge(amount, currency, pi_id),
            "metadata": params.get("metadata", {}),
            "created": int(time.time()),
        }
        self.payment_intents[pi_id] = intent
        return intent

    def create_charge(self, params: dict[str, Any]) -> dict[str, Any]:
        charge_id = self._new_charge(
            _amount(params, "amount"), str(params.get("currency", "eur")), None
        )
        return self.charges[charge_id]

    def create_refund(self, params: dict[str, Any]) -> dict[str, Any]:
        pi_id, charge_param = params.get("payment_intent"), params.get("charge")
        if bool(pi_id) == bool(charge_param):
            raise StripeApiError(
                400,
                "invalid_request_error",
                "One of `charge` or `payment_intent` is required.",
                code="parameter_missing",
            )
        if pi_id and pi_id not in self.payment_intents:
            raise _missing("payment_intent", pi_id)
        charge_id = self._charge_id(pi_id) if pi_id else str(charge_param)
        charge = self.charges.get(charge_id)
        if charge is None:
            raise _missing("charge", charge_id)
        left = charge["amount"] - charge["amount_refunded"]
        amount = _amount(params, "amount") if "amount" in params else left
        if amount > MAX_AMOUNT:
            raise StripeApiError(
                400,
                "invalid_request_error",
                "Amount must be no more than 999,999.99",
                code="amount_too_large",
                param="amount",
            )
        if left <= 0:
            raise StripeApiError(
                400,
                "invalid_request_error",
                f"Charge {charge_id} has already been refunded.",
                code="charge_already_refunded",
            )
        if charge["disputed"]:
            raise StripeApiError(
                400,
                "invalid_request_error",
                f"Charge {charge_id} has been charged back; cannot issue a refund.",
                code="charge_disputed",
            )
        if amount > left:
            raise StripeApiError(
                400,
                "invalid_request_error",
                f"Refund amount ({amount}) is greater than unrefunded amount on charge ({left})",
                param="amount",
            )
        script = self._scripts.get(pi_id or "") or self._scripts.get(charge_id) or _Script()
        refund_id = f"re_{uuid.uuid4().hex[:24]}"
        refund: dict[str, Any] = {
            "id": refund_id,
            "object": "refund",
            "amount": amount,
            "charge": charge_id,
            "payment_intent": charge["payment_intent"],
            "currency": charge["currency"],
            "created": int(time.time()),
            "metadata": params.get("metadata", {}),
            "reason": params.get("reason"),
            "status": script.status,
            "destination_details": _card_details(script.arn),
        }
        if script.failure_reason is not None:
            refund["failure_reason"] = script.failure_reason
        if script.status not in ("failed", "canceled"):
            charge["amount_refunded"] += amount
        self.refund_objects[refund_id] = refund
        return refund

    def list_refunds(self, params: dict[str, Any]) -> dict[str, Any]:
        refunds = list(reversed(self.refund_objects.values()))  # newest first
        if params.get("payment_intent"):
            if params["payment_intent"] not in self.payment_intents:
                raise _missing("payment_intent", params["payment_intent"])
            refunds = [r for r in refunds if r["payment_intent"] == params["payment_intent"]]
        if params.get("charge"):
            refunds = [r for r in refunds if r["charge"] == params["charge"]]
        if params.get("starting_after"):
            ids = [r["id"] for r in refunds]
            refunds = refunds[ids.index(params["starting_after"]) + 1 :]
        limit = _amount(params, "limit") if "limit" in params else 10
        return {
            "object": "list",
            "url": "/v1/refunds",
            "has_more": len(refunds) > limit,
            "data": refunds[:limit],
        }


def _amount(params: dict[str, Any], name: str) -> int:
    try:
        value = int(params[name])
    except (KeyError, ValueError):
        value = 0
    if value < 1:
        raise StripeApiError(
            400,
            "invalid_request_error",
            "Invalid positive integer",
            code="parameter_invalid_integer",
            param=name,
        )
    return value


def _missing(param: str, value: str) -> StripeApiError:
    return StripeApiError(
        404,
        "invalid_request_error",
        f"No such {param}: '{value}'",
        code="resource_missing",
        param=param,
    )


def _card_details(arn: str | None) -> dict[str, Any]:
    card: dict[str, Any] = {"type": "refund"}
    if arn is not None:
        card |= {
            "reference": arn,
            "reference_status": "available",
            "reference_type": "acquirer_reference_number",
        }
    else:
        card |= {"reference_status": "pending"}
    return {"type": "card", "card": card}


def _form(raw: str) -> dict[str, Any]:
    """Stripe's form encoding, one level deep: metadata[key]=value, expand[]=value."""
    params: dict[str, Any] = {}
    for key, value in parse_qsl(raw, keep_blank_values=True):
        if key.endswith("[]"):
            params.setdefault(key[:-2], []).append(value)
        elif "[" in key and key.endswith("]"):
            outer, inner = key[:-1].split("[", 1)
            params.setdefault(outer, {})[inner] = value
        else:
            params[key] = value
    return params


def _error(error: StripeApiError) -> Response:
    return JSONResponse(error.body, status_code=error.status)


def create_app(fake: FakeStripe) -> Starlette:
    """The ASGI app serving `fake`."""

    def check(request: Request) -> None:
        auth = request.headers.get("authorization", "")
        if auth != f"Bearer {fake.api_key}":
            raise StripeApiError(
                401, "invalid_request_error", f"Invalid API Key provided: {auth[7:15]}***"
            )
        with fake._lock:
            if fake._faults:
                raise fake._faults.pop(0)

    async def post(request: Request, action: str) -> Response:
        params = _form((await request.body()).decode())
        key = request.headers.get("idempotency-key")
        delay = 0.0
        try:
            check(request)
            with fake._lock:
                if key is not None and (request.url.path, key) in fake._idempotent:
                    first, status, body = fake._idempotent[(request.url.path, key)]
                    if first != params:
                        raise StripeApiError(
                            400,
                            "idempotency_error",
                            "Keys for idempotent requests can only be used with the same "
                            f"parameters they were first used with. Try using a key other "
                            f"than '{key}' if you meant to execute a different request.",
                        )
                    return Response(
                        body,
                        status,
                        media_type="application/json",
                        headers={"Idempotent-Replayed": "true"},
                    )
                try:
                    status, body = 200, json.dumps(getattr(fake, action)(params)).encode()
                except StripeApiError as error:
                    status, body = error.status, json.dumps(error.body).encode()
                if action == "create_refund":
                    fake.refund_creations += 1
                    delay, fake._delay_next_refund = fake._delay_next_refund, 0.0
                if key is not None:
                    fake._idempotent[(request.url.path, key)] = (params, status, body)
        except StripeApiError as error:
            return _error(error)
        if delay:
            await asyncio.sleep(delay)  # the answer the client gave up on
        return Response(body, status, media_type="application/json")

    async def payment_intents(request: Request) -> Response:
        return await post(request, "create_payment_intent")

    async def charges(request: Request) -> Response:
        return await post(request, "create_charge")

    async def refunds(request: Request) -> Response:
        if request.method == "POST":
            return await post(request, "create_refund")
        try:
            check(request)
            with fake._lock:
                return JSONResponse(fake.list_refunds(dict(request.query_params)))
        except StripeApiError as error:
            return _error(error)

    async def refund(request: Request) -> Response:
        try:
            check(request)
            with fake._lock:
                found = fake.refund_objects.get(request.path_params["refund_id"])
                if found is None:
                    raise _missing("refund", request.path_params["refund_id"])
                return JSONResponse(found)
        except StripeApiError as error:
            return _error(error)

    return Starlette(
        routes=[
            Route("/v1/payment_intents", payment_intents, methods=["POST"]),
            Route("/v1/charges", charges, methods=["POST"]),
            Route("/v1/refunds", refunds, methods=["GET", "POST"]),
            Route("/v1/refunds/{refund_id}", refund, methods=["GET"]),
        ]
    )


@contextmanager
def running_fake_stripe() -> Iterator[FakeStripe]:
    """A FakeStripe served by uvicorn in a thread on a free loopback port."""
    fake = FakeStripe()
    with serve_in_thread(create_app(fake)) as url:
        fake.url = url
        yield fake


def sign_webhook(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """A Stripe-Signature header value: t=..., v1=HMAC-SHA256(secret, "{t}.{payload}")."""
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def event_payload(
    event_type: str, obj: dict[str, Any], *, event_id: str | None = None, created: int = 0
) -> bytes:
    """A webhook body as Stripe sends it (API version, livemode, pending_webhooks and all)."""
    return json.dumps(
        {
            "id": event_id or f"evt_{uuid.uuid4().hex[:24]}",
            "object": "event",
            "api_version": "2025-03-31.basil",
            "created": created or int(time.time()),
            "data": {"object": obj},
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "type": event_type,
        }
    ).encode()

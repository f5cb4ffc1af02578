"""The PayPal adapter against the fake PayPal on loopback: OAuth, refunds, lookups, webhooks."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from pydantic import ValidationError

from refunddesk.payouts.fakes.paypal import DEFAULT_WEBHOOK_ID, FakePayPal, serve
from refunddesk.payouts.gateways.base import (
    FailureReason,
    Gateway,
    GatewayUnavailable,
    InvalidSignature,
    NotificationKind,
    PayoutOutcome,
    WebhookReceiver,
)
from refunddesk.payouts.gateways.paypal import PayPalGateway, build, paypal_amount
from tests.fakes.adyen_paypal_webhooks import payout_request, webhook_receiver


def _gateway(api_base: str, **overrides: Any) -> PayPalGateway:
    config: dict[str, Any] = {
        "client_id": "fake-client-id",
        "client_secret": "fake-client-secret",
        "webhook_id": DEFAULT_WEBHOOK_ID,
        "api_base": api_base,
        "timeout_seconds": 2.0,
    }
    config.update(overrides)
    return build("paypal-us", config)


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[str, FakePayPal]]:
    with serve() as running:
        yield running


@pytest.fixture
def fake(served: tuple[str, FakePayPal]) -> tuple[str, FakePayPal]:
    served[1].reset()
    return served


@pytest.fixture
def gateway(fake: tuple[str, FakePayPal]) -> Iterator[PayPalGateway]:
    adapter = _gateway(fake[0])
    yield adapter
    adapter.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _api_calls(state: FakePayPal, path_part: str) -> list[str | None]:
    return [c.request_id for c in state.calls if path_part in c.path]


def test_the_adapter_fits_the_gateway_and_webhook_ports(gateway: PayPalGateway) -> None:
    port_gateway: Gateway = gateway
    assert isinstance(gateway, WebhookReceiver)
    assert port_gateway.name == "paypal-us"
    assert gateway.webhook_ack() == ("application/json", b"{}")


def test_a_completed_refund_succeeds_with_paypals_id_and_arn(
    fake: tuple[str, FakePayPal], gateway: PayPalGateway
) -> None:
    _, state = fake
    result = gateway.refund(payout_request(payment_reference="CAP-OK-1"))

    [refund] = state.refunds_for("CAP-OK-1")
    assert result.outcome is PayoutOutcome.SUCCEEDED
    assert result.gateway_reference == refund.id
    assert result.arn == refund.acquirer_reference_number
    assert (str(refund.amount), refund.currency) == ("12.50", "EUR")
    assert (refund.invoice_id, refund.custom_id) == ("rd-01JTESTREFUND-1", "RF-7K3M9Q")
    assert _api_calls(state, "/refund") == ["rd-01JTESTREFUND-1"]  # PayPal-Request-Id


def test_the_token_is_fetched_once_and_shared_by_threads(
    fake: tuple[str, FakePayPal], gateway: PayPalGateway
) -> None:
    _, state = fake
    requests = [
        payout_request(payment_reference=f"CAP-T-{i}", idempotency_key=f"rd-t-{i}")
        for i in range(8)
    ]
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(gateway.refund, requests))

    assert {r.outcome for r in results} == {PayoutOutcome.SUCCEEDED}
    assert state.tokens_issued == 1


def test_an_expired_token_is_replaced_and_the_call_goes_through(
    fake: tuple[str, FakePayPal], gateway: PayPalGateway
) -> None:
    _, state = fake
    gateway.refund(payout_request(payment_reference="CAP-A", idempotency_key="rd-a-1"))
    state.expire_tokens()

    result = gateway.refund(payout_request(payment_reference="CAP-B", idempotency_key="rd-b-1"))

    assert result.outcome is PayoutOutcome.SUCCEEDED
    assert state.tokens_issued == 2


def test_refused_client_credentials_fail_as_gateway_not_configured(
    fake: tuple[str, FakePayPal],
) -> None:
    result = _gateway(fake[0], client_secret="wrong").refund(payout_request())
    assert result.failure_reason is FailureReason.GATEWAY_NOT_CONFIGURED
    assert fake[1].refunds == {}


def test_a_pending_refund_is_followed_by_lookup_and_announced_by_webhook_when_completed(
    fake: tuple[str, FakePayPal], gateway: PayPalGateway
) -> None:
    _, state = fake
    request = payout_request(payment_reference="CAP-pending-1")
    result = gateway.refund(request)
    assert result.outcome is PayoutOutcome.PENDING
    assert result.gateway_reference is not None
    assert gateway.lookup(request, result.gateway_reference) == result

    with webhook_receiver(gateway) as (hook_url, received):
        state.notify_url = hook_url
        state.settle(result.gateway_reference, "COMPLETED")
        [note] = received.wait_for(1)

    looked = gateway.lookup(request, result.gateway_reference)
    assert looked is not None
    assert looked.outcome is PayoutOutcome.SUCCEEDED
    assert note.type == "PAYMENT.CAPTURE.REFUNDED"
    assert note.kind is NotificationKind.SUCCEEDED
    assert (note.gateway_reference, note.idempotency_key) == (
        result.gateway_reference,
        request.idempotency_key,
    )
    assert note.arn == looked.arn
    assert note.event_id.startswith("WH-")


def test_a_pending_refund_that_fails_later_is_found_failed_by_lookup(
    fake: tuple[str, FakePayPal], gateway: PayPalGateway
) -> None:
    request = payout_request(payment_reference="CAP-pending-2")
    result = gateway.refund(request)
    assert result.gateway_reference is not None
    fake[1].settle(result.gateway_reference, "CANCELLED")

    looked = gateway.lookup(request, result.gateway_reference)

    assert looked is not None
    assert (looked.outcome, looked.failure_reason) == (PayoutOutcome.FAILED, FailureReason.DECLINED)
    assert looked.failure_message == "paypal: refund cancelled"


@pytest.mark.parametrize(
    ("capture", "reason", "words"),
    [
        (
            "CAP-decline-1",
            FailureReason.DECLINED,
            "REFUND_NOT_ALLOWED: Capture cannot be refunded.",
        ),
        ("CAP-nofunds-1", FailureReason.INSUFFICIENT_FUNDS, "insufficient funds"),
        ("CAP-dispute-1", FailureReason.DISPUTED, "open case"),
        ("CAP-unknown-1", FailureReason.DECLINED, "INVALID_RESOURCE_ID"),
    ],
)
def test_a_refused_refund_fails_with_a_readable_reason(
    fake: tuple[str, FakePayPal],
    gateway: PayPalGateway,
    capture: str,
    reason: FailureReason,
    words: str,
) -> None:
    result = gateway.refund(payout_request(payment_reference=capture))
    assert result.outcome is PayoutOutcome.FAILED
    assert result.failure_reason is reason
    assert result.failure_message is not None
    assert words in result.failure_message
    assert fake[1].refunds_for(capture) == []


def test_refunding_more_than_is_left_on_the_capture_fails_as_already_refunded(
    fake: tuple[str, FakePayPal], gateway: PayPalGateway
) -> None:
    _, state = fake
    state.add_capture("CAP-SMALL", "20.00", "EUR")
    first = gateway.refund(payout_request(payment_reference="CAP-SMALL", idempotency_key="rd-1"))
    second = gateway.refund(payout_request(payment_reference="CAP-SMALL", idempotency_key="rd-2"))
    third = gateway.refund(
        payout_request(payment_reference="CAP-SMALL", idempotency_key="rd-3", amount_minor=750)
    )
    fourth = gateway.refund(
        payout_request(payment_reference="CAP-SMALL", idempotency_key="rd-4", amount_minor=1)
    )

    assert first.outcome is PayoutOutcome.SUCCEEDED
    assert second.failure_reason is FailureReason.ALREADY_REFUNDED
    assert second.failure_message is not None
    assert "REFUND_AMOUNT_EXCEEDED" in second.failure_message
    assert third.outcome is PayoutOutcome.SUCCEEDED
    assert fourth.failure_message is not None
    assert "CAPTURE_FULLY_REFUNDED" in fourth.failure_message
    assert len(state.refunds_for("CAP-SMALL")) == 2


def test_a_retry_with_the_same_request_id_gets_the_same_refund_and_pays_once(
    fake: tuple[str, FakePayPal], gateway: PayPalGateway
) -> None:
    _, state = fake
    request = payout_request(payment_reference="CAP-RETRY")

    assert gateway.refund(request) == gateway.refund(request)
    assert len(state.refunds_for("CAP-RETRY")) == 1
    assert _api_calls(state, "/refund") == [request.idempotency_key] * 2


def test_a_resend_after_paypal_forgot_the_request_id_is_stopped_by_the_invoice_id(
    fake: tuple[str, FakePayPal], gateway: PayPalGateway
) -> None:
    _, state = fake
    request = payout_request(payment_reference="CAP-LATE")
    gateway.refund(request)
    state.forget_request_ids()

    again = gateway.refund(request)

    assert again.failure_reason is FailureReason.ALREADY_REFUNDED
    assert again.failure_message is not None
    assert "DUPLICATE_INVOICE_ID" in again.failure_message
    assert len(state.refunds_for("CAP-LATE")) == 1


def test_a_timeout_after_paypal_made_the_refund_is_unavailable_and_the_retry_does_not_pay_twice(
    fake: tuple[str, FakePayPal],
) -> None:
    url, state = fake
    impatient = _gateway(url, timeout_seconds=0.3)
    request = payout_request(payment_reference="CAP-SLOW")
    impatient.refund(payout_request(payment_reference="CAP-WARM", idempotency_key="rd-w"))
    state.latency_ms = 700

    with pytest.raises(GatewayUnavailable):
        impatient.refund(request)
    assert impatient.lookup(request, None) is None  # no refund id learnt: send again

    state.latency_ms = 0
    retried = impatient.refund(request)
    [refund] = state.refunds_for("CAP-SLOW")
    assert (retried.outcome, retried.gateway_reference) == (PayoutOutcome.SUCCEEDED, refund.id)
    impatient.close()


@pytest.mark.parametrize("status", [500, 503, 429])
def test_server_errors_and_rate_limits_are_unavailable_and_refund_nothing(
    fake: tuple[str, FakePayPal], gateway: PayPalGateway, status: int
) -> None:
    _, state = fake
    gateway.refund(payout_request(payment_reference="CAP-WARM", idempotency_key="rd-w"))
    state.fail_next.append(status)
    with pytest.raises(GatewayUnavailable):
        gateway.refund(payout_request(payment_reference="CAP-OUTAGE"))
    assert state.refunds_for("CAP-OUTAGE") == []


def test_a_refused_connection_is_unavailable() -> None:
    with pytest.raises(GatewayUnavailable):
        _gateway(f"http://127.0.0.1:{_free_port()}").refund(payout_request())


def test_lookup_without_a_refund_id_answers_never_received_and_calls_nobody(
    fake: tuple[str, FakePayPal], gateway: PayPalGateway
) -> None:
    assert gateway.lookup(payout_request(), None) is None
    assert fake[1].calls == []
    assert gateway.lookup(payout_request(), "NO-SUCH-REFUND") is None


def test_lookup_during_an_outage_is_unavailable(
    fake: tuple[str, FakePayPal], gateway: PayPalGateway
) -> None:
    result = gateway.refund(payout_request())
    fake[1].fail_next.append(503)
    with pytest.raises(GatewayUnavailable):
        gateway.lookup(payout_request(), result.gateway_reference)


# -- amounts -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "currency", "value"),
    [(1250, "EUR", "12.50"), (1200, "JPY", "1200"), (150000, "HUF", "1500"), (5, "USD", "0.05")],
)
def test_amounts_are_sent_as_paypal_decimal_strings(
    fake: tuple[str, FakePayPal], gateway: PayPalGateway, amount: int, currency: str, value: str
) -> None:
    assert paypal_amount(amount, currency) == value
    result = gateway.refund(payout_request(amount_minor=amount, currency=currency))
    assert result.outcome is PayoutOutcome.SUCCEEDED
    [refund] = fake[1].refunds.values()
    assert refund.resource()["amount"] == {"currency_code": currency, "value": value}


def test_a_fractional_amount_in_a_whole_unit_currency_fails_without_calling_paypal(
    fake: tuple[str, FakePayPal], gateway: PayPalGateway
) -> None:
    result = gateway.refund(payout_request(amount_minor=150050, currency="HUF"))
    assert result.failure_reason is FailureReason.CURRENCY_NOT_SUPPORTED
    assert fake[1].calls == []


def test_a_currency_paypal_does_not_take_fails_as_currency_not_supported(
    fake: tuple[str, FakePayPal], gateway: PayPalGateway
) -> None:
    result = gateway.refund(payout_request(amount_minor=1250, currency="BHD"))
    assert result.failure_reason is FailureReason.CURRENCY_NOT_SUPPORTED
    assert result.failure_message is not None
    assert "CURRENCY_NOT_SUPPORTED" in result.failure_message
    assert fake[1].refunds == {}


# -- webhooks ---------------------------------------------------------------------------


def _refund_resource(state: FakePayPal, gateway: PayPalGateway, capture: str) -> dict[str, Any]:
    gateway.refund(payout_request(payment_reference=capture))
    [refund] = state.refunds_for(capture)
    return refund.resource()


def test_a_webhook_verified_by_paypal_is_parsed(
    fake: tuple[str, FakePayPal], gateway: PayPalGateway
) -> None:
    _, state = fake
    resource = _refund_resource(state, gateway, "CAP-HOOK")
    headers, body = state.signed_webhook("PAYMENT.CAPTURE.REFUNDED", resource)
    lower = {k.lower(): v for k, v in headers.items()}

    [note] = gateway.parse_webhook(lower, body)

    assert note.kind is NotificationKind.SUCCEEDED
    assert note.event_id == json.loads(body)["id"]
    assert note.gateway_reference == resource["id"]
    assert note.occurred_at is not None
    assert note.occurred_at.tzinfo is not None


def test_verification_failure_is_an_invalid_signature(
    fake: tuple[str, FakePayPal], gateway: PayPalGateway
) -> None:
    _, state = fake
    headers, body = state.signed_webhook(
        "PAYMENT.CAPTURE.REFUNDED", {"id": "R1", "status": "COMPLETED"}
    )
    state.force_verification = "FAILURE"
    with pytest.raises(InvalidSignature, match="FAILURE"):
        gateway.parse_webhook(headers, body)


def test_a_tampered_webhook_is_refused(
    fake: tuple[str, FakePayPal], gateway: PayPalGateway
) -> None:
    _, state = fake
    headers, body = state.signed_webhook(
        "PAYMENT.CAPTURE.REFUNDED", {"id": "R1", "status": "FAILED"}
    )
    tampered = body.replace(b'"FAILED"', b'"COMPLETED"')
    with pytest.raises(InvalidSignature):
        gateway.parse_webhook(headers, tampered)


def test_a_webhook_for_another_webhook_id_is_refused(fake: tuple[str, FakePayPal]) -> None:
    _, state = fake
    headers, body = state.signed_webhook(
        "PAYMENT.CAPTURE.REFUNDED", {"id": "R1", "status": "COMPLETED"}
    )
    other = _gateway(fake[0], webhook_id="OTHERWEBHOOK1")
    with pytest.raises(InvalidSignature):
        other.parse_webhook(headers, body)


def test_a_webhook_without_transmission_headers_is_refused_without_asking_paypal(
    fake: tuple[str, FakePayPal], gateway: PayPalGateway
) -> None:
    _, state = fake
    headers, body = state.signed_webhook(
        "PAYMENT.CAPTURE.REFUNDED", {"id": "R1", "status": "COMPLETED"}
    )
    del headers["PAYPAL-TRANSMISSION-SIG"]
    with pytest.raises(InvalidSignature, match="paypal-transmission-sig"):
        gateway.parse_webhook(headers, body)
    assert state.calls == []


def test_an_account_whose_credentials_paypal_refuses_cannot_verify(
    fake: tuple[str, FakePayPal],
) -> None:
    headers, body = fake[1].signed_webhook(
        "PAYMENT.CAPTURE.REFUNDED", {"id": "R1", "status": "COMPLETED"}
    )
    with pytest.raises(InvalidSignature):
        _gateway(fake[0], client_secret="wrong").parse_webhook(headers, body)


def test_verification_during_an_outage_is_unavailable(
    fake: tuple[str, FakePayPal], gateway: PayPalGateway
) -> None:
    _, state = fake
    headers, body = state.signed_webhook(
        "PAYMENT.CAPTURE.REFUNDED", {"id": "R1", "status": "COMPLETED"}
    )
    gateway.refund(payout_request(payment_reference="CAP-WARM"))
    state.fail_next.append(503)
    with pytest.raises(GatewayUnavailable):
        gateway.parse_webhook(headers, body)


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"id": "WH-1"}'])
def test_a_body_that_is_not_a_paypal_event_is_a_value_error(
    fake: tuple[str, FakePayPal], gateway: PayPalGateway, body: bytes
) -> None:
    headers, _ = fake[1].signed_webhook("PAYMENT.CAPTURE.REFUNDED", {"id": "R1"})
    with pytest.raises(ValueError, match="paypal"):
        gateway.parse_webhook(headers, body)


def test_refund_events_parse_independently_of_their_order(
    fake: tuple[str, FakePayPal], gateway: PayPalGateway
) -> None:
    _, state = fake
    resource = _refund_resource(state, gateway, "CAP-ORDER")
    failed = {**resource, "status": "FAILED"}
    pending = {**resource, "status": "PENDING", "status_details": {"reason": "ECHECK"}}
    deliveries = [
        state.signed_webhook("PAYMENT.CAPTURE.REFUNDED", resource),
        state.signed_webhook("PAYMENT.REFUND.FAILED", failed),
        state.signed_webhook("PAYMENT.REFUND.PENDING", pending),
    ]

    notes = [gateway.parse_webhook(h, b)[0] for h, b in reversed(deliveries)]

    assert [n.kind for n in notes] == [
        NotificationKind.PENDING,
        NotificationKind.FAILED,
        NotificationKind.SUCCEEDED,
    ]
    assert {n.gateway_reference for n in notes} == {resource["id"]}
    assert {n.idempotency_key for n in notes} == {"rd-01JTESTREFUND-1"}
    assert len({n.event_id for n in notes}) == 3
    assert notes[1].failure_reason is FailureReason.DECLINED


@pytest.mark.parametrize(
    ("event_type", "resource_type"),
    [
        ("PAYMENT.CAPTURE.COMPLETED", "capture"),
        ("PAYMENT.CAPTURE.REVERSED", "refund"),  # PayPal took the payment back: not our refund
        ("CHECKOUT.ORDER.APPROVED", "checkout-order"),
    ],
)
def test_events_the_desk_does_not_act_on_are_ignored(
    fake: tuple[str, FakePayPal], gateway: PayPalGateway, event_type: str, resource_type: str
) -> None:
    headers, body = fake[1].signed_webhook(
        event_type, {"id": "X1", "status": "COMPLETED"}, resource_type=resource_type
    )
    [note] = gateway.parse_webhook(headers, body)
    assert (note.kind, note.type) == (NotificationKind.IGNORED, event_type)
    assert note.gateway_reference is None


def test_config_is_validated_and_keeps_the_secret_out_of_its_repr() -> None:
    adapter = _gateway("https://api-m.sandbox.paypal.com/")
    assert adapter.config.api_base == "https://api-m.sandbox.paypal.com"
    assert "fake-client-secret" not in repr(adapter.config)
    with pytest.raises(ValidationError):
        build("paypal", {"client_id": "x", "client_secret": "y"})  # no webhook_id
    with pytest.raises(ValidationError, match="api_base"):
        _gateway("file:///etc")


@pytest.mark.parametrize(
    ("event_type", "outcome", "kind"),
    [
        ("CUSTOMER.DISPUTE.CREATED", None, NotificationKind.DISPUTE_OPENED),
        ("CUSTOMER.DISPUTE.RESOLVED", "RESOLVED_SELLER_FAVOUR", NotificationKind.DISPUTE_CLOSED),
        # lost: the bank already gave the money back, so the hold stays
        ("CUSTOMER.DISPUTE.RESOLVED", "RESOLVED_BUYER_FAVOUR", NotificationKind.DISPUTE_OPENED),
    ],
)
def test_disputes_name_the_disputed_captures(
    fake: tuple[str, FakePayPal],
    gateway: PayPalGateway,
    event_type: str,
    outcome: str | None,
    kind: NotificationKind,
) -> None:
    resource: dict[str, object] = {
        "dispute_id": "PP-D-1",
        "status": "RESOLVED" if outcome else "OPEN",
        "reason": "MERCHANDISE_OR_SERVICE_NOT_RECEIVED",
        "disputed_transactions": [{"seller_transaction_id": "CAP-1"}],
    }
    if outcome:
        resource["dispute_outcome"] = {"outcome_code": outcome}
    headers, body = fake[1].signed_webhook(event_type, resource, resource_type="dispute")
    [note] = gateway.parse_webhook(headers, body)
    assert (note.kind, note.gateway_reference, note.payment_references) == (
        kind,
        "PP-D-1",
        ("CAP-1",),
    )

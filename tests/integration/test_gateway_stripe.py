"""The stripe adapter against a stateful fake Stripe API on loopback, through the real SDK."""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pytest
import stripe
from pydantic import ValidationError

from refunddesk.payouts.gateways.base import (
    FailureReason,
    GatewayUnavailable,
    InvalidSignature,
    NotificationKind,
    PayoutOutcome,
    PayoutRequest,
    WebhookReceiver,
)
from refunddesk.payouts.gateways.stripe import StripeConfig, StripeGateway, build
from tests.fakes.stripe_server import (
    API_KEY,
    FakeStripe,
    event_payload,
    running_fake_stripe,
    sign_webhook,
)

SECRET = "whsec_test_refunddesk"
ARN = "74987505218007463718541"


@pytest.fixture(scope="session")
def stripe_server() -> Iterator[FakeStripe]:
    with running_fake_stripe() as fake:
        yield fake


@pytest.fixture
def fake(stripe_server: FakeStripe) -> FakeStripe:
    stripe_server.reset()
    return stripe_server


def _gateway(fake: FakeStripe, **overrides: Any) -> StripeGateway:
    config = {"api_key": API_KEY, "webhook_secret": SECRET, "api_base": fake.url} | overrides
    return build("stripe-eu", config)


@pytest.fixture
def gateway(fake: FakeStripe) -> StripeGateway:
    return _gateway(fake, timeout_seconds=5)


@pytest.fixture
def sdk(fake: FakeStripe) -> stripe.StripeClient:
    """Stripe's own client, for setting up payments the way a shop's checkout did."""
    return stripe.StripeClient(API_KEY, base_addresses={"api": fake.url}, max_network_retries=0)


def _payment_intent(sdk: stripe.StripeClient, amount: int = 5000) -> str:
    intent = sdk.v1.payment_intents.create(
        params={
            "amount": amount,
            "currency": "eur",
            "confirm": True,
            "payment_method": "pm_card_visa",
        }
    )
    return intent.id


def _request(payment: str, amount: int = 1250, key: str | None = None) -> PayoutRequest:
    return PayoutRequest(
        idempotency_key=key or f"payout-{uuid.uuid4().hex}",
        tenant_id="tenant-1",
        refund_id=f"refund-{uuid.uuid4().hex[:8]}",
        reference="RF-7K2P9Q",
        amount_minor=amount,
        currency="EUR",
        method="card",
        payment_reference=payment,
        customer_email="ada@example.com",
    )


def _signed(body: bytes, secret: str = SECRET, **kw: Any) -> dict[str, str]:
    return {
        "Stripe-Signature": sign_webhook(body, secret, **kw),
        "Content-Type": "application/json",
    }


# -- refunds --------------------------------------------------------------------------------


def test_refund_on_a_payment_intent_succeeds_once_with_our_metadata(
    gateway: StripeGateway, fake: FakeStripe, sdk: stripe.StripeClient
) -> None:
    pi = _payment_intent(sdk)
    request = _request(pi)

    result = gateway.refund(request)

    assert result.outcome is PayoutOutcome.SUCCEEDED
    [refund] = fake.refunds(pi)
    assert result.gateway_reference == refund["id"]
    assert refund["amount"] == 1250
    assert refund["metadata"] == {
        "refund_id": request.refund_id,
        "reference": "RF-7K2P9Q",
        "idempotency_key": request.idempotency_key,
        "tenant_id": "tenant-1",
    }


def test_refund_on_a_charge_refunds_that_charge(
    gateway: StripeGateway, fake: FakeStripe, sdk: stripe.StripeClient
) -> None:
    charge = sdk.v1.charges.create(params={"amount": 900, "currency": "usd", "source": "tok_visa"})

    result = gateway.refund(_request(charge.id, amount=900))

    assert result.outcome is PayoutOutcome.SUCCEEDED
    assert [r["charge"] for r in fake.refunds()] == [charge.id]


def test_pending_refund_is_pending_and_lookup_sees_it_succeed_with_its_arn(
    gateway: StripeGateway, fake: FakeStripe, sdk: stripe.StripeClient
) -> None:
    pi = _payment_intent(sdk)
    fake.script_refunds(pi, "pending")
    request = _request(pi)

    sent = gateway.refund(request)
    assert sent.outcome is PayoutOutcome.PENDING
    assert sent.arn is None
    assert sent.gateway_reference is not None
    fake.update_refund(sent.gateway_reference, "succeeded", arn=ARN)

    polled = gateway.lookup(request, sent.gateway_reference)

    assert polled is not None
    assert polled.outcome is PayoutOutcome.SUCCEEDED
    assert polled.gateway_reference == sent.gateway_reference
    assert polled.arn == ARN


def test_requires_action_refund_is_pending(
    gateway: StripeGateway, fake: FakeStripe, sdk: stripe.StripeClient
) -> None:
    pi = _payment_intent(sdk)
    fake.script_refunds(pi, "requires_action")

    assert gateway.refund(_request(pi)).outcome is PayoutOutcome.PENDING


def test_succeeded_refund_carries_the_arn_when_stripe_has_one(
    gateway: StripeGateway, fake: FakeStripe, sdk: stripe.StripeClient
) -> None:
    pi = _payment_intent(sdk)
    fake.script_refunds(pi, "succeeded", arn=ARN)

    assert gateway.refund(_request(pi)).arn == ARN


@pytest.mark.parametrize(
    ("status", "stripe_reason", "reason"),
    [
        ("failed", "expired_or_canceled_card", FailureReason.EXPIRED_OR_CANCELED_CARD),
        ("failed", "lost_or_stolen_card", FailureReason.LOST_OR_STOLEN_CARD),
        ("failed", "insufficient_funds", FailureReason.INSUFFICIENT_FUNDS),
        ("failed", "declined", FailureReason.DECLINED),
        ("failed", "unknown", FailureReason.UNKNOWN),
        ("canceled", "merchant_request", FailureReason.UNKNOWN),
        ("failed", "charge_for_pending_refund_disputed", FailureReason.DISPUTED),
    ],
)
def test_refund_stripe_fails_is_failed_with_a_readable_reason(
    gateway: StripeGateway,
    fake: FakeStripe,
    sdk: stripe.StripeClient,
    status: str,
    stripe_reason: str,
    reason: FailureReason,
) -> None:
    pi = _payment_intent(sdk)
    fake.script_refunds(pi, status, failure_reason=stripe_reason)

    result = gateway.refund(_request(pi))

    assert result.outcome is PayoutOutcome.FAILED
    assert result.failure_reason is reason
    assert result.gateway_reference is not None
    assert result.failure_message == f"Stripe refund {status}: {stripe_reason.replace('_', ' ')}"


def test_refund_of_a_disputed_payment_is_failed_disputed(
    gateway: StripeGateway, fake: FakeStripe, sdk: stripe.StripeClient
) -> None:
    pi = _payment_intent(sdk)
    fake.dispute(pi)

    result = gateway.refund(_request(pi))

    assert result.outcome is PayoutOutcome.FAILED
    assert result.failure_reason is FailureReason.DISPUTED
    assert "charged back" in (result.failure_message or "")
    assert fake.refunds(pi) == []


def test_refund_of_a_fully_refunded_payment_is_failed_already_refunded(
    gateway: StripeGateway, fake: FakeStripe, sdk: stripe.StripeClient
) -> None:
    pi = _payment_intent(sdk, amount=1250)
    assert gateway.refund(_request(pi, amount=1250)).outcome is PayoutOutcome.SUCCEEDED

    result = gateway.refund(_request(pi, amount=100))

    assert result.failure_reason is FailureReason.ALREADY_REFUNDED
    assert "already been refunded" in (result.failure_message or "")


def test_refund_of_more_than_is_left_is_declined_in_stripes_words(
    gateway: StripeGateway, sdk: stripe.StripeClient
) -> None:
    pi = _payment_intent(sdk, amount=1000)

    result = gateway.refund(_request(pi, amount=1001))

    assert result.outcome is PayoutOutcome.FAILED
    assert result.failure_reason is FailureReason.DECLINED
    assert result.failure_message == (
        "Stripe: Refund amount (1001) is greater than unrefunded amount on charge (1000)"
    )


def test_refund_of_an_unknown_payment_intent_fails_without_paying(
    gateway: StripeGateway, fake: FakeStripe
) -> None:
    result = gateway.refund(_request("pi_doesnotexist"))

    assert result.failure_reason is FailureReason.UNKNOWN
    assert "No such payment_intent" in (result.failure_message or "")
    assert fake.refunds() == []


def test_payment_reference_that_is_not_stripes_fails_without_calling_stripe(
    gateway: StripeGateway, fake: FakeStripe
) -> None:
    result = gateway.refund(_request("PSP-123456"))

    assert result.failure_reason is FailureReason.UNKNOWN
    assert fake.refund_creations == 0


# -- exactly once -----------------------------------------------------------------------------


def test_same_idempotency_key_sent_twice_pays_once(
    gateway: StripeGateway, fake: FakeStripe, sdk: stripe.StripeClient
) -> None:
    pi = _payment_intent(sdk)
    request = _request(pi)

    first = gateway.refund(request)
    again = gateway.refund(request)

    assert again == first
    assert len(fake.refunds(pi)) == 1
    assert fake.refund_creations == 1


def test_same_key_with_other_parameters_is_refused_and_pays_nothing_more(
    gateway: StripeGateway, fake: FakeStripe, sdk: stripe.StripeClient
) -> None:
    pi = _payment_intent(sdk)
    gateway.refund(_request(pi, amount=500, key="payout-k1"))

    result = gateway.refund(_request(pi, amount=700, key="payout-k1"))

    assert result.outcome is PayoutOutcome.FAILED
    assert result.failure_reason is FailureReason.UNKNOWN
    assert "same parameters" in (result.failure_message or "")
    assert len(fake.refunds(pi)) == 1


def test_lost_answer_is_unavailable_then_lookup_finds_it_and_a_resend_pays_nothing_more(
    fake: FakeStripe, sdk: stripe.StripeClient
) -> None:
    gateway = _gateway(fake, timeout_seconds=0.3)
    pi = _payment_intent(sdk)
    request = _request(pi)
    fake.hold_next_refund_answer(1.0)

    with pytest.raises(GatewayUnavailable):
        gateway.refund(request)
    found = gateway.lookup(request, None)
    resent = gateway.refund(request)

    [refund] = fake.refunds(pi)
    assert found is not None
    assert found.outcome is PayoutOutcome.SUCCEEDED
    assert found.gateway_reference == refund["id"]
    assert resent.gateway_reference == refund["id"]


def test_lookup_by_key_finds_the_refund_among_many_on_the_payment(
    gateway: StripeGateway, fake: FakeStripe, sdk: stripe.StripeClient
) -> None:
    pi = _payment_intent(sdk, amount=100_000)
    request = _request(pi, amount=10)
    gateway.refund(request)
    for n in range(120):  # newer refunds of the same payment push ours to the second page
        with fake._lock:
            fake.create_refund({"payment_intent": pi, "amount": "1", "metadata": {"n": str(n)}})

    found = gateway.lookup(request, None)

    assert found is not None
    assert found.outcome is PayoutOutcome.SUCCEEDED
    assert found.gateway_reference == fake.refunds(pi)[0]["id"]


def test_lookup_by_key_on_a_charge(gateway: StripeGateway, sdk: stripe.StripeClient) -> None:
    charge = sdk.v1.charges.create(params={"amount": 900, "currency": "usd", "source": "tok_visa"})
    request = _request(charge.id, amount=300)
    sent = gateway.refund(request)

    found = gateway.lookup(request, None)

    assert found == sent


def test_lookup_is_none_when_stripe_never_received_the_refund(
    gateway: StripeGateway, sdk: stripe.StripeClient
) -> None:
    pi = _payment_intent(sdk)
    gateway.refund(_request(pi))  # another payout of the same payment

    assert gateway.lookup(_request(pi), None) is None
    assert gateway.lookup(_request(pi), "re_doesnotexist") is None
    assert gateway.lookup(_request("pi_doesnotexist"), None) is None
    assert gateway.lookup(_request("PSP-123456"), None) is None


def test_one_adapter_serves_many_threads_and_pays_each_payout_once(
    gateway: StripeGateway, fake: FakeStripe, sdk: stripe.StripeClient
) -> None:
    pi = _payment_intent(sdk, amount=100_000)
    requests = [_request(pi, amount=100) for _ in range(16)]

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(gateway.refund, requests + requests))

    assert all(r.outcome is PayoutOutcome.SUCCEEDED for r in results)
    assert len(fake.refunds(pi)) == 16
    assert results[:16] == results[16:]


# -- outages ------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 500, 502, 503])
def test_rate_limits_and_server_errors_are_gateway_unavailable_and_pay_nothing(
    gateway: StripeGateway, fake: FakeStripe, sdk: stripe.StripeClient, status: int
) -> None:
    pi = _payment_intent(sdk)
    request = _request(pi)
    fake.fail_next(status, "rate_limit_error" if status == 429 else "api_error", times=2)

    with pytest.raises(GatewayUnavailable):
        gateway.refund(request)
    with pytest.raises(GatewayUnavailable):
        gateway.lookup(request, None)
    assert fake.refunds(pi) == []
    assert gateway.refund(request).outcome is PayoutOutcome.SUCCEEDED  # same key, later


def test_connection_refused_is_gateway_unavailable(fake: FakeStripe) -> None:
    with socket.socket() as sock:  # a port nobody listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    gateway = _gateway(fake, api_base=f"http://127.0.0.1:{port}", timeout_seconds=2)
    request = _request("pi_anything")

    with pytest.raises(GatewayUnavailable):
        gateway.refund(request)
    with pytest.raises(GatewayUnavailable):
        gateway.lookup(request, "re_anything")


def test_wrong_api_key_is_failed_gateway_not_configured(
    fake: FakeStripe, sdk: stripe.StripeClient
) -> None:
    gateway = _gateway(fake, api_key="sk_test_revoked")

    result = gateway.refund(_request(_payment_intent(sdk)))

    assert result.outcome is PayoutOutcome.FAILED
    assert result.failure_reason is FailureReason.GATEWAY_NOT_CONFIGURED
    assert "Invalid API Key" in (result.failure_message or "")


# -- webhooks ---------------------------------------------------------------------------------


def _refund_object(
    fake: FakeStripe, sdk: stripe.StripeClient, gateway: StripeGateway
) -> tuple[PayoutRequest, dict[str, Any]]:
    pi = _payment_intent(sdk)
    fake.script_refunds(pi, "pending")
    request = _request(pi)
    gateway.refund(request)
    [refund] = fake.refunds(pi)
    return request, refund


def test_signed_refund_updated_event_becomes_a_notification(
    gateway: StripeGateway, fake: FakeStripe, sdk: stripe.StripeClient
) -> None:
    request, refund = _refund_object(fake, sdk, gateway)
    refund = fake.update_refund(refund["id"], "succeeded", arn=ARN)
    body = event_payload("refund.updated", refund, event_id="evt_1", created=1_795_000_000)

    [note] = gateway.parse_webhook(_signed(body), body)

    assert note.event_id == "evt_1"
    assert note.type == "refund.updated"
    assert note.kind is NotificationKind.SUCCEEDED
    assert note.gateway_reference == refund["id"]
    assert note.idempotency_key == request.idempotency_key
    assert note.arn == ARN
    assert note.failure_reason is None
    assert note.occurred_at == datetime.fromtimestamp(1_795_000_000, tz=UTC)


@pytest.mark.parametrize(
    ("event_type", "status", "stripe_reason", "kind", "reason"),
    [
        ("refund.created", "pending", None, NotificationKind.PENDING, None),
        ("refund.updated", "requires_action", None, NotificationKind.PENDING, None),
        (
            "refund.failed",
            "failed",
            "lost_or_stolen_card",
            NotificationKind.FAILED,
            FailureReason.LOST_OR_STOLEN_CARD,
        ),
        (
            "charge.refund.updated",
            "canceled",
            "merchant_request",
            NotificationKind.FAILED,
            FailureReason.UNKNOWN,
        ),
        ("charge.refund.updated", "succeeded", None, NotificationKind.SUCCEEDED, None),
    ],
)
def test_refund_events_map_status_to_kind(
    gateway: StripeGateway,
    fake: FakeStripe,
    sdk: stripe.StripeClient,
    event_type: str,
    status: str,
    stripe_reason: str | None,
    kind: NotificationKind,
    reason: FailureReason | None,
) -> None:
    _, refund = _refund_object(fake, sdk, gateway)
    refund = fake.update_refund(refund["id"], status, failure_reason=stripe_reason)
    body = event_payload(event_type, refund)

    [note] = gateway.parse_webhook(_signed(body), body)

    assert (note.kind, note.failure_reason) == (kind, reason)


def test_refund_failed_after_it_succeeded_is_failed_with_its_reason(
    gateway: StripeGateway, fake: FakeStripe, sdk: stripe.StripeClient
) -> None:
    _, refund = _refund_object(fake, sdk, gateway)
    fake.update_refund(refund["id"], "succeeded", arn=ARN)
    refund = fake.update_refund(refund["id"], "failed", failure_reason="expired_or_canceled_card")
    body = event_payload("refund.failed", refund)

    [note] = gateway.parse_webhook(_signed(body), body)

    assert note.kind is NotificationKind.FAILED
    assert note.failure_reason is FailureReason.EXPIRED_OR_CANCELED_CARD
    assert note.arn == ARN


@pytest.mark.parametrize(
    ("event_type", "obj"),
    [
        ("charge.refunded", {"id": "ch_1", "object": "charge", "refunded": True}),
        ("payment_intent.succeeded", {"id": "pi_1", "object": "payment_intent"}),
        ("customer.created", {"id": "cus_1", "object": "customer"}),
    ],
)
def test_other_event_types_are_ignored(
    gateway: StripeGateway, event_type: str, obj: dict[str, Any]
) -> None:
    body = event_payload(event_type, obj, event_id="evt_other")

    [note] = gateway.parse_webhook(_signed(body), body)

    assert (note.event_id, note.type, note.kind) == (
        "evt_other",
        event_type,
        NotificationKind.IGNORED,
    )
    assert note.gateway_reference is None


def test_signature_header_is_found_whatever_its_case(gateway: StripeGateway) -> None:
    body = event_payload("payment_intent.created", {"id": "pi_1", "object": "payment_intent"})

    [note] = gateway.parse_webhook({"stripe-signature": sign_webhook(body, SECRET)}, body)

    assert note.kind is NotificationKind.IGNORED


def _bad_webhook(case: str) -> tuple[dict[str, str], bytes]:
    body = event_payload(
        "refund.updated", {"id": "re_1", "object": "refund", "status": "succeeded"}
    )
    return {
        "missing header": ({"Content-Type": "application/json"}, body),
        "empty header": ({"Stripe-Signature": ""}, body),
        "other secret": (_signed(body, "whsec_someone_else"), body),
        "tampered body": (_signed(body), body.replace(b"succeeded", b"failed")),
        "garbage header": ({"Stripe-Signature": "nonsense"}, body),
        "stale timestamp": (_signed(body, timestamp=int(time.time()) - 3600), body),
        "not utf-8": (_signed(b"\xff\xfe"), b"\xff\xfe"),
    }[case]


@pytest.mark.parametrize(
    "case",
    [
        "missing header",
        "empty header",
        "other secret",
        "tampered body",
        "garbage header",
        "stale timestamp",
        "not utf-8",
    ],
)
def test_webhook_that_does_not_verify_is_invalid_signature(
    gateway: StripeGateway, case: str
) -> None:
    headers, body = _bad_webhook(case)

    with pytest.raises(InvalidSignature):
        gateway.parse_webhook(headers, body)


def test_account_without_a_webhook_secret_verifies_nothing(fake: FakeStripe) -> None:
    gateway = _gateway(fake, webhook_secret=None)
    body = event_payload("refund.updated", {"id": "re_1", "object": "refund"})

    with pytest.raises(InvalidSignature):
        gateway.parse_webhook(_signed(body), body)


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", json.dumps({"id": "evt_1"}).encode()])
def test_signed_body_that_is_not_an_event_is_a_value_error(
    gateway: StripeGateway, body: bytes
) -> None:
    with pytest.raises(ValueError, match="not a Stripe event"):
        gateway.parse_webhook(_signed(body), body)


def test_webhook_ack_is_what_stripe_expects(gateway: StripeGateway) -> None:
    assert isinstance(gateway, WebhookReceiver)
    assert gateway.webhook_ack() == ("application/json", b'{"received": true}')


# -- config -------------------------------------------------------------------------------------


def test_config_defaults_to_stripes_real_api_and_no_sdk_retries() -> None:
    config = StripeConfig.model_validate({"api_key": "sk_live_x"})

    assert str(config.api_base).rstrip("/") == "https://api.stripe.com"
    assert config.timeout_seconds == 10
    assert config.max_network_retries == 0
    assert "sk_live_x" not in repr(config)


@pytest.mark.parametrize(
    "config",
    [
        {},
        {"api_key": ""},
        {"api_key": "sk_x", "api_base": "not a url"},
        {"api_key": "sk_x", "timeout_seconds": 0},
        {"api_key": "sk_x", "secret_key": "typo"},
    ],
)
def test_build_refuses_a_bad_config(config: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        build("stripe-eu", config)


@pytest.mark.parametrize(
    ("event_type", "status", "kind"),
    [
        ("charge.dispute.created", "needs_response", NotificationKind.DISPUTE_OPENED),
        ("charge.dispute.closed", "won", NotificationKind.DISPUTE_CLOSED),
        # lost: the bank already gave the money back, so the hold stays
        ("charge.dispute.closed", "lost", NotificationKind.DISPUTE_OPENED),
    ],
)
def test_disputes_name_the_payment_intent_and_the_charge(
    gateway: StripeGateway, event_type: str, status: str, kind: NotificationKind
) -> None:
    dispute = {
        "id": "dp_1",
        "object": "dispute",
        "charge": "ch_1",
        "payment_intent": "pi_1",
        "status": status,
        "reason": "fraudulent",
    }
    body = event_payload(event_type, dispute, event_id="evt_dispute")
    [note] = gateway.parse_webhook(_signed(body), body)
    assert (note.kind, note.gateway_reference, note.payment_references) == (
        kind,
        "dp_1",
        ("pi_1", "ch_1"),
    )

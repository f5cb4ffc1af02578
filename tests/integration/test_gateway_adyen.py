"""The Adyen adapter against the fake Adyen on loopback: refunds, results by signed notification."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from refunddesk.payouts.fakes.adyen import DEFAULT_HMAC_KEY, FakeAdyen, serve, sign_item
from refunddesk.payouts.gateways.adyen import AdyenGateway, adyen_minor_units, build
from refunddesk.payouts.gateways.base import (
    FailureReason,
    Gateway,
    GatewayUnavailable,
    InvalidSignature,
    NotificationKind,
    PayoutOutcome,
    WebhookReceiver,
)
from tests.fakes.adyen_paypal_webhooks import payout_request, webhook_receiver

MERCHANT = "RefunddeskTest"

# Adyen's published HMAC example: key, item and signature from Adyen's webhook docs.
PUBLISHED_KEY = "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056"
PUBLISHED_ITEM: dict[str, Any] = {
    "additionalData": {"hmacSignature": "coqCmt/IZ4E3CzPvMY8zTjQVL5hYJUiBRg8UU+iCWo0="},
    "amount": {"value": 1130, "currency": "EUR"},
    "pspReference": "7914073381342284",
    "eventCode": "AUTHORISATION",
    "eventDate": "2019-05-06T17:15:34.121+02:00",
    "merchantAccountCode": "TestMerchant",
    "merchantReference": "TestPayment-1407325143704",
    "paymentMethod": "visa",
    "success": "true",
}


def _gateway(api_base: str, **overrides: Any) -> AdyenGateway:
    config: dict[str, Any] = {
        "api_key": "AQE-test-key",
        "merchant_account": MERCHANT,
        "hmac_key": DEFAULT_HMAC_KEY,
        "api_base": api_base,
        "timeout_seconds": 2.0,
    }
    config.update(overrides)
    return build("adyen-eu", config)


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[str, FakeAdyen]]:
    with serve() as running:
        yield running


@pytest.fixture
def fake(served: tuple[str, FakeAdyen]) -> tuple[str, FakeAdyen]:
    url, state = served
    state.reset(api_key="AQE-test-key")
    return url, state


@pytest.fixture
def gateway(fake: tuple[str, FakeAdyen]) -> Iterator[AdyenGateway]:
    adapter = _gateway(fake[0])
    yield adapter
    adapter.close()


def _body(*items: dict[str, Any]) -> bytes:
    return FakeAdyen.notification_body(list(items))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_adapter_fits_the_gateway_and_webhook_ports(gateway: AdyenGateway) -> None:
    port_gateway: Gateway = gateway
    assert isinstance(gateway, WebhookReceiver)
    assert port_gateway.name == "adyen-eu"
    assert gateway.webhook_ack() == ("text/plain", b"[accepted]")


def test_a_refund_is_received_pending_then_a_signed_refund_notification_says_it_succeeded(
    fake: tuple[str, FakeAdyen], gateway: AdyenGateway
) -> None:
    _url, state = fake
    with webhook_receiver(gateway) as (hook_url, received):
        state.notify_url = hook_url
        result = gateway.refund(payout_request(payment_reference="PAY-OK-1"))

        [refund] = state.refunds_for("PAY-OK-1")
        assert result.outcome is PayoutOutcome.PENDING
        assert result.gateway_reference == refund.psp_reference
        assert (refund.value, refund.currency, refund.reference) == (
            1250,
            "EUR",
            "rd-01JTESTREFUND-1",
        )
        assert refund.idempotency_key == "rd-01JTESTREFUND-1"

        [note] = received.wait_for(1)
    assert note.kind is NotificationKind.SUCCEEDED
    assert note.type == "REFUND"
    assert note.gateway_reference == refund.psp_reference
    assert note.idempotency_key == "rd-01JTESTREFUND-1"
    assert note.event_id == f"{refund.psp_reference}:REFUND:true"
    assert note.occurred_at is not None
    assert note.occurred_at.tzinfo is not None
    assert received.refused == 0


def test_a_pending_refund_stays_pending_until_adyen_decides_it(
    fake: tuple[str, FakeAdyen], gateway: AdyenGateway
) -> None:
    _, state = fake
    request = payout_request(payment_reference="PAY-pending-7")
    result = gateway.refund(request)
    assert result.outcome is PayoutOutcome.PENDING
    assert gateway.lookup(request, result.gateway_reference) == result
    assert result.gateway_reference is not None

    item = state.settle(result.gateway_reference, success=True)

    [note] = gateway.parse_webhook({}, _body(item))
    assert (note.kind, note.gateway_reference) == (
        NotificationKind.SUCCEEDED,
        result.gateway_reference,
    )


@pytest.mark.parametrize(
    ("payment", "reason", "words"),
    [
        ("PAY-decline-1", FailureReason.DECLINED, "Refused"),
        ("PAY-nofunds-1", FailureReason.INSUFFICIENT_FUNDS, "Insufficient in-flight balance"),
        ("PAY-dispute-1", FailureReason.DISPUTED, "Dispute"),
    ],
)
def test_a_refused_refund_arrives_as_a_failed_notification_with_a_readable_reason(
    fake: tuple[str, FakeAdyen],
    gateway: AdyenGateway,
    payment: str,
    reason: FailureReason,
    words: str,
) -> None:
    with webhook_receiver(gateway) as (hook_url, received):
        fake[1].notify_url = hook_url
        result = gateway.refund(payout_request(payment_reference=payment))
        [note] = received.wait_for(1)

    assert result.outcome is PayoutOutcome.PENDING  # Adyen only says "received" at first
    assert note.kind is NotificationKind.FAILED
    assert note.failure_reason is reason
    assert note.failure_message is not None
    assert words in note.failure_message
    assert note.event_id.endswith(":REFUND:false")


def test_refunding_more_than_was_captured_fails_as_already_refunded(
    fake: tuple[str, FakeAdyen], gateway: AdyenGateway
) -> None:
    _, state = fake
    state.add_payment("PAY-SMALL", 2000, "EUR")
    gateway.refund(payout_request(payment_reference="PAY-SMALL", idempotency_key="rd-a-1"))
    gateway.refund(payout_request(payment_reference="PAY-SMALL", idempotency_key="rd-b-1"))

    first, second = state.refunds_for("PAY-SMALL")
    assert (first.status, second.status) == ("succeeded", "failed")
    item = state.notification_item(second, "REFUND", success=False, reason=second.reason)
    [note] = gateway.parse_webhook({}, _body(item))
    assert note.failure_reason is FailureReason.ALREADY_REFUNDED
    assert state.refunded("PAY-SMALL") == 1250


def test_a_retry_with_the_same_idempotency_key_gets_the_same_refund_and_pays_once(
    fake: tuple[str, FakeAdyen], gateway: AdyenGateway
) -> None:
    _, state = fake
    request = payout_request(payment_reference="PAY-RETRY")

    first = gateway.refund(request)
    second = gateway.refund(request)

    assert first == second
    assert len(state.refunds_for("PAY-RETRY")) == 1
    assert [c.idempotency_key for c in state.calls] == [request.idempotency_key] * 2


def test_a_timeout_after_adyen_made_the_refund_is_unavailable_and_the_retry_does_not_pay_twice(
    fake: tuple[str, FakeAdyen],
) -> None:
    url, state = fake
    impatient = _gateway(url, timeout_seconds=0.2)
    request = payout_request(payment_reference="PAY-SLOW")
    state.latency_ms = 600

    with pytest.raises(GatewayUnavailable):
        impatient.refund(request)
    assert impatient.lookup(request, None) is None  # no pspReference learnt: send again

    state.latency_ms = 0
    retried = impatient.refund(request)
    [refund] = state.refunds_for("PAY-SLOW")
    assert retried.gateway_reference == refund.psp_reference
    impatient.close()


@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_server_errors_and_rate_limits_are_unavailable_and_refund_nothing(
    fake: tuple[str, FakeAdyen], gateway: AdyenGateway, status: int
) -> None:
    _, state = fake
    state.fail_next.append(status)
    with pytest.raises(GatewayUnavailable):
        gateway.refund(payout_request(payment_reference="PAY-OUTAGE"))
    assert state.refunds_for("PAY-OUTAGE") == []
    assert (
        gateway.refund(payout_request(payment_reference="PAY-OUTAGE")).outcome
        is PayoutOutcome.PENDING
    )


def test_a_refused_connection_is_unavailable() -> None:
    adapter = _gateway(f"http://127.0.0.1:{_free_port()}")
    with pytest.raises(GatewayUnavailable):
        adapter.refund(payout_request())


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"api_key": "AQE-wrong"}, "Unauthorized"),
        ({"merchant_account": "Other"}, "Merchant Account"),
    ],
)
def test_refused_credentials_fail_as_gateway_not_configured(
    fake: tuple[str, FakeAdyen], overrides: dict[str, str], words: str
) -> None:
    result = _gateway(fake[0], **overrides).refund(payout_request())
    assert result.outcome is PayoutOutcome.FAILED
    assert result.failure_reason is FailureReason.GATEWAY_NOT_CONFIGURED
    assert result.failure_message is not None
    assert words in result.failure_message
    assert fake[1].refunds == {}


def test_a_validation_error_fails_with_adyens_message(
    fake: tuple[str, FakeAdyen], gateway: AdyenGateway
) -> None:
    result = gateway.refund(payout_request(payment_reference="PAY-unknown-9"))
    assert result.failure_reason is FailureReason.DECLINED
    assert result.failure_message == (
        "adyen: Original pspReference required for this operation (error 167)"
    )


def test_lookup_cannot_ask_adyen_so_it_answers_from_what_the_desk_knows(
    fake: tuple[str, FakeAdyen], gateway: AdyenGateway
) -> None:
    request = payout_request()
    assert gateway.lookup(request, None) is None
    found = gateway.lookup(request, "ABCDEF1234567890")
    assert found is not None
    assert (found.outcome, found.gateway_reference) == (PayoutOutcome.PENDING, "ABCDEF1234567890")
    assert fake[1].calls == []


# -- amounts -----------------------------------------------------------------------------


def test_zero_decimal_and_adyen_specific_currencies_are_sent_in_adyens_minor_units(
    fake: tuple[str, FakeAdyen], gateway: AdyenGateway
) -> None:
    gateway.refund(payout_request(payment_reference="PAY-JPY", currency="JPY", amount_minor=1200))
    gateway.refund(
        payout_request(
            payment_reference="PAY-ISK", currency="ISK", amount_minor=2790, idempotency_key="rd-i-1"
        )
    )
    [jpy] = fake[1].refunds_for("PAY-JPY")
    [isk] = fake[1].refunds_for("PAY-ISK")
    assert (jpy.value, jpy.currency) == (1200, "JPY")
    assert (isk.value, isk.currency) == (279000, "ISK")  # Adyen counts ISK in hundredths
    assert adyen_minor_units(1050, "EUR") == 1050
    assert adyen_minor_units(500, "CVE") == 5  # Adyen takes CVE without decimals


@pytest.mark.parametrize(("amount", "currency"), [(501, "CVE"), (100, "XAU"), (100, "ZZZ")])
def test_amounts_adyen_cannot_express_fail_without_calling_adyen(
    fake: tuple[str, FakeAdyen], gateway: AdyenGateway, amount: int, currency: str
) -> None:
    result = gateway.refund(payout_request(amount_minor=amount, currency=currency))
    assert result.failure_reason is FailureReason.CURRENCY_NOT_SUPPORTED
    assert fake[1].calls == []


# -- notifications and their signatures ---------------------------------------------------


def test_adyens_published_hmac_example_verifies(fake: tuple[str, FakeAdyen]) -> None:
    adapter = _gateway(fake[0], hmac_key=PUBLISHED_KEY)
    [note] = adapter.parse_webhook({}, _body(PUBLISHED_ITEM))
    assert note.kind is NotificationKind.IGNORED  # an AUTHORISATION is none of our business
    assert note.idempotency_key is None
    assert (
        sign_item(PUBLISHED_ITEM, PUBLISHED_KEY)
        == PUBLISHED_ITEM["additionalData"]["hmacSignature"]
    )


@pytest.mark.parametrize(
    "tamper",
    [
        lambda item: item["amount"].update(value=1131),
        lambda item: item.update(success="false"),
        lambda item: item.update(merchantReference="rd-someone-else"),
        lambda item: item["additionalData"].update(hmacSignature="AAAA" + "A" * 40),
    ],
    ids=["amount", "success", "reference", "signature"],
)
def test_a_tampered_notification_is_refused(fake: tuple[str, FakeAdyen], tamper: Any) -> None:
    adapter = _gateway(fake[0], hmac_key=PUBLISHED_KEY)
    item = json.loads(json.dumps(PUBLISHED_ITEM))
    tamper(item)
    with pytest.raises(InvalidSignature):
        adapter.parse_webhook({}, _body(item))


def test_a_notification_signed_with_another_key_is_refused(gateway: AdyenGateway) -> None:
    with pytest.raises(InvalidSignature):
        gateway.parse_webhook({}, _body(PUBLISHED_ITEM))


@pytest.mark.parametrize("additional", [None, {}, {"hmacSignature": ""}])
def test_a_notification_without_a_signature_is_refused(
    gateway: AdyenGateway, additional: dict[str, str] | None
) -> None:
    item = {k: v for k, v in PUBLISHED_ITEM.items() if k != "additionalData"}
    if additional is not None:
        item["additionalData"] = additional
    with pytest.raises(InvalidSignature):
        gateway.parse_webhook({}, _body(item))


def test_one_bad_item_refuses_the_whole_batch(
    fake: tuple[str, FakeAdyen], gateway: AdyenGateway
) -> None:
    _, state = fake
    gateway.refund(payout_request(payment_reference="PAY-BATCH"))
    [refund] = state.refunds_for("PAY-BATCH")
    good = state.notification_item(refund, "REFUND", success=True)
    bad = state.notification_item(refund, "REFUND_FAILED", success=True)
    bad["amount"]["value"] = 1
    with pytest.raises(InvalidSignature):
        gateway.parse_webhook({}, _body(good, bad))


@pytest.mark.parametrize(
    "body", [b"not json", b"[]", b'{"live": "false"}', b'{"notificationItems": [{"x": 1}]}']
)
def test_a_body_that_is_not_an_adyen_notification_is_a_value_error(
    gateway: AdyenGateway, body: bytes
) -> None:
    with pytest.raises(ValueError, match="adyen"):
        gateway.parse_webhook({}, body)


def test_failure_and_reversal_notifications_parse_independently_of_their_order(
    fake: tuple[str, FakeAdyen], gateway: AdyenGateway
) -> None:
    _, state = fake
    gateway.refund(payout_request(payment_reference="PAY-LATER"))
    [refund] = state.refunds_for("PAY-LATER")
    success = state.notification_item(refund, "REFUND", success=True)
    reversed_ = state.reverse(refund.psp_reference)
    failed = state.fail_after_success(refund.psp_reference, "Refund failed at the scheme")

    # Delivered backwards, in one batch: each item stands on its own.
    notes = gateway.parse_webhook({}, _body(failed, reversed_, success))

    assert [(n.type, n.kind) for n in notes] == [
        ("REFUND_FAILED", NotificationKind.FAILED),
        ("REFUNDED_REVERSED", NotificationKind.REVERSED),
        ("REFUND", NotificationKind.SUCCEEDED),
    ]
    assert {n.gateway_reference for n in notes} == {refund.psp_reference}
    assert {n.idempotency_key for n in notes} == {"rd-01JTESTREFUND-1"}
    assert len({n.event_id for n in notes}) == 3
    assert notes[0].failure_reason is FailureReason.DECLINED
    assert notes[1].failure_reason is FailureReason.REVERSED
    # Adyen re-sends a notification until acknowledged: the same fact keeps its event id.
    [again] = gateway.parse_webhook({}, _body(success))
    assert again.event_id == notes[2].event_id


def test_events_the_desk_does_not_act_on_are_ignored(
    fake: tuple[str, FakeAdyen], gateway: AdyenGateway
) -> None:
    _, state = fake
    gateway.refund(payout_request(payment_reference="PAY-OTHER"))
    [refund] = state.refunds_for("PAY-OTHER")
    items = [
        state.notification_item(refund, code, success=True)
        for code in ("CAPTURE", "CANCEL_OR_REFUND", "REPORT_AVAILABLE")
    ]
    notes = gateway.parse_webhook({}, _body(*items))
    assert {n.kind for n in notes} == {NotificationKind.IGNORED}
    assert {n.idempotency_key for n in notes} == {None}


# -- configuration and the process ------------------------------------------------------


def test_config_is_validated_and_keeps_secrets_out_of_its_repr() -> None:
    adapter = _gateway("https://checkout-test.adyen.com/")
    assert adapter.config.api_base == "https://checkout-test.adyen.com"
    assert "AQE-test-key" not in repr(adapter.config)
    assert DEFAULT_HMAC_KEY not in repr(adapter.config)
    with pytest.raises(ValidationError, match="hmac_key"):
        _gateway("https://checkout-test.adyen.com", hmac_key="not-hex")
    with pytest.raises(ValidationError):
        build("adyen", {"api_key": "k", "hmac_key": DEFAULT_HMAC_KEY})  # no merchant_account
    with pytest.raises(ValidationError, match="api_base"):
        _gateway("ftp://example.test")


@pytest.mark.slow
def test_the_fake_runs_as_a_process_and_the_adapter_pays_through_it(tmp_path: Any) -> None:
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "refunddesk.payouts.fakes.adyen", "--port", str(port)],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                httpx.get(f"{base}/_fake/state", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        adapter = _gateway(base)
        result = adapter.refund(payout_request())
        state = httpx.get(f"{base}/_fake/state").json()
        assert [r["psp_reference"] for r in state["refunds"]] == [result.gateway_reference]
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_chargebacks_open_a_dispute_on_the_payment_and_a_reversed_one_closes_it(
    fake: tuple[str, FakeAdyen], gateway: AdyenGateway
) -> None:
    _, state = fake
    gateway.refund(payout_request(payment_reference="PAY-CB"))
    [refund] = state.refunds_for("PAY-CB")
    items = [
        state.notification_item(refund, code, success=True)
        for code in ("NOTIFICATION_OF_CHARGEBACK", "CHARGEBACK", "CHARGEBACK_REVERSED")
    ]
    notes = gateway.parse_webhook({}, _body(*items))
    assert [n.kind for n in notes] == [
        NotificationKind.DISPUTE_OPENED,
        NotificationKind.DISPUTE_OPENED,  # lost: the bank already paid; the hold stays
        NotificationKind.DISPUTE_CLOSED,
    ]
    assert {n.payment_references for n in notes} == {("PAY-CB",)}
    assert {n.idempotency_key for n in notes} == {None}

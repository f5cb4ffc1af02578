"""Payouts through a tenant's real gateway accounts, end to end over HTTP.

A tenant's Stripe account is configured through the API; a refund is paid through a fake
Stripe on loopback; Stripe's answers arrive as signed webhooks, in any order, twice; a
decline lands in failed with a readable reason; a fallback to store credit pays it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import stripe
from fastapi.testclient import TestClient
from sqlalchemy import select

from refunddesk.auth.domain import Role
from refunddesk.bootstrap import Container
from refunddesk.payouts.accounts import set_account
from refunddesk.payouts.fakes.adyen import FakeAdyen
from refunddesk.payouts.fakes.adyen import serve as serve_adyen
from refunddesk.payouts.orm import GatewayWebhook
from tests.e2e.support import assert_problem, bearer, row_counts
from tests.factories import Factory, TenantHandle
from tests.fakes.stripe_server import FakeStripe, event_payload, running_fake_stripe, sign_webhook
from tests.integration.support import event_trail, payouts

SECRET = "whsec_test_secret_for_refunddesk"


@pytest.fixture(scope="module")
def stripe_server() -> Iterator[FakeStripe]:
    with running_fake_stripe() as fake:
        yield fake


@pytest.fixture
def fake(stripe_server: FakeStripe) -> FakeStripe:
    stripe_server.reset()
    return stripe_server


def _payment_intent(fake: FakeStripe, amount: int = 3290) -> str:
    sdk = stripe.StripeClient(fake.api_key, base_addresses={"api": fake.url})
    intent = sdk.v1.payment_intents.create(
        params={"amount": amount, "currency": "eur", "confirm": True}
    )
    return str(intent.id)


def _stripe_tenant(client: TestClient, factory: Factory, fake: FakeStripe) -> TenantHandle:
    tenant = factory.tenant()
    admin = factory.key(None, Role.ADMIN)
    response = client.put(
        "/v1/gateway-accounts/stripe",
        headers=bearer(admin, tenant.id),
        json={
            "provider": "stripe",
            "config": {"api_key": fake.api_key, "webhook_secret": SECRET, "api_base": fake.url},
            "methods": ["card"],
        },
    )
    assert response.status_code == 200, response.text
    return tenant


def _paid_refund(
    client: TestClient,
    factory: Factory,
    container: Container,
    tenant: TenantHandle,
    pi: str,
    gateway: str = "stripe",
) -> dict[str, Any]:
    order = factory.order(
        tenant.id, payment={"method": "card", "gateway": gateway, "reference": pi}
    )
    response = client.post(
        "/v1/refunds",
        headers=tenant.headers,
        json={"order_id": order, "reason": "damaged", "amount_minor": 700},
    )
    assert response.status_code == 201, response.text
    container.worker().drain()
    body: dict[str, Any] = client.get(
        f"/v1/refunds/{response.json()['id']}", headers=tenant.headers
    ).json()
    return body


def _webhook(client: TestClient, event_type: str, refund: dict[str, Any], event_id: str) -> Any:
    body = event_payload(event_type, refund, event_id=event_id)
    return client.post(
        "/v1/gateways/stripe/webhooks",
        content=body,
        headers={
            "Stripe-Signature": sign_webhook(body, SECRET),
            "Content-Type": "application/json",
        },
    )


def test_an_account_shows_its_secrets_masked_and_a_bad_config_names_the_field(
    client: TestClient, factory: Factory, fake: FakeStripe, container: Container
) -> None:
    tenant = _stripe_tenant(client, factory, fake)
    admin = factory.key(None, Role.ADMIN)
    [account] = client.get("/v1/gateway-accounts", headers=bearer(admin, tenant.id)).json()
    assert account["provider"] == "stripe"
    assert account["config"]["api_key"].startswith("****")
    assert fake.api_key not in str(account)
    assert SECRET not in str(account)
    before = row_counts(container)
    bad = client.put(
        "/v1/gateway-accounts/other",
        headers=bearer(admin, tenant.id),
        json={"provider": "stripe", "config": {"webhook_secret": SECRET}},
    )
    assert_problem(bad, 422, field="config.api_key")
    unknown = client.put(
        "/v1/gateway-accounts/other",
        headers=bearer(admin, tenant.id),
        json={"provider": "bitcoin", "config": {}},
    )
    assert_problem(unknown, 422, field="provider")
    assert row_counts(container) == before
    # a tenant's own key may not see or change gateway credentials
    assert_problem(client.get("/v1/gateway-accounts", headers=tenant.headers), 403)


def test_a_pending_stripe_refund_settles_by_webhook_once_whatever_the_order(
    client: TestClient, factory: Factory, fake: FakeStripe, container: Container
) -> None:
    # given a tenant paying through its own Stripe account, where refunds start out pending
    tenant = _stripe_tenant(client, factory, fake)
    pi = _payment_intent(fake)
    fake.script_refunds(pi, "pending")
    # when a refund is approved and the worker pays it out
    refund = _paid_refund(client, factory, container, tenant, pi)
    # then Stripe holds one pending refund and the desk waits for its word
    [at_stripe] = fake.refunds(pi)
    assert at_stripe["amount"] == 700
    assert refund["status"] == "processing"
    [payout] = payouts(container, tenant.id, refund["id"])
    assert (payout.status, payout.gateway_reference) == ("pending", at_stripe["id"])

    # when Stripe reports success (with an ARN), twice, and then an older "pending" arrives late
    done = fake.update_refund(at_stripe["id"], "succeeded", arn="74536541234567890123456")
    first = _webhook(client, "refund.updated", done, "evt_success")
    again = _webhook(client, "refund.updated", done, "evt_success")
    late = _webhook(client, "refund.created", {**done, "status": "pending"}, "evt_old_pending")
    assert [r.status_code for r in (first, again, late)] == [200, 200, 200]
    assert first.json() == {"received": True}
    container.worker().drain()

    # then the refund succeeded once, with the ARN and an arrival window, and nothing else moved
    now = client.get(f"/v1/refunds/{refund['id']}", headers=tenant.headers).json()
    assert now["status"] == "succeeded"
    [payout] = payouts(container, tenant.id, refund["id"])
    assert payout.status == "succeeded"
    assert payout.arn == "74536541234567890123456"
    assert payout.arrival_earliest is not None
    assert payout.arrival_latest is not None
    assert payout.arrival_earliest < payout.arrival_latest
    trail = [t for t, _ in event_trail(container, tenant.id, refund["id"])]
    assert trail.count("payout.succeeded") == 1
    with container.db.read() as session:
        stored = {
            (w.event_id, w.status)
            for w in session.scalars(
                select(GatewayWebhook).where(GatewayWebhook.tenant_id == tenant.id)
            )
        }
    assert stored == {("evt_success", "processed"), ("evt_old_pending", "ignored")}

    # when Stripe later says the refund failed after all (a reversal)
    reversed_ = fake.update_refund(at_stripe["id"], "failed", failure_reason="unknown")
    assert _webhook(client, "refund.failed", reversed_, "evt_reversed").status_code == 200
    container.worker().drain()
    # then the refund reopens as failed with the reason and what to do next
    now = client.get(f"/v1/refunds/{refund['id']}", headers=tenant.headers).json()
    assert now["status"] == "failed"
    [payout] = payouts(container, tenant.id, refund["id"])
    assert (payout.status, payout.failure_reason) == ("reversed", "reversed")
    listed = client.get("/v1/payouts", headers=tenant.headers).json()
    assert [(p["refund_id"], p["failure_reason"]) for p in listed] == [(refund["id"], "reversed")]
    assert "another method" in listed[0]["next_action"]


def test_a_webhook_that_does_not_verify_is_refused_and_stores_nothing(
    client: TestClient, factory: Factory, fake: FakeStripe, container: Container
) -> None:
    _stripe_tenant(client, factory, fake)
    body = event_payload("refund.updated", {"id": "re_x", "object": "refund", "status": "failed"})
    before = row_counts(container)
    forged = client.post(
        "/v1/gateways/stripe/webhooks",
        content=body,
        headers={"Stripe-Signature": sign_webhook(body, "whsec_wrong")},
    )
    assert_problem(forged, 401)
    unsigned = client.post("/v1/gateways/stripe/webhooks", content=body)
    assert_problem(unsigned, 401)
    assert_problem(client.post("/v1/gateways/nobody/webhooks", content=body), 404)
    assert row_counts(container) == before


def test_a_declined_card_fails_with_a_reason_and_a_store_credit_fallback_pays_it(
    client: TestClient, factory: Factory, fake: FakeStripe, container: Container
) -> None:
    # given a card whose refund Stripe refuses because the card expired
    tenant = _stripe_tenant(client, factory, fake)
    pi = _payment_intent(fake)
    fake.script_refunds(pi, "failed", failure_reason="expired_or_canceled_card")
    refund = _paid_refund(client, factory, container, tenant, pi)
    # then the refund is failed with a reason an agent can read and act on
    assert refund["status"] == "failed"
    [item] = client.get("/v1/payouts", headers=tenant.headers).json()
    assert item["failure_reason"] == "expired_or_canceled_card"
    assert "bank transfer or store credit" in item["next_action"]
    # when finance picks store credit as the fallback
    finance = factory.key(tenant.id, Role.FINANCE)
    response = client.post(
        f"/v1/refunds/{refund['id']}/retry",
        headers=bearer(finance),
        json={"method": "store_credit", "note": "customer agreed by phone"},
    )
    assert response.status_code == 200, response.text
    container.worker().drain()
    # then the store credit ledger pays it at once, and nothing more went to Stripe
    now = client.get(f"/v1/refunds/{refund['id']}", headers=tenant.headers).json()
    assert now["status"] == "succeeded"
    attempts = payouts(container, tenant.id, refund["id"])
    assert [(p.attempt, p.gateway, p.status) for p in attempts] == [
        (1, "stripe", "failed"),
        (2, "store_credit", "succeeded"),
    ]
    assert len(fake.refunds(pi)) == 1
    trail = [t for t, _ in event_trail(container, tenant.id, refund["id"])]
    assert "payout.fallback_chosen" in trail
    assert client.get("/v1/payouts", headers=tenant.headers).json() == []


def test_a_bank_transfer_fallback_needs_a_valid_iban(
    client: TestClient, factory: Factory, fake: FakeStripe, container: Container
) -> None:
    tenant = _stripe_tenant(client, factory, fake)
    pi = _payment_intent(fake)
    fake.script_refunds(pi, "failed", failure_reason="lost_or_stolen_card")
    refund = _paid_refund(client, factory, container, tenant, pi)
    finance = factory.key(tenant.id, Role.FINANCE)
    before = row_counts(container)
    bad = client.post(
        f"/v1/refunds/{refund['id']}/retry",
        headers=bearer(finance),
        json={
            "method": "bank_transfer",
            "bank_account": {"iban": "DE89370400440532013001", "holder": "Ada Lovelace"},
        },
    )
    assert_problem(bad, 422)
    missing = client.post(
        f"/v1/refunds/{refund['id']}/retry",
        headers=bearer(finance),
        json={"method": "bank_transfer"},
    )
    assert_problem(missing, 422)
    assert row_counts(container) == before


def test_an_order_naming_an_unconfigured_gateway_fails_with_a_reason_not_a_fake_payment(
    client: TestClient, factory: Factory, container: Container
) -> None:
    tenant = factory.tenant()
    order = factory.order(
        tenant.id, payment={"method": "card", "gateway": "adyen", "reference": "psp_1"}
    )
    response = client.post(
        "/v1/refunds",
        headers=tenant.headers,
        json={"order_id": order, "reason": "damaged", "amount_minor": 700},
    )
    container.worker().drain()
    now = client.get(f"/v1/refunds/{response.json()['id']}", headers=tenant.headers).json()
    assert now["status"] == "failed"
    [item] = client.get("/v1/payouts", headers=tenant.headers).json()
    assert item["failure_reason"] == "gateway_not_configured"
    assert "refunddesk gateways set" in item["next_action"]


# --- Adyen: asynchronous by design, notifications in batches, HMAC per item -----------------


@pytest.fixture(scope="module")
def adyen_server() -> Iterator[tuple[str, FakeAdyen]]:
    with serve_adyen() as served:
        yield served


@pytest.fixture
def adyen(adyen_server: tuple[str, FakeAdyen]) -> tuple[str, FakeAdyen]:
    url, fake = adyen_server
    fake.reset()
    return url, fake


def _adyen_refund(
    client: TestClient, factory: Factory, container: Container, adyen: tuple[str, FakeAdyen]
) -> tuple[TenantHandle, dict[str, Any], str]:
    url, fake = adyen
    tenant = factory.tenant()
    with container.db.write() as session:
        set_account(
            session,
            tenant_id=tenant.id,
            name="adyen",
            provider="adyen",
            config={
                "api_key": "AQE-test-key",
                "merchant_account": fake.merchant_account,
                "hmac_key": fake.hmac_key,
                "api_base": url,
            },
            methods=["card"],
            now=container.clock.now(),
        )
    fake.add_payment("PSP0001", 3290, "EUR")
    refund = _paid_refund(client, factory, container, tenant, "PSP0001", gateway="adyen")
    [made] = fake.refunds_for("PSP0001")
    return tenant, refund, made.psp_reference


def _notify(client: TestClient, fake: FakeAdyen, items: list[dict[str, Any]]) -> Any:
    return client.post(
        "/v1/gateways/adyen/webhooks",
        content=fake.notification_body(items),
        headers={"Content-Type": "application/json"},
    )


def test_an_adyen_refund_waits_for_its_notification_and_a_repeat_changes_nothing(
    client: TestClient, factory: Factory, container: Container, adyen: tuple[str, FakeAdyen]
) -> None:
    _, fake = adyen
    tenant, refund, psp = _adyen_refund(client, factory, container, adyen)
    assert refund["status"] == "processing"
    item = fake.settle(psp)
    for _ in range(2):
        answer = _notify(client, fake, [item])
        assert (answer.status_code, answer.text) == (200, "[accepted]")
    container.worker().drain()
    now = client.get(f"/v1/refunds/{refund['id']}", headers=tenant.headers).json()
    assert now["status"] == "succeeded"
    assert [t for t, _ in event_trail(container, tenant.id, refund["id"])].count(
        "payout.succeeded"
    ) == 1
    assert len(fake.refunds_for("PSP0001")) == 1


@pytest.mark.parametrize("reversal_first", [False, True], ids=["in order", "reversal first"])
def test_adyen_success_and_reversal_end_failed_in_either_order(
    client: TestClient,
    factory: Factory,
    container: Container,
    adyen: tuple[str, FakeAdyen],
    reversal_first: bool,
) -> None:
    _, fake = adyen
    tenant, refund, psp = _adyen_refund(client, factory, container, adyen)
    success, reversal = fake.settle(psp), fake.reverse(psp)
    for item in [reversal, success] if reversal_first else [success, reversal]:
        assert _notify(client, fake, [item]).status_code == 200
        container.worker().drain()
    now = client.get(f"/v1/refunds/{refund['id']}", headers=tenant.headers).json()
    assert now["status"] == "failed"
    [payout] = payouts(container, tenant.id, refund["id"])
    assert payout.failure_reason == "reversed"


def test_an_adyen_notification_with_a_forged_item_is_refused_whole(
    client: TestClient, factory: Factory, container: Container, adyen: tuple[str, FakeAdyen]
) -> None:
    _, fake = adyen
    tenant, refund, psp = _adyen_refund(client, factory, container, adyen)
    good = fake.settle(psp)
    forged = {**good, "pspReference": "OTHER", "success": "false"}
    before = row_counts(container)
    assert_problem(_notify(client, fake, [good, forged]), 401)
    assert row_counts(container) == before
    container.worker().drain()
    assert (
        client.get(f"/v1/refunds/{refund['id']}", headers=tenant.headers).json()["status"]
        == "processing"
    )


# --- disputes: no refund of a payment the customer is disputing with the bank -----------------


def _dispute(pi: str, status: str) -> dict[str, Any]:
    return {
        "id": f"dp_{pi}",
        "object": "dispute",
        "payment_intent": pi,
        "charge": f"ch_of_{pi}",
        "status": status,
        "reason": "fraudulent",
    }


def test_a_refund_of_a_disputed_payment_is_held_until_the_retailer_wins_the_dispute(
    client: TestClient, factory: Factory, fake: FakeStripe, container: Container
) -> None:
    # given a payment the customer disputed with the bank
    tenant = _stripe_tenant(client, factory, fake)
    pi = _payment_intent(fake)
    opened = _webhook(client, "charge.dispute.created", _dispute(pi, "needs_response"), "evt_d1")
    assert opened.status_code == 200
    container.worker().drain()
    # when a refund of that payment is approved and the worker runs
    refund = _paid_refund(client, factory, container, tenant, pi)
    # then nothing is paid: the refund waits, approved, and says why
    assert refund["status"] == "approved"
    assert fake.refunds(pi) == []
    trail = [t for t, _ in event_trail(container, tenant.id, refund["id"])]
    assert trail[-1] == "payout.held"
    # when the retailer wins the dispute
    won = _webhook(client, "charge.dispute.closed", _dispute(pi, "won"), "evt_d2")
    assert won.status_code == 200
    container.worker().drain()
    # then the held refund is paid, once
    now = client.get(f"/v1/refunds/{refund['id']}", headers=tenant.headers).json()
    assert now["status"] == "succeeded"
    assert len(fake.refunds(pi)) == 1


def test_a_lost_dispute_keeps_the_hold_for_an_agent_to_decide(
    client: TestClient, factory: Factory, fake: FakeStripe, container: Container
) -> None:
    tenant = _stripe_tenant(client, factory, fake)
    pi = _payment_intent(fake)
    _webhook(client, "charge.dispute.created", _dispute(pi, "needs_response"), "evt_d1")
    container.worker().drain()
    refund = _paid_refund(client, factory, container, tenant, pi)
    _webhook(client, "charge.dispute.closed", _dispute(pi, "lost"), "evt_d2")
    container.worker().drain()
    now = client.get(f"/v1/refunds/{refund['id']}", headers=tenant.headers).json()
    assert now["status"] == "approved"
    assert fake.refunds(pi) == []

"""Store credit: a double-entry ledger, credited once per key, never spent below zero."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from typer.testing import CliRunner

from refunddesk.api.app import create_app
from refunddesk.auth.domain import Role
from refunddesk.bootstrap import Container
from refunddesk.core.errors import IdempotencyConflict, Invalid
from refunddesk.payouts import store_credit as ledger
from refunddesk.payouts import store_credit_cli
from refunddesk.payouts.gateways.base import FailureReason, PayoutOutcome, PayoutRequest
from refunddesk.payouts.store_credit import (
    InsufficientStoreCredit,
    StoreCreditBalance,
    StoreCreditEntry,
    StoreCreditGateway,
    StoreCreditTransaction,
)
from refunddesk.payouts.store_credit_views import router
from tests.e2e.support import assert_problem, bearer
from tests.factories import Factory

EMAIL = "ada@example.com"


def _request(tenant_id: str, key: str, *, amount: int = 1000, **over: Any) -> PayoutRequest:
    values: dict[str, Any] = {
        "idempotency_key": key,
        "tenant_id": tenant_id,
        "refund_id": f"refund-{key}",
        "reference": "RF-7K2M9QXA",
        "amount_minor": amount,
        "currency": "EUR",
        "method": "store_credit",
        "payment_reference": "",
        "customer_email": EMAIL,
    }
    values.update(over)
    return PayoutRequest(**values)


def _gateway(container: Container) -> StoreCreditGateway:
    return ledger.build(db=container.db, clock=container.clock)


def _balance(container: Container, tenant_id: str, email: str = EMAIL) -> dict[str, int]:
    with container.db.read() as session:
        return ledger.balance(session, tenant_id=tenant_id, email=email)


def _spend(container: Container, tenant_id: str, amount: int, key: str) -> str:
    def work(session: Any) -> str:
        tx, _ = ledger.spend(
            session,
            clock=container.clock,
            tenant_id=tenant_id,
            email=EMAIL,
            amount_minor=amount,
            currency="EUR",
            reference="ORD-1",
            idempotency_key=key,
            actor="test",
        )
        return tx.id

    return ledger.in_own_transaction(container.db, work)


@pytest.fixture
def tenant_id(factory: Factory) -> str:
    return factory.tenant().id


# --- the gateway ----------------------------------------------------------------------------------


def test_a_refund_credits_the_customer_once_per_key(container: Container, tenant_id: str) -> None:
    gateway = _gateway(container)
    request = _request(tenant_id, "refund-1-attempt-1", amount=2500)
    assert gateway.lookup(request, None) is None

    first = gateway.refund(request)
    again = gateway.refund(request)

    assert first.outcome is PayoutOutcome.SUCCEEDED
    assert again == first
    assert gateway.lookup(request, None) == first
    assert _balance(container, tenant_id) == {"EUR": 2500}
    with container.db.read() as session:
        (tx,) = session.scalars(select(StoreCreditTransaction))
    assert (tx.id, tx.kind, tx.reference) == (first.gateway_reference, "issue", "RF-7K2M9QXA")


def test_concurrent_refunds_with_one_key_credit_once(container: Container, tenant_id: str) -> None:
    gateway = _gateway(container)
    request = _request(tenant_id, "same-key")
    results: list[Any] = []
    barrier = threading.Barrier(6)

    def call() -> None:
        barrier.wait()
        results.append(gateway.refund(request))

    threads = [threading.Thread(target=call) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({r.gateway_reference for r in results}) == 1
    assert _balance(container, tenant_id) == {"EUR": 1000}


@pytest.mark.parametrize(
    ("over", "reason"),
    [
        ({"customer_email": None}, FailureReason.INVALID_ACCOUNT),
        ({"customer_email": "not-an-email"}, FailureReason.INVALID_ACCOUNT),
        ({"currency": "XTS"}, FailureReason.CURRENCY_NOT_SUPPORTED),
        ({"amount_minor": 0}, FailureReason.DECLINED),
    ],
)
def test_a_refund_that_cannot_be_credited_fails_with_a_reason(
    container: Container, tenant_id: str, over: dict[str, Any], reason: FailureReason
) -> None:
    result = _gateway(container).refund(_request(tenant_id, "k", **over))
    assert result.outcome is PayoutOutcome.FAILED
    assert result.failure_reason is reason
    assert _balance(container, tenant_id) == {}


def test_the_same_customer_is_found_whatever_the_case_of_their_email(
    container: Container, tenant_id: str
) -> None:
    _gateway(container).refund(_request(tenant_id, "a", customer_email="Ada@Example.COM"))
    assert _balance(container, tenant_id, " ada@example.com ") == {"EUR": 1000}


# --- the ledger -----------------------------------------------------------------------------------


def test_every_transaction_is_two_entries_that_sum_to_zero(
    container: Container, tenant_id: str
) -> None:
    _gateway(container).refund(_request(tenant_id, "a", amount=1000))
    _gateway(container).refund(_request(tenant_id, "b", amount=700, currency="USD"))
    _spend(container, tenant_id, 300, "spend-1")
    with container.db.write() as session:
        ledger.adjust(
            session,
            clock=container.clock,
            tenant_id=tenant_id,
            email=EMAIL,
            amount_minor=-200,
            currency="EUR",
            memo="goodwill credit given twice",
            idempotency_key="adj-1",
            actor="admin:test",
        )

    with container.db.read() as session:
        assert ledger.unbalanced(session) == []
        legs = session.execute(
            select(StoreCreditEntry.transaction_id, func.count()).group_by(
                StoreCreditEntry.transaction_id
            )
        ).all()
        by_account = dict(
            session.execute(
                select(StoreCreditEntry.account, func.sum(StoreCreditEntry.amount_minor))
                .where(StoreCreditEntry.currency == "EUR")
                .group_by(StoreCreditEntry.account)
            ).all()
        )
        balances = list(session.scalars(select(StoreCreditBalance)))
    assert sorted(n for _, n in legs) == [2, 2, 2, 2]
    assert by_account == {
        "customer:ada@example.com": 500,
        "store_credit_issued": -1000,
        "store_credit_redeemed": 300,
        "store_credit_adjustments": 200,
    }
    assert {(b.currency, b.balance_minor) for b in balances} == {("EUR", 500), ("USD", 700)}


def test_spending_more_than_the_balance_is_refused_and_changes_nothing(
    container: Container, tenant_id: str
) -> None:
    _gateway(container).refund(_request(tenant_id, "a", amount=1000))

    with pytest.raises(InsufficientStoreCredit, match=r"10\.00 EUR") as refused:
        _spend(container, tenant_id, 1001, "spend-1")

    assert refused.value.extra == {"balance_minor": 1000, "currency": "EUR"}
    assert _balance(container, tenant_id) == {"EUR": 1000}
    with pytest.raises(InsufficientStoreCredit):  # no credit at all in another currency
        _spend_other_currency(container, tenant_id)


def _spend_other_currency(container: Container, tenant_id: str) -> None:
    with container.db.write() as session:
        ledger.spend(
            session,
            clock=container.clock,
            tenant_id=tenant_id,
            email=EMAIL,
            amount_minor=1,
            currency="USD",
            reference="ORD-2",
            idempotency_key="spend-usd",
            actor="test",
        )


def test_a_spend_key_used_again_returns_the_first_spend_and_another_body_is_a_conflict(
    container: Container, tenant_id: str
) -> None:
    _gateway(container).refund(_request(tenant_id, "a", amount=1000))
    first = _spend(container, tenant_id, 400, "spend-1")

    assert _spend(container, tenant_id, 400, "spend-1") == first
    with pytest.raises(IdempotencyConflict):
        _spend(container, tenant_id, 500, "spend-1")
    assert _balance(container, tenant_id) == {"EUR": 600}


def test_an_adjustment_needs_a_reason_and_never_goes_below_zero(
    container: Container, tenant_id: str
) -> None:
    def adjust(amount: int, memo: str, key: str) -> None:
        with container.db.write() as session:
            ledger.adjust(
                session,
                clock=container.clock,
                tenant_id=tenant_id,
                email=EMAIL,
                amount_minor=amount,
                currency="EUR",
                memo=memo,
                idempotency_key=key,
                actor="admin:test",
            )

    adjust(300, "missing credit from the old system", "adj-1")
    with pytest.raises(Invalid, match="why"):
        adjust(100, "  ", "adj-2")
    with pytest.raises(InsufficientStoreCredit):
        adjust(-301, "too much", "adj-3")
    assert _balance(container, tenant_id) == {"EUR": 300}


def test_concurrent_spends_never_make_the_balance_negative(
    container: Container, tenant_id: str
) -> None:
    # given 10.00 EUR of credit and 16 checkouts of 1.00 EUR at once
    _gateway(container).refund(_request(tenant_id, "a", amount=1000))
    outcomes: list[str] = []
    barrier = threading.Barrier(16)

    def checkout(n: int) -> None:
        barrier.wait()
        try:
            _spend(container, tenant_id, 100, f"spend-{n}")
            outcomes.append("ok")
        except InsufficientStoreCredit:
            outcomes.append("short")

    threads = [threading.Thread(target=checkout, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    # then exactly ten went through and the balance is zero, never below
    assert sorted(outcomes) == ["ok"] * 10 + ["short"] * 6
    assert _balance(container, tenant_id) == {"EUR": 0}
    with container.db.read() as session:
        afters = session.scalars(select(StoreCreditTransaction.balance_after_minor))
        assert min(afters) == 0
        assert ledger.unbalanced(session) == []


# --- the API --------------------------------------------------------------------------------------


@pytest.fixture
def api(container: Container) -> Iterator[TestClient]:
    app = create_app(container)
    mounted = {r.path for r in app.routes if isinstance(r, APIRoute)}
    if "/v1/store-credit/{email}" not in mounted:
        app.include_router(router)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def test_the_api_shows_a_balance_and_spends_it_once_per_key(
    container: Container, factory: Factory, api: TestClient
) -> None:
    tenant = factory.tenant()
    _gateway(container).refund(_request(tenant.id, "a", amount=1500))
    body = {"amount_minor": 400, "currency": "EUR", "reference": "ORD-9"}
    headers = {**tenant.headers, "Idempotency-Key": "checkout-9"}

    spent = api.post(f"/v1/store-credit/{EMAIL}/spend", json=body, headers=headers)
    replay = api.post(f"/v1/store-credit/{EMAIL}/spend", json=body, headers=headers)
    shown = api.get("/v1/store-credit/ADA@example.com", headers=tenant.headers)

    assert spent.status_code == 201, spent.text
    assert replay.status_code == 200
    assert replay.json()["id"] == spent.json()["id"]
    assert spent.json()["balance_after_minor"] == 1100
    assert shown.status_code == 200
    account = shown.json()
    assert account["email"] == EMAIL
    assert account["balances"] == [{"currency": "EUR", "balance_minor": 1100}]
    assert [t["kind"] for t in account["transactions"]] == ["spend", "issue"]
    assert account["transactions"][0]["amount_minor"] == -400


def test_the_api_refuses_a_short_balance_a_reused_key_and_bad_input_as_problems(
    container: Container, factory: Factory, api: TestClient
) -> None:
    tenant = factory.tenant()
    _gateway(container).refund(_request(tenant.id, "a", amount=500))
    url = f"/v1/store-credit/{EMAIL}/spend"
    body = {"amount_minor": 400, "currency": "EUR", "reference": "ORD-9"}
    keyed = {**tenant.headers, "Idempotency-Key": "k1"}

    short = api.post(url, json={**body, "amount_minor": 501}, headers=keyed)
    problem = assert_problem(short, 422, field="amount_minor")
    assert problem["code"] == "insufficient_store_credit"
    assert problem["balance_minor"] == 500
    assert api.post(url, json=body, headers=keyed).status_code == 201
    assert assert_problem(api.post(url, json={**body, "amount_minor": 1}, headers=keyed), 409)
    assert_problem(api.post(url, json=body, headers=tenant.headers), 422, field="Idempotency-Key")
    assert_problem(api.post(url, json={**body, "amount_minor": 0}, headers=keyed), 422)
    bad_email = api.post("/v1/store-credit/nobody/spend", json=body, headers=keyed)
    assert_problem(bad_email, 422, field="email")
    assert_problem(api.get("/v1/store-credit/nobody", headers=tenant.headers), 422, field="email")
    assert_problem(api.get(f"/v1/store-credit/{EMAIL}"), 401)


def test_another_tenants_key_sees_and_spends_nothing(
    container: Container, factory: Factory, api: TestClient
) -> None:
    mine, theirs = factory.tenant(name="Mine"), factory.tenant(name="Theirs")
    _gateway(container).refund(_request(mine.id, "a", amount=500))

    shown = api.get(f"/v1/store-credit/{EMAIL}", headers=theirs.headers)
    spent = api.post(
        f"/v1/store-credit/{EMAIL}/spend",
        json={"amount_minor": 100, "currency": "EUR", "reference": "ORD-1"},
        headers={**theirs.headers, "Idempotency-Key": "k"},
    )

    assert shown.json() == {"email": EMAIL, "balances": [], "transactions": []}
    assert_problem(spent, 422)
    assert _balance(container, mine.id) == {"EUR": 500}


def test_a_client_viewer_may_read_but_not_spend(
    container: Container, factory: Factory, api: TestClient
) -> None:
    tenant = factory.tenant()
    viewer = bearer(factory.key(tenant.id, Role.CLIENT_VIEWER))
    assert api.get(f"/v1/store-credit/{EMAIL}", headers=viewer).status_code == 200
    spent = api.post(
        f"/v1/store-credit/{EMAIL}/spend",
        json={"amount_minor": 100, "currency": "EUR", "reference": "ORD-1"},
        headers={**viewer, "Idempotency-Key": "k"},
    )
    assert_problem(spent, 403)


# --- the command line -----------------------------------------------------------------------------


def test_the_cli_prints_a_balance_and_adjusts_it(
    container: Container, tenant_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _gateway(container).refund(_request(tenant_id, "a", amount=500))
    monkeypatch.setattr(store_credit_cli, "_container", lambda: container)
    runner = CliRunner()

    adjusted = runner.invoke(
        store_credit_cli.app,
        [
            "adjust",
            EMAIL,
            "--tenant",
            tenant_id,
            "--amount-minor",
            "250",
            "--currency",
            "EUR",
            "--memo",
            "goodwill",
            "--key",
            "adj-1",
            "--json",
        ],
    )
    shown = runner.invoke(store_credit_cli.app, ["balance", EMAIL, "--tenant", tenant_id, "--json"])
    unknown = runner.invoke(store_credit_cli.app, ["balance", EMAIL, "--tenant", "nope", "--json"])

    assert adjusted.exit_code == 0, adjusted.output
    assert json.loads(adjusted.output)["balance_after_minor"] == 750
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["balances"] == [{"currency": "EUR", "balance_minor": 750}]
    assert unknown.exit_code == 2

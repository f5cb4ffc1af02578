"""A refund paid by SEPA transfer, from the failed card to the bank's confirmation."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from refunddesk.bootstrap import Container, write_bank_files
from refunddesk.payouts.accounts import set_account
from refunddesk.payouts.bank import import_status
from refunddesk.payouts.gateways.sandbox import SandboxGateway
from refunddesk.payouts.settle import apply_notifications
from refunddesk.refunds import service
from refunddesk.refunds.schemas import PayoutFallback
from tests.factories import Factory
from tests.integration.support import event_trail, payouts, refund, request

IBAN = "DE89370400440532013000"


def test_a_failed_card_refund_is_paid_by_sepa_transfer_once_the_bank_confirms(
    container: Container, factory: Factory, sandbox: SandboxGateway, tmp_path: Path
) -> None:
    # given a retailer with a SEPA account, and a card refund the gateway declined
    tenant = factory.tenant()
    with container.db.write() as session:
        set_account(
            session,
            tenant_id=tenant.id,
            name="bank",
            provider="bank_transfer",
            config={"debtor_name": "Acme GmbH", "debtor_iban": "DE02120300000000202051"},
            methods=["bank_transfer"],
            now=container.clock.now(),
        )
    sandbox.failure_rate = 1.0
    order = factory.order(tenant.id)
    made, _ = request(container, tenant.id, order_id=order, amount_minor=700)
    container.worker().drain()
    assert refund(container, tenant.id, made.id).status == "failed"
    sandbox.failure_rate = 0.0

    # when finance falls back to a bank transfer to the customer's IBAN
    with container.db.write() as session:
        service.retry_payout(
            session,
            clock=container.clock,
            config=container.intake,
            tenant_id=tenant.id,
            refund_id=made.id,
            actor="finance:test",
            fallback=PayoutFallback.model_validate(
                {"method": "bank_transfer", "bank_account": {"iban": IBAN, "holder": "Ada L."}}
            ),
        )
    container.worker().drain()
    # then the transfer waits for the bank file, the refund for the bank
    attempt = payouts(container, tenant.id, made.id)[-1]
    assert (attempt.gateway, attempt.method, attempt.status) == ("bank", "bank_transfer", "pending")
    assert refund(container, tenant.id, made.id).status == "processing"

    # when the worker writes the day's SEPA file
    report = write_bank_files(container.db, container.clock, tmp_path)
    [written] = report.files
    assert written.count == 1
    assert IBAN in written.path.read_text()
    # then the payout knows when the money arrives: 1-2 business days after the file
    attempt = payouts(container, tenant.id, made.id)[-1]
    assert attempt.arrival_earliest == date(2026, 11, 23)  # Friday 20 Nov + 1 business day
    assert attempt.arrival_latest == date(2026, 11, 24)

    # when the bank's status report confirms it (twice: a re-import changes nothing)
    csv = f"end_to_end_id,status\n{attempt.gateway_reference},ACSC\n".encode()
    for _ in range(2):
        import_status(
            db=container.db,
            clock=container.clock,
            tenant_id=tenant.id,
            data=csv,
            apply=lambda t, ns: apply_notifications(container.db, container.clock, t, ns),
        )
    # then the refund succeeded once
    assert refund(container, tenant.id, made.id).status == "succeeded"
    trail = [t for t, _ in event_trail(container, tenant.id, made.id)]
    assert trail.count("payout.succeeded") == 1
    assert [p.status for p in payouts(container, tenant.id, made.id)] == ["failed", "succeeded"]

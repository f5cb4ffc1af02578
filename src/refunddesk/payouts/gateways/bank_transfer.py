"""SEPA credit transfers as a gateway: refund() queues a transfer for the next pain.001 file.

The answer is PENDING (gateway_reference: the transfer's end-to-end id) until the bank's
status report, imported with refunddesk.payouts.bank.import_status, confirms or rejects it.
The files themselves are written by refunddesk.payouts.bank.write_files.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy.exc import IntegrityError

from refunddesk.core.clock import Clock
from refunddesk.core.ids import new_id
from refunddesk.db.uow import Database
from refunddesk.payouts.bank import (
    PROVIDER,
    BankTransfer,
    BankTransferConfig,
    TransferStatus,
    compact_bic,
    compact_iban,
    destination_problem,
    find_transfer,
    result_of,
    sepa_text,
)
from refunddesk.payouts.gateways.base import (
    BankAccount,
    GatewayFactory,
    PayoutRequest,
    PayoutResult,
)

__all__ = ["PROVIDER", "BankTransferConfig", "BankTransferGateway", "build", "factory"]


class BankTransferGateway:
    """A tenant's SEPA debtor account; thread-safe (every call is its own transaction)."""

    def __init__(
        self,
        name: str,
        config: BankTransferConfig | Mapping[str, Any],
        *,
        db: Database,
        clock: Clock,
        outbox_dir: Path,
    ) -> None:
        self.name = name
        self.config = (
            config
            if isinstance(config, BankTransferConfig)
            else BankTransferConfig.model_validate(dict(config))
        )
        self.db = db
        self.clock = clock
        self.outbox_dir = outbox_dir

    def refund(self, request: PayoutRequest) -> PayoutResult:
        """Queue a transfer once per idempotency key; a repeat returns the same transfer."""
        refused = destination_problem(request.bank_account, request.currency, request.amount_minor)
        if refused is not None:
            return refused
        assert request.bank_account is not None
        existing = self._find(request)
        if existing is not None:
            return existing
        try:
            with self.db.write() as session:
                # Looked up again inside the transaction: another thread may have queued it.
                found = find_transfer(
                    session, tenant_id=request.tenant_id, idempotency_key=request.idempotency_key
                )
                if found is not None:
                    return result_of(found)
                transfer = _new_transfer(self.name, request, request.bank_account, self.clock)
                session.add(transfer)
                return result_of(transfer)
        except IntegrityError:
            # Lost a race on the unique key: the winner's transfer is the answer.
            again = self._find(request)
            if again is None:
                raise
            return again

    def lookup(self, request: PayoutRequest, gateway_reference: str | None) -> PayoutResult | None:
        """The transfer's state by idempotency key (else end-to-end id), or None if absent."""
        with self.db.read() as session:
            transfer = find_transfer(
                session,
                tenant_id=request.tenant_id,
                idempotency_key=request.idempotency_key,
                end_to_end_id=gateway_reference,
            )
            return None if transfer is None else result_of(transfer)

    def _find(self, request: PayoutRequest) -> PayoutResult | None:
        with self.db.read() as session:
            found = find_transfer(
                session, tenant_id=request.tenant_id, idempotency_key=request.idempotency_key
            )
            return None if found is None else result_of(found)


def _new_transfer(
    account: str, request: PayoutRequest, destination: BankAccount, clock: Clock
) -> BankTransfer:
    now = clock.now()
    transfer_id = new_id()
    reference = sepa_text(request.reference, 64)
    return BankTransfer(
        tenant_id=request.tenant_id,
        id=transfer_id,
        account=account,
        idempotency_key=request.idempotency_key,
        refund_id=request.refund_id,
        reference=request.reference,
        # A ULID: 26 characters of the SEPA set, unique, and what the bank reports back.
        end_to_end_id=transfer_id,
        amount_minor=request.amount_minor,
        currency=request.currency,
        creditor_name=sepa_text(destination.holder, 70),
        creditor_iban=compact_iban(destination.iban),
        creditor_bic=compact_bic(destination.bic) if destination.bic else None,
        remittance=sepa_text(f"Refund {reference}", 140),
        status=TransferStatus.QUEUED,
        created_at=now,
        updated_at=now,
    )


def build(
    name: str, config: Mapping[str, Any], *, db: Database, clock: Clock, outbox_dir: Path
) -> BankTransferGateway:
    return BankTransferGateway(
        name,
        BankTransferConfig.model_validate(dict(config)),
        db=db,
        clock=clock,
        outbox_dir=outbox_dir,
    )


def factory(*, db: Database, clock: Clock, outbox_dir: Path) -> GatewayFactory:
    """build() with the desk's database, clock and outbox bound: a GatewayFactory."""
    made: GatewayFactory = partial(build, db=db, clock=clock, outbox_dir=outbox_dir)
    return made

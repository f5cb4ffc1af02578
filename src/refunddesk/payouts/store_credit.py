"""Store credit: a double-entry ledger per tenant, customer and currency, and its gateway.

Every transaction is two entries that sum to zero: issuing credit (a refund paid as store
credit) moves N from the tenant's ``store_credit_issued`` account to the customer's
``customer:<email>`` account; spending it at the retailer's checkout moves N from the
customer to ``store_credit_redeemed``; an admin correction moves it to or from
``store_credit_adjustments``. A customer's balance is kept in ``store_credit_balances``,
whose row is locked (SELECT ... FOR UPDATE on PostgreSQL; SQLite runs one writer at a time)
before anything is decided, so it never goes below zero, however many spends run at once.
Each transaction is unique per (tenant, idempotency key): a repeat returns the first one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from functools import lru_cache
from typing import TypeVar

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import (
    BigInteger,
    ForeignKeyConstraint,
    Index,
    String,
    Text,
    func,
    select,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from refunddesk.core.clock import Clock
from refunddesk.core.errors import IdempotencyConflict, Invalid, InvalidCurrency
from refunddesk.core.ids import new_id
from refunddesk.core.money import Money, normalize_currency
from refunddesk.db.base import Base
from refunddesk.db.uow import Database
from refunddesk.payouts.gateways.base import (
    FailureReason,
    PayoutOutcome,
    PayoutRequest,
    PayoutResult,
)

NAME = "store_credit"
ISSUED = "store_credit_issued"
REDEEMED = "store_credit_redeemed"
ADJUSTMENTS = "store_credit_adjustments"
CUSTOMER = "customer:"
MAX_AMOUNT_MINOR = 10**15
T = TypeVar("T")


class Kind(StrEnum):
    ISSUE = "issue"  # a refund paid as store credit
    SPEND = "spend"  # used at the retailer's checkout
    ADJUST = "adjust"  # an admin's correction


class InsufficientStoreCredit(Invalid):
    code = "insufficient_store_credit"
    title = "Not enough store credit"


class StoreCreditTransaction(Base):
    """One movement of store credit; its entries sum to zero."""

    __tablename__ = "store_credit_transactions"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id"], ["tenants.id"]),
        Index(
            "uq_store_credit_transactions_tenant_key", "tenant_id", "idempotency_key", unique=True
        ),
        Index("ix_store_credit_transactions_tenant_account", "tenant_id", "account", "created_at"),
    )

    tenant_id: Mapped[str] = mapped_column(String(26), primary_key=True)
    id: Mapped[str] = mapped_column(String(26), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    idempotency_key: Mapped[str] = mapped_column(String(255))
    account: Mapped[str] = mapped_column(String(340))  # the customer's account
    currency: Mapped[str] = mapped_column(String(3))
    amount_minor: Mapped[int] = mapped_column(BigInteger)  # signed: what the customer gained
    balance_after_minor: Mapped[int] = mapped_column(BigInteger)  # the customer's, after it
    reference: Mapped[str | None] = mapped_column(String(200))  # refund or order reference
    refund_id: Mapped[str | None] = mapped_column(String(64))
    memo: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime]


class StoreCreditEntry(Base):
    """One leg of a transaction on one account."""

    __tablename__ = "store_credit_entries"
    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "transaction_id"],
            ["store_credit_transactions.tenant_id", "store_credit_transactions.id"],
        ),
        Index(
            "ix_store_credit_entries_tenant_account",
            "tenant_id",
            "account",
            "currency",
            "created_at",
        ),
        Index("ix_store_credit_entries_tenant_transaction", "tenant_id", "transaction_id"),
    )

    tenant_id: Mapped[str] = mapped_column(String(26), primary_key=True)
    id: Mapped[str] = mapped_column(String(26), primary_key=True)
    transaction_id: Mapped[str] = mapped_column(String(26))
    account: Mapped[str] = mapped_column(String(340))
    currency: Mapped[str] = mapped_column(String(3))
    amount_minor: Mapped[int] = mapped_column(BigInteger)  # signed
    created_at: Mapped[datetime]


class StoreCreditBalance(Base):
    """A customer's balance in one currency: the row locked while a spend is decided."""

    __tablename__ = "store_credit_balances"
    __table_args__ = (ForeignKeyConstraint(["tenant_id"], ["tenants.id"]),)

    tenant_id: Mapped[str] = mapped_column(String(26), primary_key=True)
    account: Mapped[str] = mapped_column(String(340), primary_key=True)
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    balance_minor: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime]


# ---------------------------------------------------------------------------------------------
# The ledger


def normalize_email(email: str) -> str:
    """The email a customer's account is keyed by: checked and lower-cased."""
    normalized = _normalized_email(email)
    if isinstance(normalized, EmailNotValidError):
        raise Invalid(f"{email!r} is not an email address: {normalized}", field="email")
    return normalized


# Remembered, because dispatching a payout's events normalises the same address several
# times and email_validator costs about 30 µs a call; a rejection is remembered as its error.
@lru_cache(maxsize=16_384)
def _normalized_email(email: str) -> str | EmailNotValidError:
    try:
        checked = validate_email(email.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        return exc
    return checked.normalized.lower()


def customer_account(email: str) -> str:
    return CUSTOMER + normalize_email(email)


def _amount(amount_minor: int, currency: str, *, signed: bool = False) -> str:
    code = normalize_currency(currency)
    Money(amount_minor, code)  # an int of a currency with minor units
    if (amount_minor == 0 if signed else amount_minor <= 0) or abs(amount_minor) > MAX_AMOUNT_MINOR:
        raise Invalid(
            "the amount must be a non-zero number of minor units"
            if signed
            else "the amount must be a positive number of minor units",
            field="amount_minor",
        )
    return code


def _lock_balance(
    session: Session, *, tenant_id: str, account: str, currency: str, now: datetime
) -> StoreCreditBalance:
    """The customer's balance row, created at zero if new, and locked until commit."""
    values = {
        "tenant_id": tenant_id,
        "account": account,
        "currency": currency,
        "balance_minor": 0,
        "updated_at": now,
    }
    keys = ["tenant_id", "account", "currency"]
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            pg_insert(StoreCreditBalance).values(values).on_conflict_do_nothing(index_elements=keys)
        )
    else:
        session.execute(
            sqlite_insert(StoreCreditBalance)
            .values(values)
            .on_conflict_do_nothing(index_elements=keys)
        )
    row = session.scalar(
        select(StoreCreditBalance)
        .where(
            StoreCreditBalance.tenant_id == tenant_id,
            StoreCreditBalance.account == account,
            StoreCreditBalance.currency == currency,
        )
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    assert row is not None
    return row


def find_by_key(
    session: Session, *, tenant_id: str, idempotency_key: str
) -> StoreCreditTransaction | None:
    return session.scalar(
        select(StoreCreditTransaction).where(
            StoreCreditTransaction.tenant_id == tenant_id,
            StoreCreditTransaction.idempotency_key == idempotency_key,
        )
    )


def _post(
    session: Session,
    *,
    clock: Clock,
    tenant_id: str,
    kind: Kind,
    account: str,
    counter_account: str,
    currency: str,
    amount_minor: int,
    idempotency_key: str,
    reference: str | None,
    refund_id: str | None,
    memo: str | None,
    actor: str,
    allow_below_zero: bool = True,
) -> tuple[StoreCreditTransaction, bool]:
    """Move amount_minor (signed) onto the customer's account, once per idempotency key."""
    now = clock.now()
    balance = _lock_balance(
        session, tenant_id=tenant_id, account=account, currency=currency, now=now
    )
    existing = find_by_key(session, tenant_id=tenant_id, idempotency_key=idempotency_key)
    if existing is not None:
        same = (existing.kind, existing.account, existing.currency, existing.amount_minor) == (
            kind,
            account,
            currency,
            amount_minor,
        )
        if not same:
            raise IdempotencyConflict(
                "this Idempotency-Key was used for another store credit transaction",
                field="Idempotency-Key",
            )
        return existing, False
    after = balance.balance_minor + amount_minor
    if after < 0 and not allow_below_zero:
        have = Money(balance.balance_minor, currency)
        raise InsufficientStoreCredit(
            f"the customer has {have} of store credit, less than {Money(-amount_minor, currency)}",
            field="amount_minor",
            balance_minor=balance.balance_minor,
            currency=currency,
        )
    transaction = StoreCreditTransaction(
        tenant_id=tenant_id,
        id=new_id(),
        kind=kind,
        idempotency_key=idempotency_key,
        account=account,
        currency=currency,
        amount_minor=amount_minor,
        balance_after_minor=after,
        reference=reference,
        refund_id=refund_id,
        memo=memo,
        actor=actor,
        created_at=now,
    )
    legs = [(account, amount_minor), (counter_account, -amount_minor)]
    assert sum(amount for _, amount in legs) == 0  # double entry
    session.add(transaction)
    session.flush()  # the transaction row before its entries (no ORM relationship orders them)
    session.add_all(
        StoreCreditEntry(
            tenant_id=tenant_id,
            id=new_id(),
            transaction_id=transaction.id,
            account=leg_account,
            currency=currency,
            amount_minor=amount,
            created_at=now,
        )
        for leg_account, amount in legs
    )
    balance.balance_minor = after
    balance.updated_at = now
    return transaction, True


def issue(
    session: Session,
    *,
    clock: Clock,
    tenant_id: str,
    email: str,
    amount_minor: int,
    currency: str,
    idempotency_key: str,
    reference: str | None = None,
    refund_id: str | None = None,
    actor: str,
) -> tuple[StoreCreditTransaction, bool]:
    """Credit a customer (a refund paid as store credit); (transaction, created)."""
    return _post(
        session,
        clock=clock,
        tenant_id=tenant_id,
        kind=Kind.ISSUE,
        account=customer_account(email),
        counter_account=ISSUED,
        currency=_amount(amount_minor, currency),
        amount_minor=amount_minor,
        idempotency_key=idempotency_key,
        reference=reference,
        refund_id=refund_id,
        memo=None,
        actor=actor,
    )


def spend(
    session: Session,
    *,
    clock: Clock,
    tenant_id: str,
    email: str,
    amount_minor: int,
    currency: str,
    reference: str,
    idempotency_key: str,
    actor: str,
) -> tuple[StoreCreditTransaction, bool]:
    """Use a customer's credit at checkout; InsufficientStoreCredit if the balance is short."""
    return _post(
        session,
        clock=clock,
        tenant_id=tenant_id,
        kind=Kind.SPEND,
        account=customer_account(email),
        counter_account=REDEEMED,
        currency=_amount(amount_minor, currency),
        amount_minor=-amount_minor,
        idempotency_key=idempotency_key,
        reference=reference,
        refund_id=None,
        memo=None,
        actor=actor,
        allow_below_zero=False,
    )


def adjust(
    session: Session,
    *,
    clock: Clock,
    tenant_id: str,
    email: str,
    amount_minor: int,
    currency: str,
    memo: str,
    idempotency_key: str,
    actor: str,
) -> tuple[StoreCreditTransaction, bool]:
    """An admin's correction, up (positive) or down (negative, never below zero)."""
    if not memo.strip():
        raise Invalid("say why the balance is corrected", field="memo")
    return _post(
        session,
        clock=clock,
        tenant_id=tenant_id,
        kind=Kind.ADJUST,
        account=customer_account(email),
        counter_account=ADJUSTMENTS,
        currency=_amount(amount_minor, currency, signed=True),
        amount_minor=amount_minor,
        idempotency_key=idempotency_key,
        reference=None,
        refund_id=None,
        memo=memo.strip(),
        actor=actor,
        allow_below_zero=False,
    )


def balance(
    session: Session, *, tenant_id: str, email: str, currency: str | None = None
) -> dict[str, int]:
    """A customer's balance per currency (only currencies they ever had credit in)."""
    query = select(StoreCreditBalance.currency, StoreCreditBalance.balance_minor).where(
        StoreCreditBalance.tenant_id == tenant_id,
        StoreCreditBalance.account == customer_account(email),
    )
    if currency is not None:
        query = query.where(StoreCreditBalance.currency == normalize_currency(currency))
    return {
        code: amount
        for code, amount in session.execute(query.order_by(StoreCreditBalance.currency))
    }


def history(
    session: Session,
    *,
    tenant_id: str,
    email: str,
    currency: str | None = None,
    limit: int = 50,
) -> list[StoreCreditTransaction]:
    """A customer's transactions, newest first."""
    query = select(StoreCreditTransaction).where(
        StoreCreditTransaction.tenant_id == tenant_id,
        StoreCreditTransaction.account == customer_account(email),
    )
    if currency is not None:
        query = query.where(StoreCreditTransaction.currency == normalize_currency(currency))
    query = query.order_by(
        StoreCreditTransaction.created_at.desc(), StoreCreditTransaction.id.desc()
    ).limit(limit)
    return list(session.scalars(query))


def entries_of(session: Session, *, tenant_id: str, transaction_id: str) -> list[StoreCreditEntry]:
    return list(
        session.scalars(
            select(StoreCreditEntry)
            .where(
                StoreCreditEntry.tenant_id == tenant_id,
                StoreCreditEntry.transaction_id == transaction_id,
            )
            .order_by(StoreCreditEntry.id)
        )
    )


def unbalanced(session: Session, *, tenant_id: str | None = None) -> list[tuple[str, str, int]]:
    """(tenant, transaction, sum) of every transaction whose entries do not sum to zero."""
    query = select(
        StoreCreditEntry.tenant_id,
        StoreCreditEntry.transaction_id,
        func.sum(StoreCreditEntry.amount_minor),
    ).group_by(
        StoreCreditEntry.tenant_id, StoreCreditEntry.transaction_id, StoreCreditEntry.currency
    )
    if tenant_id is not None:
        query = query.where(StoreCreditEntry.tenant_id == tenant_id)
    return [
        (t, x, int(s))
        for t, x, s in session.execute(query.having(func.sum(StoreCreditEntry.amount_minor) != 0))
    ]


def in_own_transaction(db: Database, work: Callable[[Session], T], *, attempts: int = 3) -> T:
    """Run work in a write transaction, again if it lost a race on a unique key."""
    for attempt in range(attempts):
        try:
            with db.write() as session:
                return work(session)
        except IntegrityError:
            # Two first-time writers of the same key or balance row: the loser runs again
            # and finds the winner's row.
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


# ---------------------------------------------------------------------------------------------
# The gateway


@dataclass
class StoreCreditGateway:
    """Refunds paid as store credit: instant, and exactly once per idempotency key."""

    db: Database
    clock: Clock
    name: str = NAME

    def refund(self, request: PayoutRequest) -> PayoutResult:
        if not request.customer_email:
            return PayoutResult.failed(FailureReason.INVALID_ACCOUNT, "no customer email")
        try:
            transaction, _ = in_own_transaction(
                self.db,
                lambda session: issue(
                    session,
                    clock=self.clock,
                    tenant_id=request.tenant_id,
                    email=request.customer_email or "",
                    amount_minor=request.amount_minor,
                    currency=request.currency,
                    idempotency_key=request.idempotency_key,
                    reference=request.reference,
                    refund_id=request.refund_id,
                    actor=f"gateway:{self.name}",
                ),
            )
        except InvalidCurrency as exc:
            return PayoutResult.failed(FailureReason.CURRENCY_NOT_SUPPORTED, exc.detail)
        except IdempotencyConflict as exc:
            return PayoutResult.failed(FailureReason.DECLINED, exc.detail)
        except Invalid as exc:
            reason = (
                FailureReason.INVALID_ACCOUNT if exc.field == "email" else FailureReason.DECLINED
            )
            return PayoutResult.failed(reason, exc.detail)
        return PayoutResult(PayoutOutcome.SUCCEEDED, gateway_reference=transaction.id)

    def lookup(self, request: PayoutRequest, gateway_reference: str | None) -> PayoutResult | None:
        with self.db.read() as session:
            found = find_by_key(
                session, tenant_id=request.tenant_id, idempotency_key=request.idempotency_key
            )
            if found is None or found.kind != Kind.ISSUE:
                return None
            return PayoutResult(PayoutOutcome.SUCCEEDED, gateway_reference=found.id)


def build(*, db: Database, clock: Clock) -> StoreCreditGateway:
    """The desk-wide store credit gateway, named "store_credit"."""
    return StoreCreditGateway(db=db, clock=clock)

"""HTTP routes for customers' store credit: /v1/store-credit/{email}."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, Response, status
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from refunddesk.api.deps import ContainerDep, PrincipalDep, ReadSession
from refunddesk.auth.domain import Permission
from refunddesk.bootstrap import Container
from refunddesk.payouts import store_credit as ledger

router = APIRouter(prefix="/v1/store-credit", tags=["store credit"])
Email = Annotated[str, Path(min_length=3, max_length=320, description="the customer's email")]
IdempotencyKey = Annotated[
    str,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        description="same key and body returns the same spend; same key, other body is 409",
    ),
]


class StoreCreditBalancePublic(BaseModel):
    currency: str
    balance_minor: int


class StoreCreditTransactionPublic(BaseModel):
    id: str
    kind: ledger.Kind
    amount_minor: int = Field(description="signed: what the customer's balance gained")
    currency: str
    balance_after_minor: int
    reference: str | None
    memo: str | None
    created_at: datetime


class StoreCreditAccountPublic(BaseModel):
    email: str
    balances: list[StoreCreditBalancePublic]
    transactions: list[StoreCreditTransactionPublic] = Field(description="newest first")


class StoreCreditSpend(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount_minor: int = Field(gt=0, le=ledger.MAX_AMOUNT_MINOR)
    currency: str = Field(pattern=r"^[A-Za-z]{3}$")
    reference: str = Field(min_length=1, max_length=200, description="the order at checkout")


def _public(tx: ledger.StoreCreditTransaction) -> StoreCreditTransactionPublic:
    return StoreCreditTransactionPublic(
        id=tx.id,
        kind=ledger.Kind(tx.kind),
        amount_minor=tx.amount_minor,
        currency=tx.currency,
        balance_after_minor=tx.balance_after_minor,
        reference=tx.reference,
        memo=tx.memo,
        created_at=tx.created_at,
    )


@router.get("/{email}", operation_id="get_store_credit")
def get_store_credit(
    email: Email,
    principal: PrincipalDep,
    session: ReadSession,
    currency: Annotated[str | None, Query(pattern=r"^[A-Za-z]{3}$")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> StoreCreditAccountPublic:
    """A customer's store credit balance per currency and their latest transactions."""
    principal.require(Permission.READ)
    tenant_id = principal.require_tenant()
    normalized = ledger.normalize_email(email)
    balances = ledger.balance(session, tenant_id=tenant_id, email=normalized, currency=currency)
    transactions = ledger.history(
        session, tenant_id=tenant_id, email=normalized, currency=currency, limit=limit
    )
    return StoreCreditAccountPublic(
        email=normalized,
        balances=[
            StoreCreditBalancePublic(currency=c, balance_minor=b) for c, b in balances.items()
        ],
        transactions=[_public(tx) for tx in transactions],
    )


@router.post(
    "/{email}/spend",
    status_code=status.HTTP_201_CREATED,
    operation_id="spend_store_credit",
    responses={200: {"description": "idempotent replay: the spend made earlier"}},
)
async def spend_store_credit(
    email: Email,
    body: StoreCreditSpend,
    principal: PrincipalDep,
    container: ContainerDep,
    response: Response,
    idempotency_key: IdempotencyKey,
) -> StoreCreditTransactionPublic:
    """Use a customer's store credit at checkout; 422 if the balance is short."""
    principal.require(Permission.WRITE_ORDERS)
    tenant_id = principal.require_tenant()
    tx, created = await run_in_threadpool(
        _spend, container, tenant_id, email, body, idempotency_key, principal.actor
    )
    if not created:
        response.status_code = status.HTTP_200_OK
    return tx


def _spend(
    container: Container,
    tenant_id: str,
    email: str,
    body: StoreCreditSpend,
    key: str,
    actor: str,
) -> tuple[StoreCreditTransactionPublic, bool]:
    def work(session: Session) -> tuple[StoreCreditTransactionPublic, bool]:
        tx, created = ledger.spend(
            session,
            clock=container.clock,
            tenant_id=tenant_id,
            email=email,
            amount_minor=body.amount_minor,
            currency=body.currency,
            reference=body.reference,
            idempotency_key=key,
            actor=actor,
        )
        return _public(tx), created

    return ledger.in_own_transaction(container.db, work)

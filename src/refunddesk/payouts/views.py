"""HTTP routes: gateway webhooks in, tenants' gateway accounts, payouts that need a person."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from refunddesk.api.deps import ContainerDep, PrincipalDep, ReadSession
from refunddesk.auth.domain import Permission
from refunddesk.core.errors import Conflict
from refunddesk.core.schemas import StrictModel
from refunddesk.payouts import accounts, consent, queries, webhooks
from refunddesk.payouts.queries import GatewayAccountPublic, PayoutPublic
from refunddesk.refunds.domain import RefundStatus
from refunddesk.refunds.service import get_refund

router = APIRouter(tags=["payouts"])
Provider = Annotated[str, Path(min_length=1, max_length=32, pattern=r"^[a-z_]+$")]
AccountName = Annotated[str, Path(min_length=1, max_length=32, pattern=r"^[a-z0-9_-]+$")]


class GatewayAccountIn(StrictModel):
    provider: Annotated[str, Field(min_length=1, max_length=32)]
    config: dict[str, Any]
    methods: Annotated[list[str], Field(max_length=4)] = []


@router.post(
    "/v1/gateways/{provider}/webhooks",
    operation_id="receive_gateway_webhook",
    responses={200: {"description": "stored; the body is what the provider expects"}},
)
async def receive_webhook(
    provider: Provider, request: Request, container: ContainerDep
) -> Response:
    """A gateway's notification: verified, deduplicated, stored raw, applied by the worker.

    Authenticated by the provider's signature, not by an API key.
    """
    body = await request.body()
    received = await run_in_threadpool(
        webhooks.receive,
        db=container.db,
        clock=container.clock,
        gateways=container.gateways,
        provider=provider,
        headers=dict(request.headers),
        body=body,
        max_attempts=container.intake.job_max_attempts,
    )
    return Response(received.body, media_type=received.media_type)


@router.get("/v1/payouts", operation_id="list_payouts_needing_attention")
def list_attention(
    principal: PrincipalDep, session: ReadSession, container: ContainerDep
) -> list[PayoutPublic]:
    """Failed payouts waiting for a fallback or retry, and payouts stuck without an answer."""
    principal.require(Permission.READ)
    return queries.needing_attention(
        session,
        tenant_id=principal.require_tenant(),
        now=container.clock.now(),
        stuck_after=timedelta(seconds=container.settings.payout_stuck_after_seconds),
    )


@router.get("/v1/refunds/{refund_id}/payouts", operation_id="list_refund_payouts")
def list_refund_payouts(
    refund_id: Annotated[str, Path(min_length=1, max_length=64)],
    principal: PrincipalDep,
    session: ReadSession,
    container: ContainerDep,
) -> list[PayoutPublic]:
    """Every payout attempt of one refund, oldest first."""
    principal.require(Permission.READ)
    return queries.payouts_of_refund(
        session,
        tenant_id=principal.require_tenant(),
        refund_id=refund_id,
        now=container.clock.now(),
        stuck_after=timedelta(seconds=container.settings.payout_stuck_after_seconds),
    )


class ChoiceLink(BaseModel):
    url: str
    expires_at: datetime


@router.post("/v1/refunds/{refund_id}/payout-choice-link", operation_id="create_payout_choice_link")
def create_payout_choice_link(
    refund_id: Annotated[str, Path(min_length=1, max_length=64)],
    principal: PrincipalDep,
    session: ReadSession,
    container: ContainerDep,
) -> ChoiceLink:
    """A signed link for the customer to choose store credit or a bank transfer instead.

    Only for a failed refund; the link works while the refund is failed, for 14 days.
    """
    principal.require(Permission.RETRY_PAYOUTS)
    tenant_id = principal.require_tenant()
    refund = get_refund(session, tenant_id=tenant_id, refund_id=refund_id)
    if refund.state is not RefundStatus.FAILED:
        raise Conflict(f"only a failed refund's customer can choose; this one is {refund.status}")
    token = consent.make_token(container.secret_key, tenant_id=tenant_id, refund_id=refund.id)
    base = container.settings.public_url.rstrip("/")
    return ChoiceLink(
        url=f"{base}/refund-choice/{token}", expires_at=consent.expires_at(container.clock.now())
    )


@router.get("/v1/gateway-accounts", operation_id="list_gateway_accounts")
def list_gateway_accounts(
    principal: PrincipalDep, session: ReadSession
) -> list[GatewayAccountPublic]:
    """The tenant's gateway accounts, secrets masked."""
    principal.require(Permission.MANAGE_GATEWAYS)
    return [
        queries.account_public(a)
        for a in accounts.list_accounts(session, principal.require_tenant())
    ]


@router.put("/v1/gateway-accounts/{name}", operation_id="set_gateway_account")
def set_gateway_account(
    name: AccountName, body: GatewayAccountIn, principal: PrincipalDep, container: ContainerDep
) -> GatewayAccountPublic:
    """Create or replace an account; orders name it in payment.gateway."""
    principal.require(Permission.MANAGE_GATEWAYS)
    config = accounts.validate_config(body.provider, body.config, container.gateway_configs)
    with container.db.write() as session:
        account = accounts.set_account(
            session,
            tenant_id=principal.require_tenant(),
            name=name,
            provider=body.provider,
            config=config,
            methods=body.methods,
            now=container.clock.now(),
        )
        return queries.account_public(account)


@router.delete(
    "/v1/gateway-accounts/{name}",
    operation_id="delete_gateway_account",
    status_code=status.HTTP_204_NO_CONTENT,
)
def delete_gateway_account(
    name: AccountName, principal: PrincipalDep, container: ContainerDep
) -> None:
    principal.require(Permission.MANAGE_GATEWAYS)
    with container.db.write() as session:
        accounts.remove_account(session, tenant_id=principal.require_tenant(), name=name)

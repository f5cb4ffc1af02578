"""Return authorizations (RMA) in the database, moving their refund as goods come back."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from refunddesk.core.ids import new_id
from refunddesk.refunds.orm import Refund
from refunddesk.returns.domain import ReturnStatus
from refunddesk.returns.orm import ReturnLineRecord, ReturnRecord

RETURN_AUTHORIZED = "return.authorized"


def authorize_for_refund(
    session: Session,
    *,
    refund: Refund,
    lines: list[tuple[str, int, int]],
    expires_at: datetime,
    now: datetime,
    actor: str,
) -> ReturnRecord:
    """Open the return of a refund that waits for its goods.

    lines: (sku, quantity, unit refund amount in minor units) per line to send back.
    Call in the transaction that moves the refund to awaiting_return.
    """
    record = ReturnRecord(
        tenant_id=refund.tenant_id,
        id=new_id(),
        refund_id=refund.id,
        status=str(ReturnStatus.AUTHORIZED),
        currency=refund.currency,
        carrier=None,
        tracking_number=None,
        expires_at=expires_at,
        received_at=None,
        inspected_at=None,
        settlement=None,
        created_at=now,
        updated_at=now,
        lines=[
            ReturnLineRecord(
                tenant_id=refund.tenant_id,
                sku=sku,
                quantity=quantity,
                unit_refund_minor=unit,
                received_quantity=None,
                condition=None,
                inspection=None,
            )
            for sku, quantity, unit in lines
        ],
    )
    for line in record.lines:
        line.return_id = record.id
    session.add(record)
    refund.record(
        RETURN_AUTHORIZED,
        actor=actor,
        at=now,
        data={
            "return_id": record.id,
            "expires_at": expires_at.isoformat(),
            "lines": [{"sku": s, "quantity": q} for s, q, _ in lines],
        },
    )
    return record

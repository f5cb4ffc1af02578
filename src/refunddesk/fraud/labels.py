"""Outcome labels for refunds (fraud or legit) from agents and chargebacks; they feed training.

A refund may be labelled more than once (an agent changes their mind, a chargeback arrives
later): every label is kept, the latest is the refund's label.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Literal

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from refunddesk.core.errors import Invalid, NotFound
from refunddesk.core.ids import new_id
from refunddesk.fraud.orm import FraudLabel
from refunddesk.fraud.schemas import FraudLabelPublic
from refunddesk.orders.orm import Order
from refunddesk.refunds.domain import EventType, RefundStatus
from refunddesk.refunds.orm import Refund

LabelValue = Literal["fraud", "legit"]
Source = Literal["agent", "chargeback"]
LABELS: frozenset[str] = frozenset({"fraud", "legit"})
SOURCES: frozenset[str] = frozenset({"agent", "chargeback"})
# Dispute reasons that say the payment itself was fraud (Stripe `fraudulent`, PayPal
# `UNAUTHORISED`, card-scheme "Other Fraud" codes), as the gateways word them.
FRAUD_DISPUTE = re.compile(r"fraud|unauthori[sz]ed|stolen|counterfeit|card.?absent", re.I)


def record_label(
    session: Session,
    *,
    tenant_id: str,
    refund_id: str,
    label: str,
    actor: str,
    source: str,
    at: datetime,
    note: str | None = None,
) -> FraudLabel:
    """Store a label and put it on the refund's (internal) history."""
    if label not in LABELS:
        raise Invalid(f"label must be fraud or legit, not {label!r}", field="label")
    if source not in SOURCES:
        raise Invalid(f"source must be agent or chargeback, not {source!r}", field="source")
    refund = session.scalars(
        select(Refund).where(Refund.tenant_id == tenant_id, Refund.id == refund_id)
    ).first()
    if refund is None:
        raise NotFound(f"no refund {refund_id}")
    row = FraudLabel(
        tenant_id=tenant_id,
        id=new_id(),
        refund_id=refund_id,
        label=label,
        source=source,
        actor=actor,
        note=note,
        at=at,
    )
    session.add(row)
    refund.record(
        EventType.FRAUD_LABELLED,
        actor=actor,
        at=at,
        data={"label": label, "source": source, **({"note": note} if note else {})},
    )
    session.flush()
    return row


def to_public(row: FraudLabel) -> FraudLabelPublic:
    return FraudLabelPublic(
        id=row.id,
        refund_id=row.refund_id,
        label=row.label,
        source=row.source,
        actor=row.actor,
        note=row.note,
        at=row.at,
    )


def labels_of(session: Session, *, tenant_id: str, refund_id: str) -> list[FraudLabel]:
    """Every label of one refund, oldest first."""
    return list(
        session.scalars(
            select(FraudLabel)
            .where(FraudLabel.tenant_id == tenant_id, FraudLabel.refund_id == refund_id)
            .order_by(FraudLabel.at, FraudLabel.id)
        )
    )


def latest_labels(
    session: Session, *, tenant_id: str, refund_ids: Sequence[str] | None = None
) -> dict[str, str]:
    """refund id -> its latest label (all labelled refunds of the tenant when ids is None)."""
    newest = select(
        FraudLabel.refund_id.label("refund_id"),
        FraudLabel.label.label("label"),
        func.row_number()
        .over(
            partition_by=FraudLabel.refund_id,
            order_by=(FraudLabel.at.desc(), FraudLabel.id.desc()),
        )
        .label("n"),
    ).where(FraudLabel.tenant_id == tenant_id)
    if refund_ids is not None:
        newest = newest.where(FraudLabel.refund_id.in_(sorted(set(refund_ids))))
    sub = newest.subquery()
    rows = session.execute(select(sub.c.refund_id, sub.c.label).where(sub.c.n == 1))
    return {refund_id: label for refund_id, label in rows}


def is_fraud_dispute(detail: str | None) -> bool:
    """Whether a dispute's reason (as the gateway worded it) says the payment was fraud."""
    return bool(detail) and FRAUD_DISPUTE.search(detail or "") is not None


def label_disputed(
    session: Session,
    *,
    tenant_id: str,
    payment_references: Iterable[str],
    detail: str | None,
    dispute_id: str,
    at: datetime,
) -> int:
    """A chargeback for fraud labels the refunds of the disputed payment fraud; how many."""
    if not is_fraud_dispute(detail):
        return 0
    references = sorted(set(payment_references))
    if not references:
        return 0
    refund_ids = session.scalars(
        select(Refund.id)
        .join(Order, and_(Order.tenant_id == Refund.tenant_id, Order.id == Refund.order_id))
        .where(
            Refund.tenant_id == tenant_id,
            Order.payment_reference.in_(references),
            Refund.status != str(RefundStatus.CANCELED),
        )
    ).all()
    already = latest_labels(session, tenant_id=tenant_id, refund_ids=refund_ids)
    count = 0
    for refund_id in refund_ids:
        if already.get(refund_id) == "fraud":
            continue  # a redelivered or updated dispute labels once
        record_label(
            session,
            tenant_id=tenant_id,
            refund_id=refund_id,
            label="fraud",
            actor=f"chargeback:{dispute_id}",
            source="chargeback",
            at=at,
            note=(detail or "")[:2000] or None,
        )
        count += 1
    return count

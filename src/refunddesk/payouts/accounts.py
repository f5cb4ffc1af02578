"""Tenants' gateway accounts, and which gateway pays a given refund out.

An order names its gateway (`payment.gateway`); that name is looked up first among the
tenant's accounts, then among the desk-wide gateways (the sandbox). Store credit always goes
to the desk's internal ledger. A fallback with no gateway of its own (say, a bank transfer an
agent picked after a card failed) goes to the tenant's account that lists the method.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from refunddesk.core.errors import Invalid, NotFound
from refunddesk.payouts.gateways.base import BankAccount, Gateway, GatewayRegistry, PayoutRequest
from refunddesk.payouts.orm import GatewayAccount, Payout

STORE_CREDIT = "store_credit"
METHODS = ("card", "wallet", "bank_transfer", "store_credit")
_SECRET_WORDS = ("secret", "key", "password", "token")


@dataclass(frozen=True, slots=True)
class Route:
    """The gateway that pays one refund: a tenant account, or a desk-wide gateway."""

    name: str
    provider: str | None = None  # None: desk-wide (sandbox, store credit)
    config: Mapping[str, Any] | None = None
    version: str = ""


def route(
    accounts: Iterable[GatewayAccount], *, gateway: str, method: str, desk_wide: Iterable[str]
) -> Route | None:
    """Which gateway pays out a refund by `method` for an order that named `gateway`."""
    if method == STORE_CREDIT:
        return Route(STORE_CREDIT)
    mine = {a.name: a for a in accounts}
    account = mine.get(gateway)
    if account is None and gateway in set(desk_wide):
        return Route(gateway)
    if account is None:
        account = next((a for a in mine.values() if method in (a.methods or [])), None)
    if account is None:
        return None
    return Route(account.name, account.provider, account.config, account.updated_at.isoformat())


def accounts_of(session: Session, tenant_ids: Iterable[str]) -> dict[str, list[GatewayAccount]]:
    """Every account of these tenants, by tenant; one query for a whole payout batch."""
    ids = sorted(set(tenant_ids))
    by_tenant: dict[str, list[GatewayAccount]] = {t: [] for t in ids}
    if ids:
        for account in session.scalars(
            select(GatewayAccount).where(GatewayAccount.tenant_id.in_(ids))
        ):
            by_tenant[account.tenant_id].append(account)
    return by_tenant


def redacted(config: Mapping[str, Any]) -> dict[str, Any]:
    """The config with every secret-looking value masked but for its last 4 characters."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, str) and any(w in key.lower() for w in _SECRET_WORDS) and value:
            out[key] = "****" + value[-4:] if len(value) > 8 else "****"
        else:
            out[key] = value
    return out


def validate_config(
    provider: str, config: Mapping[str, Any], models: Mapping[str, type[BaseModel]]
) -> dict[str, Any]:
    """The config checked by the provider's own model; errors name the field at fault."""
    model = models.get(provider)
    if model is None:
        raise Invalid(
            f"unknown provider {provider!r}; one of: {', '.join(sorted(models))}",
            field="provider",
        )
    try:
        parsed = model.model_validate(dict(config))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise Invalid(
            f"{provider} config: {where}: {first['msg']}", field=f"config.{where}"
        ) from exc
    # Stored as plain JSON: secrets revealed, defaults filled in.
    return {k: _reveal(getattr(parsed, k)) for k in type(parsed).model_fields}


def _reveal(value: Any) -> Any:
    secret = getattr(value, "get_secret_value", None)
    if callable(secret):
        return secret()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def set_account(
    session: Session,
    *,
    tenant_id: str,
    name: str,
    provider: str,
    config: dict[str, Any],
    methods: list[str],
    now: datetime,
) -> GatewayAccount:
    """Create or replace a tenant's account; later payouts use the new config."""
    if name == STORE_CREDIT:
        raise Invalid("store_credit is the desk's own ledger, not an account", field="name")
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise Invalid(f"unknown payment methods {unknown}; one of {list(METHODS)}", field="methods")
    account = session.get(GatewayAccount, (tenant_id, name))
    if account is None:
        account = GatewayAccount(tenant_id=tenant_id, name=name, created_at=now)
        session.add(account)
    account.provider = provider
    account.config = config
    account.methods = methods
    account.updated_at = now
    return account


def list_accounts(session: Session, tenant_id: str) -> list[GatewayAccount]:
    return list(
        session.scalars(
            select(GatewayAccount)
            .where(GatewayAccount.tenant_id == tenant_id)
            .order_by(GatewayAccount.name)
        )
    )


def remove_account(session: Session, *, tenant_id: str, name: str) -> None:
    account = session.get(GatewayAccount, (tenant_id, name))
    if account is None:
        raise NotFound(f"no gateway account {name!r}")
    session.delete(account)


def accounts_for_provider(session: Session, provider: str) -> list[GatewayAccount]:
    """Every tenant's accounts at one provider: the candidates a webhook may come from."""
    return list(
        session.scalars(
            select(GatewayAccount)
            .where(GatewayAccount.provider == provider)
            .order_by(GatewayAccount.tenant_id, GatewayAccount.name)
        )
    )


def gateway_for(
    gateways: GatewayRegistry,
    accounts: Iterable[GatewayAccount],
    *,
    tenant_id: str,
    gateway: str,
    method: str,
) -> Gateway | None:
    """The adapter that pays a tenant's payout, or None if nothing is configured for it."""
    found = route(accounts, gateway=gateway, method=method, desk_wide=gateways.names())
    if found is None:
        return None
    if found.provider is None:
        return gateways.desk_wide(found.name)
    assert found.config is not None
    return gateways.account_gateway(
        tenant_id, found.name, found.provider, found.config, found.version
    )


def request_for(
    payout: Payout,
    *,
    reference: str,
    payment_reference: str,
    customer_email: str | None,
    customer_name: str | None,
) -> PayoutRequest:
    """The gateway request for a recorded attempt; the same every time it is sent."""
    bank = (payout.destination or {}).get("bank_account")
    return PayoutRequest(
        idempotency_key=payout.idempotency_key,
        tenant_id=payout.tenant_id,
        refund_id=payout.refund_id,
        reference=reference,
        amount_minor=payout.amount_minor,
        currency=payout.currency,
        method=payout.method,
        payment_reference=payment_reference,
        customer_email=customer_email,
        customer_name=customer_name,
        bank_account=BankAccount(**bank) if bank else None,
    )

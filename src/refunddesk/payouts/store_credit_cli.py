"""`refunddesk store-credit ...`: customers' store credit balances and corrections."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from refunddesk.core.errors import DomainError, NotFound

app = typer.Typer(help="Customers' store credit.", no_args_is_help=True)
console = Console()
err = Console(stderr=True)
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
TenantOpt = Annotated[str, typer.Option(help="Tenant id.")]


def _container() -> Any:
    from refunddesk.cli import _container as make

    return make()


def _fail(exc: DomainError, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps({"error": exc.code, "detail": exc.detail, "field": exc.field}))
    else:
        err.print(f"[red]error:[/red] {exc.detail}")
    raise typer.Exit(2)


def _check_tenant(session: Any, tenant: str) -> None:
    from refunddesk.tenants.orm import Tenant

    if session.get(Tenant, tenant) is None:
        raise NotFound(f"no tenant {tenant}", field="tenant")


@app.command("balance")
def balance(
    email: Annotated[str, typer.Argument(help="The customer's email.")],
    tenant: TenantOpt,
    currency: Annotated[str | None, typer.Option(help="Only this currency.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500, help="Transactions to show.")] = 20,
    as_json: JsonOpt = False,
) -> None:
    """A customer's balance per currency and latest transactions."""
    from refunddesk.core.money import Money
    from refunddesk.payouts import store_credit as ledger

    container = _container()
    try:
        with container.db.read() as session:
            _check_tenant(session, tenant)
            normalized = ledger.normalize_email(email)
            balances = ledger.balance(
                session, tenant_id=tenant, email=normalized, currency=currency
            )
            history = ledger.history(
                session, tenant_id=tenant, email=normalized, currency=currency, limit=limit
            )
    except DomainError as exc:
        container.close()
        _fail(exc, as_json)
        return
    container.close()
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "email": normalized,
                    "balances": [{"currency": c, "balance_minor": b} for c, b in balances.items()],
                    "transactions": [
                        {
                            "id": t.id,
                            "kind": t.kind,
                            "amount_minor": t.amount_minor,
                            "currency": t.currency,
                            "balance_after_minor": t.balance_after_minor,
                            "reference": t.reference,
                            "memo": t.memo,
                            "created_at": t.created_at.isoformat(),
                        }
                        for t in history
                    ],
                }
            )
        )
        return
    if not balances:
        console.print(f"{normalized} has no store credit")
        return
    for code, amount in balances.items():
        console.print(f"{normalized}: [bold]{Money(amount, code)}[/bold]")
    table = Table("when", "kind", "amount", "balance after", "reference")
    for t in history:
        table.add_row(
            t.created_at.isoformat()[:19],
            t.kind,
            str(Money(t.amount_minor, t.currency)),
            str(Money(t.balance_after_minor, t.currency)),
            t.reference or t.memo or "",
        )
    console.print(table)


@app.command("adjust")
def adjust(
    email: Annotated[str, typer.Argument(help="The customer's email.")],
    tenant: TenantOpt,
    amount_minor: Annotated[int, typer.Option("--amount-minor", help="Signed, in minor units.")],
    currency: Annotated[str, typer.Option(help="ISO 4217 code.")],
    memo: Annotated[str, typer.Option(help="Why the balance is corrected.")],
    key: Annotated[
        str | None, typer.Option(help="Idempotency key; running again with it changes nothing.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Correct a customer's balance (double-entry against store_credit_adjustments)."""
    from refunddesk.core.ids import new_id
    from refunddesk.core.money import Money
    from refunddesk.payouts import store_credit as ledger

    container = _container()
    try:
        with container.db.read() as session:
            _check_tenant(session, tenant)
        tx, created = ledger.in_own_transaction(
            container.db,
            lambda session: ledger.adjust(
                session,
                clock=container.clock,
                tenant_id=tenant,
                email=email,
                amount_minor=amount_minor,
                currency=currency,
                memo=memo,
                idempotency_key=key or f"adjust:{new_id()}",
                actor="cli:store-credit",
            ),
        )
    except DomainError as exc:
        container.close()
        _fail(exc, as_json)
        return
    container.close()
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "id": tx.id,
                    "created": created,
                    "amount_minor": tx.amount_minor,
                    "currency": tx.currency,
                    "balance_after_minor": tx.balance_after_minor,
                }
            )
        )
    else:
        console.print(
            f"{'adjusted' if created else 'already adjusted'}: "
            f"{Money(tx.amount_minor, tx.currency)}, balance after "
            f"{Money(tx.balance_after_minor, tx.currency)}"
        )

"""`refunddesk payouts ...` and `refunddesk gateways ...`: payouts that need a person, and
tenants' gateway accounts, from the command line."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from refunddesk.core.errors import DomainError
from refunddesk.payouts import bank_cli

app = typer.Typer(help="Failed and stuck payouts, retries, gateway sync.", no_args_is_help=True)
gateways_app = typer.Typer(help="Tenants' payment gateway accounts.", no_args_is_help=True)
app.add_typer(bank_cli.app, name="bank")
console = Console()
err = Console(stderr=True)
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
TenantOpt = Annotated[str, typer.Option(help="Tenant id.")]
ACTOR = "cli:operator"


def _container() -> Any:
    from refunddesk.cli import _container as make

    return make()


def _fail(exc: DomainError, as_json: bool) -> None:
    from refunddesk.cli import _fail as fail

    fail(exc, as_json)


@app.command("list")
def list_attention(tenant: TenantOpt, as_json: JsonOpt = False) -> None:
    """Failed payouts waiting for a retry or fallback, and payouts stuck without an answer."""
    from refunddesk.payouts.queries import needing_attention

    container = _container()
    with container.db.read() as session:
        items = needing_attention(
            session,
            tenant_id=tenant,
            now=container.clock.now(),
            stuck_after=timedelta(seconds=container.settings.payout_stuck_after_seconds),
        )
    if as_json:
        typer.echo(json.dumps([i.model_dump(mode="json") for i in items]))
        return
    if not items:
        console.print("No payout needs attention.")
        return
    table = Table("refund", "attempt", "gateway", "status", "reason", "next action")
    for i in items:
        table.add_row(
            i.refund_reference,
            str(i.attempt),
            i.gateway,
            i.status + (" (stuck)" if i.stuck else ""),
            i.failure_reason or "",
            i.next_action or "",
        )
    console.print(table)


@app.command("retry")
def retry(
    refund_id: Annotated[str, typer.Argument(help="The failed refund's id.")],
    tenant: TenantOpt,
    method: Annotated[
        str, typer.Option(help="original, bank_transfer or store_credit")
    ] = "original",
    iban: Annotated[str | None, typer.Option(help="bank_transfer: the customer's IBAN")] = None,
    holder: Annotated[str | None, typer.Option(help="bank_transfer: account holder")] = None,
    bic: Annotated[str | None, typer.Option(help="bank_transfer: BIC (optional)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Pay a failed refund again: the original way, or by bank transfer or store credit."""
    from pydantic import ValidationError

    from refunddesk.core.errors import Invalid
    from refunddesk.refunds import service
    from refunddesk.refunds.schemas import PayoutFallback

    container = _container()
    try:
        try:
            bank = {"iban": iban, "holder": holder, "bic": bic} if iban or holder else None
            fallback = PayoutFallback.model_validate({"method": method, "bank_account": bank})
        except ValidationError as exc:
            raise Invalid(exc.errors()[0]["msg"], field="method") from exc
        with container.db.write() as session:
            refund = service.retry_payout(
                session,
                clock=container.clock,
                config=container.intake,
                tenant_id=tenant,
                refund_id=refund_id,
                actor=ACTOR,
                fallback=fallback,
            )
            data = {"refund_id": refund.id, "status": refund.status, "method": method}
    except DomainError as exc:
        _fail(exc, as_json)
        return
    if as_json:
        typer.echo(json.dumps(data))
    else:
        console.print(f"Refund {refund_id} is {data['status']}; its payout is queued ({method}).")


@app.command("sync")
def sync(
    all_: Annotated[
        bool, typer.Option("--all", help="Ask about every unanswered payout, however recent.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Ask the gateways about payouts still pending or unanswered; apply their answers."""
    from refunddesk.payouts.sync import sync_payouts

    container = _container()
    s = container.settings
    with Progress(
        TextColumn("asking gateways"),
        BarColumn(),
        MofNCompleteColumn(),
        console=err,
        disable=as_json,
        transient=True,
    ) as progress:
        task = progress.add_task("payouts", total=None)
        report = sync_payouts(
            db=container.db,
            clock=container.clock,
            gateways=container.gateways,
            pending_after=timedelta(0 if all_ else s.payout_sync_pending_after_seconds),
            sent_after=timedelta(0 if all_ else s.payout_sync_sent_after_seconds),
            progress=lambda done, total: progress.update(task, completed=done, total=total),
        )
    data = {
        "checked": report.checked,
        "changed": report.changed,
        "unchanged": report.unchanged,
        "unknown": report.unknown,
        "errors": report.errors,
    }
    if as_json:
        typer.echo(json.dumps(data))
        return
    console.print(
        f"Checked {report.checked} payouts: {report.changed} changed, {report.unchanged} "
        f"unchanged, {report.unknown} unknown to their gateway."
    )
    for error in report.errors:
        err.print(f"[yellow]{error}[/yellow]")


def _parse_config(pairs: list[str], file: Path | None) -> dict[str, Any]:
    from refunddesk.core.errors import Invalid

    config: dict[str, Any] = {}
    if file is not None:
        try:
            loaded = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise Invalid(f"config file: {exc}", field="config-file") from exc
        if not isinstance(loaded, dict):
            raise Invalid("config file: a JSON object is expected", field="config-file")
        config.update(loaded)
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise Invalid(f"--config {pair!r}: write key=value", field="config")
        config[key.strip()] = value
    return config


@gateways_app.command("set")
def gateways_set(
    name: Annotated[str, typer.Argument(help="The name orders use in payment.gateway.")],
    tenant: TenantOpt,
    provider: Annotated[str, typer.Option(help="stripe, adyen, paypal, bank_transfer or sandbox")],
    config: Annotated[
        list[str] | None, typer.Option("--config", help="key=value (repeatable)")
    ] = None,
    config_file: Annotated[
        Path | None, typer.Option("--config-file", help="A JSON object of settings.")
    ] = None,
    methods: Annotated[
        str, typer.Option(help="Comma-separated methods it pays when an order names no gateway.")
    ] = "",
    as_json: JsonOpt = False,
) -> None:
    """Create or replace a tenant's gateway account (secrets are stored, never printed)."""
    from refunddesk.payouts import accounts
    from refunddesk.payouts.queries import account_public

    container = _container()
    try:
        raw = _parse_config(config or [], config_file)
        checked = accounts.validate_config(provider, raw, container.gateway_configs)
        with container.db.write() as session:
            account = accounts.set_account(
                session,
                tenant_id=tenant,
                name=name,
                provider=provider,
                config=checked,
                methods=[m.strip() for m in methods.split(",") if m.strip()],
                now=container.clock.now(),
            )
            public = account_public(account).model_dump(mode="json")
    except DomainError as exc:
        _fail(exc, as_json)
        return
    if as_json:
        typer.echo(json.dumps(public))
    else:
        console.print(f"Gateway account {name} ({provider}) saved: {public['config']}")


@gateways_app.command("list")
def gateways_list(tenant: TenantOpt, as_json: JsonOpt = False) -> None:
    """A tenant's gateway accounts, secrets masked."""
    from refunddesk.payouts import accounts
    from refunddesk.payouts.queries import account_public

    container = _container()
    with container.db.read() as session:
        items = [
            account_public(a).model_dump(mode="json")
            for a in accounts.list_accounts(session, tenant)
        ]
    if as_json:
        typer.echo(json.dumps(items))
        return
    table = Table("name", "provider", "methods", "config")
    for i in items:
        table.add_row(i["name"], i["provider"], ",".join(i["methods"]), json.dumps(i["config"]))
    console.print(table)


@gateways_app.command("remove")
def gateways_remove(
    name: Annotated[str, typer.Argument()], tenant: TenantOpt, as_json: JsonOpt = False
) -> None:
    """Remove a tenant's gateway account; its payouts then fail as not configured."""
    from refunddesk.payouts import accounts

    container = _container()
    try:
        with container.db.write() as session:
            accounts.remove_account(session, tenant_id=tenant, name=name)
    except DomainError as exc:
        _fail(exc, as_json)
        return
    if as_json:
        typer.echo(json.dumps({"removed": name}))
    else:
        console.print(f"Removed gateway account {name}.")

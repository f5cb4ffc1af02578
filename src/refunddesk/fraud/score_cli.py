"""`refunddesk fraud score`: rescore a tenant's open refunds with what is known now."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from refunddesk.core.errors import NotFound

console = Console()
err = Console(stderr=True)


def _container() -> Any:
    from refunddesk.cli import _container as make

    return make()


def score(
    tenant: Annotated[str, typer.Option(help="Tenant id whose open refunds to rescore.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Rescore every open refund of a tenant (model, rules, linked identities as they are now).

    The risk on each refund is replaced; statuses are left alone. Exit code 2 for an
    unknown tenant.
    """
    from refunddesk.fraud.scoring import open_refund_ids, rescore
    from refunddesk.tenants.orm import Tenant

    container = _container()
    try:
        with container.db.write() as session:
            if session.get(Tenant, tenant) is None:
                raise NotFound(f"no tenant {tenant}", field="tenant")
            ids = open_refund_ids(session, tenant_id=tenant)
            with Progress(
                TextColumn("scoring refunds"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=err,
                disable=as_json,
                transient=True,
            ) as progress:
                task = progress.add_task("refunds", total=len(ids))
                result = rescore(
                    session,
                    tenant_id=tenant,
                    now=container.clock.now(),
                    refund_ids=ids,
                    progress=lambda n: progress.advance(task, n),
                )
    except NotFound as exc:
        container.close()
        if as_json:
            typer.echo(json.dumps({"error": exc.code, "detail": exc.detail, "field": exc.field}))
        else:
            err.print(f"[red]error:[/red] {exc.detail}")
        raise typer.Exit(2) from None
    container.close()
    data = result.as_dict()
    if as_json:
        typer.echo(json.dumps(data))
        return
    console.print(f"Rescored {result.refunds} open refunds of {tenant}")
    table = Table("level", "refunds")
    for level in ("low", "medium", "high"):
        table.add_row(level, str(result.levels[level]))
    console.print(table)
    console.print(
        f"{result.changed} changed level; model {result.model_version or 'none (rules only)'}, "
        f"rules {result.rules_version}; {data['refunds_per_second'] or 0} refunds/s"
    )

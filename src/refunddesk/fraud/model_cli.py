"""`refunddesk fraud simulate | train | evaluate | models`: the learned model's commands.

Registered on the `fraud` group in fraud/cli.py. Progress goes to stderr, so `--json`
output on stdout stays machine-readable.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn
from rich.table import Table

from refunddesk.core.errors import DomainError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from refunddesk.bootstrap import Container

console = Console()
err = Console(stderr=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
TenantOpt = Annotated[str, typer.Option("--tenant", help="Tenant id.")]


def _container() -> Container:
    from refunddesk.bootstrap import bootstrap
    from refunddesk.logs import configure
    from refunddesk.settings import get_settings

    settings = get_settings()
    configure(settings.log_level, settings.log_format)
    return bootstrap(settings)


def _fail(exc: DomainError, as_json: bool) -> NoReturn:
    if as_json:
        typer.echo(json.dumps({"error": exc.code, "detail": exc.detail, "field": exc.field}))
    else:
        err.print(f"[red]error:[/red] {exc.detail}")
    raise typer.Exit(2)


def _echo_json(data: Any) -> None:
    typer.echo(json.dumps(data, default=str, sort_keys=True))


@contextmanager
def _steps(enabled: bool) -> Iterator[Callable[[str], None]]:
    """A spinner on stderr that shows the current step of long work."""
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), console=err, disable=not enabled
    ) as bar:
        task = bar.add_task("starting", total=None)
        yield lambda text: bar.update(task, description=text)


def simulate(
    tenant: Annotated[
        str | None, typer.Option("--tenant", help="Simulate into this tenant (see --force).")
    ] = None,
    new_tenant: Annotated[
        str | None,
        typer.Option("--new-tenant", help="Create a dedicated tenant with this name (advised)."),
    ] = None,
    orders: Annotated[int, typer.Option(min=1, max=2_000_000, help="Orders to simulate.")] = 20_000,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed, the same data.")] = 1,
    days: Annotated[int, typer.Option(min=30, max=1095, help="Months of history, in days.")] = 180,
    force: Annotated[
        bool, typer.Option("--force", help="Allow a tenant that already has orders.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Write simulated orders, refunds, returns and fraud labels into a tenant.

    The refunds are in final states with no payout jobs: no money moves and no customer is
    told. Use a dedicated tenant (--new-tenant) so reports of real retailers stay real.
    """
    from sqlalchemy import func, select

    from refunddesk.core.money import currency_exponent
    from refunddesk.fraud.simulate import row_count, write
    from refunddesk.fraud.simulate import simulate as run
    from refunddesk.orders.orm import Order
    from refunddesk.tenants.orm import Tenant
    from refunddesk.tenants.service import create_tenant

    if (tenant is None) == (new_tenant is None):
        _fail(DomainError("give exactly one of --tenant and --new-tenant", field="tenant"), as_json)
    container = _container()
    try:
        with container.db.write() as session:
            if new_tenant is not None:
                row, _ = create_tenant(session, clock=container.clock, name=new_tenant)
            else:
                found = session.get(Tenant, tenant)
                if found is None:
                    raise DomainError(f"no tenant {tenant}", field="tenant")
                row = found
                has_orders = session.execute(
                    select(func.count()).select_from(Order).where(Order.tenant_id == row.id)
                ).scalar_one()
                if has_orders and not force:
                    raise DomainError(
                        f"tenant {row.id} already has {has_orders} orders; simulated refunds "
                        "would mix with them in its reports. Use --new-tenant, or --force",
                        field="tenant",
                    )
            scale = 10 ** currency_exponent(row.currency) / 100
            end = container.clock.now().replace(hour=0, minute=0, second=0, microsecond=0)
            sim = run(
                orders=orders,
                seed=seed,
                end=end - timedelta(days=1),
                days=days,
                currency=row.currency,
                minor_per_cent=scale,
                id_salt=row.id,
            )
            with Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                console=err,
                disable=as_json,
            ) as bar:
                task = bar.add_task("writing simulated rows", total=row_count(sim))
                written = write(
                    session,
                    tenant_id=row.id,
                    sim=sim,
                    advance=lambda n: bar.advance(task, n),
                )
            tenant_id = row.id
    except DomainError as exc:
        _fail(exc, as_json)
    finally:
        container.close()
    summary = {"tenant_id": tenant_id, "seed": seed, "rows": written, **sim.summary()}
    if as_json:
        _echo_json(summary)
        return
    console.print(
        f"[green]simulated[/green] {summary['orders']} orders, {summary['refunds']} refunds "
        f"({summary['fraud_share']:.1%} fraudulent, {summary['fraud_value_share']:.1%} of the "
        f"value) and {summary['labels']} labels into tenant [bold]{tenant_id}[/bold]"
    )
    table = Table("pattern", "refunds")
    for pattern, count in summary["refunds_by_pattern"].items():
        table.add_row(pattern, str(count))
    console.print(table)
    console.print(f"next: refunddesk fraud train --tenant {tenant_id}")


def train(
    tenant: Annotated[str | None, typer.Option("--tenant", help="Tenant id.")] = None,
    simulator: Annotated[
        bool,
        typer.Option("--simulator", help="Build the cold-start model from a fresh simulation."),
    ] = False,
    out: Annotated[
        Path | None,
        typer.Option(help="With --simulator: the folder to write the model files to."),
    ] = None,
    orders: Annotated[
        int | None, typer.Option(min=1000, help="With --simulator: orders to simulate.")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="With --simulator: the seed.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Train on labelled refunds; store and activate the model only if it beats the active one.

    With --simulator, build the shipped cold-start model instead (reproducible: fixed seed).
    """
    from refunddesk.fraud import training

    if simulator:
        if out is None:
            _fail(DomainError("--simulator needs --out FOLDER", field="out"), as_json)
        with _steps(not as_json) as step:
            built = training.build_cold_start(
                out=out,
                orders=orders or training.COLD_START_ORDERS,
                seed=training.COLD_START_SEED if seed is None else seed,
                step=step,
            )
        if as_json:
            _echo_json(built)
        else:
            console.print(f"[green]cold-start model[/green] {built['version']} written to {out}")
            _print_metrics(built["metrics"], title="simulated hold-out")
        return
    if tenant is None:
        _fail(DomainError("give --tenant (or --simulator --out)", field="tenant"), as_json)
    container = _container()
    try:
        # Read while training (no write lock held for minutes); store in a write of its own.
        with container.db.read() as session, _steps(not as_json) as step:
            result = training.train(
                session,
                tenant_id=tenant,
                actor="cli",
                now=container.clock.now(),
                step=step,
                db=container.db,
            )
    except DomainError as exc:
        _fail(exc, as_json)
    finally:
        container.close()
    if as_json:
        _echo_json(result.as_dict())
        return
    console.print(
        f"{result.rows} labelled refunds: trained on {result.train_rows}, judged on the latest "
        f"{result.holdout_rows} (from {result.holdout_from[:10]})"
    )
    _compare(result.candidate, result.incumbent, result.incumbent_version)
    if result.promoted:
        console.print(f"[green]stored and activated[/green] {result.model_version}")
    else:
        console.print(
            f"[yellow]not stored:[/yellow] the active model {result.incumbent_version} "
            "is at least as good on this hold-out"
        )


def evaluate(
    tenant: TenantOpt,
    picture: Annotated[
        Path | None,
        typer.Option(help="Where to write the PNG (default: fraud-evaluation-<tenant>.png)."),
    ] = None,
    all_labelled: Annotated[
        bool,
        typer.Option("--all", help="Measure on every labelled refund, not only the hold-out."),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Metrics of the tenant's active model on its labelled refunds, and a picture of them."""
    from refunddesk.fraud import training

    path = picture or Path(f"fraud-evaluation-{tenant}.png")
    container = _container()
    try:
        with container.db.read() as session, _steps(not as_json) as step:
            result = training.evaluate_active(
                session,
                tenant_id=tenant,
                picture=path,
                holdout_only=not all_labelled,
                step=step,
            )
    except DomainError as exc:
        _fail(exc, as_json)
    finally:
        container.close()
    if as_json:
        _echo_json(result.as_dict())
        return
    what = "hold-out (latest 20%)" if result.holdout_only else "all labelled refunds"
    _print_metrics(
        result.metrics, title=f"model {result.model_version} on {result.rows} refunds, {what}"
    )
    console.print(f"picture: {result.picture}")


def models(tenant: TenantOpt, as_json: JsonOpt = False) -> None:
    """The tenant's stored model versions, and which one is active."""
    from refunddesk.fraud import store

    container = _container()
    try:
        with container.db.read() as session:
            rows = store.list_models(session, tenant_id=tenant)
            data: list[dict[str, Any]] = [
                {
                    "version": r.version,
                    "name": store.tenant_version(r.version),
                    "active": r.active,
                    "source": r.source,
                    "created_at": r.created_at.isoformat(),
                    "roc_auc": r.metrics.get("roc_auc"),
                    "value_caught_at_review_rate": r.metrics.get("value_caught_at_review_rate"),
                }
                for r in rows
            ]
            fallback = store.cold_start_model().version
    finally:
        container.close()
    if as_json:
        _echo_json({"tenant_id": tenant, "models": data, "cold_start": fallback})
        return
    table = Table("version", "active", "source", "created", "ROC AUC", "value caught @5%")
    for d in data:
        table.add_row(
            d["name"],
            "yes" if d["active"] else "",
            d["source"],
            d["created_at"][:16],
            _fmt(d["roc_auc"]),
            _pct(d["value_caught_at_review_rate"]),
        )
    console.print(table)
    if not any(d["active"] for d in data):
        console.print(f"no active model: the cold-start model {fallback} scores this tenant")


ROWS = (
    ("ROC AUC", "roc_auc", "num"),
    ("average precision", "average_precision", "num"),
    ("fraudulent value caught @5% review", "value_caught_at_review_rate", "pct"),
    ("recall @5% review", "recall_at_review_rate", "pct"),
    ("precision @5% review", "precision_at_review_rate", "pct"),
    ("honest customers flagged @5% review", "honest_customer_fpr_at_review_rate", "pct"),
)


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.3f}"


def _pct(value: Any) -> str:
    return "-" if value is None else f"{value:.1%}"


def _cell(m: dict[str, Any], key: str, kind: str) -> str:
    return _pct(m.get(key)) if kind == "pct" else _fmt(m.get(key))


def _print_metrics(m: dict[str, Any], *, title: str) -> None:
    table = Table("metric", "value", title=title)
    for label, key, kind in ROWS:
        table.add_row(label, _cell(m, key, kind))
    for level in ("medium", "high"):
        at = m.get(f"at_{level}")
        if at:
            table.add_row(
                f"at {level} (score >= {at['threshold']:.3f})",
                f"precision {at['precision']:.1%}, recall {at['recall']:.1%}, "
                f"flagged {at['flagged_share']:.1%}",
            )
    table.add_row("refunds / frauds", f"{m['refunds']} / {m['frauds']}")
    console.print(table)
    met = m.get("targets_met", {})
    if met:
        console.print(
            "targets: " + ", ".join(f"{k} {'met' if v else 'MISSED'}" for k, v in met.items())
        )


def _compare(new: dict[str, Any], old: dict[str, Any] | None, old_version: str) -> None:
    table = Table("metric (hold-out)", "new model", f"active: {old_version}")
    for label, key, kind in ROWS:
        table.add_row(label, _cell(new, key, kind), "-" if old is None else _cell(old, key, kind))
    console.print(table)

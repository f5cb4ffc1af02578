"""`refunddesk policy ...`: upload, activate, show and backtest a retailer's refund policy."""

from __future__ import annotations

import getpass
import json
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, NoReturn
from zoneinfo import ZoneInfo

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from refunddesk.core.errors import DomainError
from refunddesk.core.money import Money
from refunddesk.policy.document import PolicyError

if TYPE_CHECKING:
    from refunddesk.bootstrap import Container
    from refunddesk.policy.backtest import BacktestResult
    from refunddesk.policy.schemas import PolicyDetail

app = typer.Typer(help="Per-retailer refund policies: versions, activation, backtests.")
console = Console()
err = Console(stderr=True)

TenantOpt = Annotated[str, typer.Option("--tenant", help="Tenant id.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
FileArg = Annotated[
    Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="A .yaml or .toml file.")
]


def _container() -> Container:
    from refunddesk.bootstrap import bootstrap
    from refunddesk.logs import configure
    from refunddesk.settings import get_settings

    settings = get_settings()
    configure(settings.log_level, settings.log_format)
    return bootstrap(settings)


def _fail(exc: DomainError, as_json: bool, *, source: str | None = None) -> NoReturn:
    """Exit 2; a bad policy names each line and field."""
    problems = exc.problems if isinstance(exc, PolicyError) else ()
    if as_json:
        data: dict[str, Any] = {"error": exc.code, "detail": exc.detail, "field": exc.field}
        if problems:
            data["problems"] = [
                {"line": p.line, "field": p.path, "message": p.message} for p in problems
            ]
        typer.echo(json.dumps(data))
    elif problems:
        err.print(f"[red]error:[/red] {source or 'the policy'} has {len(problems)} problem(s):")
        for p in problems:
            where = f"{source}:{p.line}" if source and p.line is not None else (source or "")
            if not source and p.line is not None:
                where = f"line {p.line}"
            err.print(
                f"  {where}: {p.path or '(document)'}: {p.message}", highlight=False, soft_wrap=True
            )
    else:
        err.print(f"[red]error:[/red] {exc.detail}", highlight=False)
    raise typer.Exit(2)


def _format(path: Path) -> Literal["yaml", "toml"]:
    return "toml" if path.suffix.lower() == ".toml" else "yaml"


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no user name in this environment
        return "cli"


def _print_detail(detail: PolicyDetail) -> None:
    state = "[green]active[/green]" if detail.active else "not active"
    console.print(f"[bold]{detail.name}[/bold]  version {detail.version} ({state})")
    uploaded = f"uploaded {detail.created_at:%Y-%m-%d %H:%M} UTC by {detail.created_by}"
    if detail.activated_at:
        uploaded += f"; activated {detail.activated_at:%Y-%m-%d %H:%M} UTC"
        if detail.activated_by:
            uploaded += f" by {detail.activated_by}"
    console.print(uploaded, highlight=False)
    if detail.note:
        console.print(f"note: {detail.note}", highlight=False)
    console.print()
    for sentence in detail.summary:
        console.print(f"- {sentence}", highlight=False, soft_wrap=True)


@app.command("upload")
def upload(
    file: FileArg,
    tenant: TenantOpt,
    note: Annotated[str, typer.Option(help="Why this version (kept with it).")] = "",
    activate: Annotated[bool, typer.Option("--activate", help="Make it active at once.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Validate and store a new version of the tenant's policy."""
    from refunddesk.policy import service

    source = file.read_text(encoding="utf-8").removeprefix("\ufeff")
    container = _container()
    try:
        with container.db.write() as session:
            row = service.create_version(
                session,
                clock=container.clock,
                tenant_id=tenant,
                source=source,
                fmt=_format(file),
                note=note[:500],
                actor=_actor(),
            )
            if activate:
                service.activate(
                    session,
                    clock=container.clock,
                    tenant_id=tenant,
                    version=row.version,
                    actor=_actor(),
                )
            session.flush()
            detail = service.read_version(session, tenant_id=tenant, version=row.version)
    except DomainError as exc:
        _fail(exc, as_json, source=str(file))
    finally:
        container.close()
    if as_json:
        typer.echo(detail.model_dump_json(exclude={"source", "document"}))
        return
    state = " and activated it" if detail.active else " (not active; `policy activate` it)"
    console.print(
        f"stored [bold]{detail.name}[/bold] as version {detail.version}{state}", soft_wrap=True
    )


@app.command("activate")
def activate(
    version: Annotated[int, typer.Argument(min=1, help="The version number.")],
    tenant: TenantOpt,
    as_json: JsonOpt = False,
) -> None:
    """Make a stored version decide the tenant's new refunds from now on."""
    from refunddesk.policy import service

    container = _container()
    try:
        with container.db.write() as session:
            service.activate(
                session, clock=container.clock, tenant_id=tenant, version=version, actor=_actor()
            )
            session.flush()
            detail = service.read_version(session, tenant_id=tenant, version=version)
    except DomainError as exc:
        _fail(exc, as_json)
    finally:
        container.close()
    if as_json:
        typer.echo(detail.model_dump_json(exclude={"source", "document"}))
        return
    console.print(f"version {version} ([bold]{detail.name}[/bold]) is now active")


@app.command("show")
def show(
    tenant: TenantOpt,
    version: Annotated[
        int | None, typer.Option(min=0, help="A version; default the active one.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Show a version (default: the active one) in plain language."""
    from refunddesk.policy import service

    container = _container()
    try:
        with container.db.read() as session:
            if version is None:
                detail = service.read_active(session, tenant_id=tenant)
            else:
                detail = service.read_version(session, tenant_id=tenant, version=version)
            history = service.read_versions(session, tenant_id=tenant)
    except DomainError as exc:
        _fail(exc, as_json)
    finally:
        container.close()
    if as_json:
        typer.echo(detail.model_dump_json())
        return
    _print_detail(detail)
    if history.items:
        console.print(f"\n{len(history.items)} version(s); active: {history.active_version}")


def _since(value: str | None, tz: ZoneInfo) -> datetime | None:
    """A date means the start of that day in the tenant's zone; a datetime without zone, UTC."""
    if not value:
        return None
    try:
        if len(value) == 10:
            return datetime.combine(date.fromisoformat(value), time(0), tzinfo=tz)
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(
            "give a date (2026-10-01) or a date and time", param_hint="--since"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _money(minor: int, currency: str) -> str:
    return Money(minor, currency).format()


def _percent(rate: float) -> str:
    return f"{rate * 100:.1f}%"


def _print_backtest(result: BacktestResult, path: Path) -> None:
    console.print(
        f"[bold]Backtest of {result.policy_name}[/bold] ({path}) against "
        f"{result.replayed} stored refund(s)"
        + (f" asked since {result.since:%Y-%m-%d %H:%M %Z}" if result.since else ""),
        highlight=False,
    )
    if not result.replayed:
        console.print("no refunds to replay")
        return
    summary = Table("", "before", "after", title="Summary", title_justify="left")
    summary.add_row("refunds replayed", str(result.replayed), str(result.replayed))
    summary.add_row(
        "auto-approved",
        f"{result.approved_before} ({_percent(result.auto_approve_rate_before)})",
        f"{result.approved_after} ({_percent(result.auto_approve_rate_after)})",
    )
    for currency in sorted(set(result.totals_before) | set(result.totals_after)):
        summary.add_row(
            f"total refunded, {currency}",
            _money(result.totals_before.get(currency, 0), currency),
            _money(result.totals_after.get(currency, 0), currency),
        )
    console.print(summary)
    console.print(
        f"decisions changed: {result.decisions_changed}; amounts changed: "
        f"{result.amounts_changed} (totals count every decision but rejected)",
        highlight=False,
    )
    statuses = sorted({s for pair in result.matrix for s in pair})
    matrix = Table(
        "before \\ after", *statuses, title="Decisions, before -> after", title_justify="left"
    )
    for old in statuses:
        matrix.add_row(old, *(str(result.matrix.get((old, new), 0) or "") for new in statuses))
    console.print(matrix)
    findings = Table(
        "finding", "before", "after", title="Refunds per finding", title_justify="left"
    )
    for code in sorted(set(result.findings_before) | set(result.findings_after)):
        findings.add_row(
            code, str(result.findings_before.get(code, 0)), str(result.findings_after.get(code, 0))
        )
    console.print(findings)
    if result.changes:
        changes = Table(
            "reference",
            "before",
            "after",
            "why",
            title="Some changed refunds",
            title_justify="left",
        )
        for c in result.changes:
            changes.add_row(
                c.reference,
                f"{c.before} {_money(c.before_minor, c.currency)}",
                f"{c.after} {_money(c.after_minor, c.currency)}",
                "; ".join(c.findings)[:120],
            )
        console.print(changes)


@app.command("backtest")
def backtest_command(
    tenant: TenantOpt,
    policy: Annotated[
        Path,
        typer.Option(
            "--policy", exists=True, dir_okay=False, readable=True, help="The draft policy file."
        ),
    ],
    since: Annotated[
        str | None, typer.Option(help="Only refunds asked from this date (tenant's zone).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Replay stored refunds against a draft policy and show what would change; writes nothing."""
    from refunddesk.policy.backtest import backtest
    from refunddesk.policy.document import load_policy
    from refunddesk.tenants.orm import Tenant

    try:
        draft = load_policy(policy)
    except PolicyError as exc:
        _fail(exc, as_json, source=str(policy))
    container = _container()
    try:
        with container.db.read() as session:
            row = session.get(Tenant, tenant)
            if row is None:
                from refunddesk.core.errors import NotFound

                raise NotFound(f"no tenant {tenant}", field="tenant")
            start = _since(since, ZoneInfo(row.timezone))
            with Progress(
                TextColumn("replaying refunds"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=err,
                disable=as_json,
                transient=True,
            ) as bar:
                task = bar.add_task("replay", total=None)
                result = backtest(
                    session,
                    tenant_id=tenant,
                    policy=draft,
                    since=start,
                    progress=lambda done, total: bar.update(task, completed=done, total=total),
                )
    except DomainError as exc:
        _fail(exc, as_json)
    finally:
        container.close()
    if as_json:
        typer.echo(json.dumps(result.to_dict()))
        return
    _print_backtest(result, policy)


@app.command("preview")
def preview_command(
    tenant: TenantOpt,
    request: Annotated[
        Path,
        typer.Argument(
            exists=True,
            dir_okay=False,
            readable=True,
            help="A refund request as JSON: the body of POST /v1/refunds.",
        ),
    ],
    as_json: JsonOpt = False,
) -> None:
    """Show what the active policy would decide for a refund request; stores nothing."""
    from pydantic import ValidationError

    from refunddesk.core.errors import Invalid
    from refunddesk.refunds.schemas import RefundCreate
    from refunddesk.refunds.service import preview_refund

    try:
        data = RefundCreate.model_validate_json(request.read_bytes())
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first.get("loc", ()))
        _fail(Invalid(f"{field}: {first.get('msg')}", field=field), as_json)
    container = _container()
    try:
        with container.db.read() as session:
            result = preview_refund(session, clock=container.clock, tenant_id=tenant, data=data)
    except DomainError as exc:
        _fail(exc, as_json)
    finally:
        container.close()
    if as_json:
        typer.echo(result.model_dump_json())
        return
    money = Money(result.amount_minor, result.currency)
    version = result.policy_version or "built-in default"
    console.print(
        f"[bold]{result.decision}[/bold]: {money} by {result.refund_method} "
        f"(policy version {version})"
    )
    if result.return_required:
        console.print(f"the goods come back first, by {result.return_by}")
    if result.approvals_required:
        console.print(f"needs {result.approvals_required} approver(s)")
    for finding in result.findings:
        console.print(f"  {finding.severity:<5} {finding.code}: {finding.message}", soft_wrap=True)

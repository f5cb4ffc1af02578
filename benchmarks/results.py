"""What the benchmarks measured, beside the targets they are held to; printed and saved as JSON."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from benchmarks.wrk import WrkResult


@dataclass(frozen=True, slots=True)
class Target:
    """A goal such as 'req/s >= 2000', and whether this run met it."""

    text: str
    met: bool

    def render(self) -> str:
        return f"[{'green' if self.met else 'red'}]{self.text} {'ok' if self.met else 'MISSED'}[/]"


@dataclass
class HttpRow:
    bench: str
    variant: str
    result: WrkResult
    baseline_rps: float | None = None  # the trivial app's req/s in the same setup
    targets: list[Target] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        return self.result.rps / self.baseline_rps if self.baseline_rps else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "bench": self.bench,
            "variant": self.variant,
            **self.result.as_dict(),
            "baseline_rps": round(self.baseline_rps, 1) if self.baseline_rps else None,
            "ratio": round(self.ratio, 3) if self.ratio is not None else None,
            "targets": [{"text": t.text, "met": t.met} for t in self.targets],
            "notes": self.notes,
        }


@dataclass
class PhaseRow:
    bench: str
    phase: str
    items: int
    seconds: float
    targets: list[Target] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def per_second(self) -> float:
        return self.items / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "bench": self.bench,
            "phase": self.phase,
            "items": self.items,
            "seconds": round(self.seconds, 3),
            "per_second": round(self.per_second, 1),
            "targets": [{"text": t.text, "met": t.met} for t in self.targets],
            "notes": self.notes,
        }


def at_least(name: str, value: float, goal: float) -> Target:
    return Target(f"{name} >= {goal:g}", value >= goal)


def at_most(name: str, value: float, goal: float) -> Target:
    return Target(f"{name} <= {goal:g}", value <= goal)


@dataclass
class Report:
    args: dict[str, Any]
    http: list[HttpRow] = field(default_factory=list)
    phases: list[PhaseRow] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    started: datetime = field(default_factory=lambda: datetime.now(UTC))

    def machine(self) -> dict[str, Any]:
        return {
            "cpu_count": os.cpu_count(),
            # Other work on the machine skews every figure; the 1-minute load shows how much.
            "load_average_1m_at_end": round(os.getloadavg()[0], 2),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "git_commit": _git_commit(),
        }

    def render(self, console: Console) -> None:
        m = self.machine()
        console.print(
            f"[bold]refunddesk benchmarks[/bold]  cpu_count={m['cpu_count']}  "
            f"load avg 1m {m['load_average_1m_at_end']}  "
            f"python {m['python']}  commit {m['git_commit']}  args {self.args}"
        )
        if self.http:
            table = Table(title="HTTP (wrk, 127.0.0.1)")
            for col in ("bench", "variant", "req/s", "p50 ms", "p99 ms", "max ms", "non-2xx"):
                table.add_column(col, justify="left" if col in ("bench", "variant") else "right")
            table.add_column("trivial req/s", justify="right")
            table.add_column("ratio", justify="right")
            table.add_column("targets")
            for row in self.http:
                r = row.result
                table.add_row(
                    row.bench,
                    row.variant,
                    f"{r.rps:,.0f}",
                    f"{r.p50_ms:.1f}",
                    f"{r.p99_ms:.1f}",
                    f"{r.max_ms:.0f}",
                    f"{r.non2xx + r.socket_errors}",
                    f"{row.baseline_rps:,.0f}" if row.baseline_rps else "",
                    f"{row.ratio:.2f}" if row.ratio is not None else "",
                    "  ".join(t.render() for t in row.targets),
                )
            console.print(table)
            for row in self.http:
                if row.result.non2xx or row.result.socket_errors:
                    console.print(
                        f"[yellow]{row.bench} {row.variant}: {row.result.non2xx} non-2xx, "
                        f"{row.result.socket_errors} socket errors; e.g. {row.result.bad_sample}"
                    )
        if self.phases:
            table = Table(title="Pipeline")
            for col in ("bench", "phase", "items", "seconds", "items/s", "targets"):
                table.add_column(
                    col, justify="right" if col in ("items", "seconds", "items/s") else "left"
                )
            for p in self.phases:
                table.add_row(
                    p.bench,
                    p.phase,
                    f"{p.items:,}",
                    f"{p.seconds:.1f}",
                    f"{p.per_second:,.0f}",
                    "  ".join(t.render() for t in p.targets),
                )
            console.print(table)
            for p in self.phases:
                if p.notes:
                    console.print(f"{p.bench} {p.phase}: {p.notes}")
        for key, value in self.extra.items():
            if not isinstance(value, dict):
                console.print(f"{key}: {value}")
                continue
            console.print(f"[bold]{key}[/bold]")
            for name, item in value.items():
                if isinstance(item, list):
                    console.print(f"  {name}:")
                    for entry in item[:15]:
                        console.print(f"    {entry}", soft_wrap=True)
                else:
                    console.print(f"  {name}: {item}", soft_wrap=True)

    def save(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{self.started.strftime('%Y%m%dT%H%M%SZ')}.json"
        data = {
            "started": self.started.isoformat(),
            "machine": self.machine(),
            "args": self.args,
            "http": [r.as_dict() for r in self.http],
            "phases": [p.as_dict() for p in self.phases],
            "extra": self.extra,
        }
        path.write_text(json.dumps(data, indent=2, default=str))
        return path


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
            cwd=Path(__file__).resolve().parent,
        )
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"

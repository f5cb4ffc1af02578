"""Intake (POST /v1/refunds) and status reads (GET /v1/refunds/{id}) over real HTTP with wrk."""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console

from benchmarks import servers, wrk
from benchmarks.results import HttpRow, at_least, at_most
from benchmarks.wrk import WrkResult

ORDER_PREFIX = "BENCH-"
INTAKE_RPS, INTAKE_RATIO, INTAKE_P99_MS = 2000.0, 0.3, 50.0
READ_RPS = 5000.0


@dataclass(frozen=True, slots=True)
class HttpConfig:
    seconds: float
    connections: int
    threads: int
    orders: int
    read_ids: int = 5000


def order_payloads(start: int, count: int, now: datetime) -> list[dict[str, Any]]:
    """Orders delivered yesterday (so refunds auto-approve) with budgets that never run out."""
    return [
        {
            "external_id": f"{ORDER_PREFIX}{n}",
            "customer": {"email": f"c{n}@example.com", "name": "Bench Customer"},
            "currency": "EUR",
            "lines": [{"sku": "SKU-1", "name": "Thing", "quantity": 1, "unit_price_minor": 10**11}],
            "payment": {"method": "card", "gateway": "sandbox", "reference": f"pi_{n}"},
            "purchased_at": (now - timedelta(days=2)).isoformat(),
            "delivered_at": (now - timedelta(days=1)).isoformat(),
        }
        for n in range(start, start + count)
    ]


def load_orders(base: str, key: str, count: int) -> None:
    """POST /v1/orders/batch, 1,000 orders per call."""
    now = datetime.now(UTC)
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}) as client:
        for start in range(1, count + 1, 1000):
            body = {"orders": order_payloads(start, min(1000, count + 1 - start), now)}
            resp = client.post("/v1/orders/batch", json=body, timeout=120)
            resp.raise_for_status()


@dataclass
class Desk:
    """A prepared refunddesk database: migrated, one tenant and its integration key."""

    url: str
    path: Path
    env: dict[str, str]
    key: str

    @classmethod
    def prepare(cls, folder: Path, synchronous: str) -> Desk:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "refunddesk.db"
        url = f"sqlite:///{path}"
        env = servers.refunddesk_env(url, synchronous)
        servers.cli(["db", "upgrade"], env)
        created = json.loads(servers.cli(["tenants", "create", "Bench", "--json"], env))
        return cls(url=url, path=path, env=env, key=created["api_key"])

    def refund_stats(self) -> dict[str, int]:
        with sqlite3.connect(self.path) as conn:
            rows = conn.execute("SELECT status, count(*) FROM refunds GROUP BY status").fetchall()
        return {status: n for status, n in rows}

    def refund_ids(self, limit: int) -> list[str]:
        with sqlite3.connect(self.path) as conn:
            rows = conn.execute(
                "SELECT id FROM refunds ORDER BY random() LIMIT ?", (limit,)
            ).fetchall()
        return [r[0] for r in rows]


def _intake_script(work: Path, desk_key: str, run: str, url_path: str, orders: int) -> Path:
    return wrk.post_script(
        work / f"post-{run}.lua",
        run=run,
        key=desk_key,
        url_path=url_path,
        order_prefix=ORDER_PREFIX,
        orders=orders,
    )


def _wrk(base: str, script: Path, cfg: HttpConfig, seconds: float | None = None) -> WrkResult:
    return wrk.run(
        base,
        script,
        seconds=seconds or cfg.seconds,
        connections=cfg.connections,
        threads=cfg.threads,
    )


def trivial_baselines(
    work: Path, cfg: HttpConfig, processes: list[int], console: Console
) -> dict[int, tuple[WrkResult, WrkResult]]:
    """POST and GET on the trivial app, per process count."""
    out: dict[int, tuple[WrkResult, WrkResult]] = {}
    for procs in processes:
        port = servers.free_port()
        cmd = servers.trivial_server(procs, port)
        log = work / f"trivial-{procs}p.log"
        with servers.serving(cmd, dict(os.environ), port, log) as server:
            base = server.base
            console.print(f"  trivial app, {procs} process(es): POST then GET")
            post = _wrk(base, _intake_script(work, "x", f"t{procs}", "/items", 1000), cfg)
            ids = [f"item{i}" for i in range(1000)]
            get = _wrk(
                base,
                wrk.get_script(work / "get-trivial.lua", key="x", url_prefix="/items/", ids=ids),
                cfg,
            )
        out[procs] = (post, get)
    return out


def run(
    work: Path,
    cfg: HttpConfig,
    *,
    intake: bool,
    read: bool,
    console: Console,
) -> list[HttpRow]:
    """Every HTTP variant: intake FULL/NORMAL x 1/2 processes, reads on FULL, trivial beside."""
    processes = [1, 2]
    work.mkdir(parents=True, exist_ok=True)
    baselines = trivial_baselines(work, cfg, processes, console)
    rows: list[HttpRow] = []
    variants = [("FULL", p) for p in processes]
    if intake:
        variants += [("NORMAL", p) for p in processes]
    for synchronous, procs in variants:
        label = f"{procs} proc, sqlite sync={synchronous}"
        if synchronous == "FULL":
            label += " (shipped)"
        folder = work / f"desk-{synchronous.lower()}-{procs}p"
        desk = Desk.prepare(folder, synchronous)
        port = servers.free_port()
        cmd = servers.refunddesk_server(procs, port)
        with servers.serving(cmd, desk.env, port, folder / "server.log") as server:
            base = server.base
            load_orders(base, desk.key, cfg.orders)
            script = _intake_script(
                work, desk.key, f"r{synchronous}{procs}", "/v1/refunds", cfg.orders
            )
            if intake:
                console.print(f"  intake: {label}")
                result = _wrk(base, script, cfg)
                stats = desk.refund_stats()
                ok = result.requests - result.non2xx - result.socket_errors
                base_rps = baselines[procs][0].rps
                rows.append(
                    HttpRow(
                        "intake POST /v1/refunds",
                        label,
                        result,
                        baseline_rps=base_rps,
                        targets=[
                            at_least("req/s", result.rps, INTAKE_RPS),
                            at_least("ratio", result.rps / base_rps, INTAKE_RATIO),
                            at_most("p99 ms", result.p99_ms, INTAKE_P99_MS),
                            at_most("non-2xx", result.non2xx + result.socket_errors, 0),
                        ],
                        notes={"refunds_by_status": stats, "wrk_2xx": ok},
                    )
                )
            elif read and synchronous == "FULL":
                console.print(f"  seeding refunds for reads: {label}")
                _wrk(base, script, cfg, seconds=min(cfg.seconds, 3))
            if read and synchronous == "FULL":
                console.print(f"  status read: {label}")
                ids = desk.refund_ids(cfg.read_ids)
                get = wrk.get_script(
                    work / f"get-{procs}.lua", key=desk.key, url_prefix="/v1/refunds/", ids=ids
                )
                result = _wrk(base, get, cfg)
                rows.append(
                    HttpRow(
                        "read GET /v1/refunds/{id}",
                        label,
                        result,
                        baseline_rps=baselines[procs][1].rps,
                        targets=[
                            at_least("req/s", result.rps, READ_RPS),
                            at_most("non-2xx", result.non2xx + result.socket_errors, 0),
                        ],
                        notes={"distinct_ids": len(ids)},
                    )
                )
    for procs, (post, got) in baselines.items():
        rows.append(HttpRow("trivial POST /items", f"{procs} proc", post))
        rows.append(HttpRow("trivial GET /items/{id}", f"{procs} proc", got))
    return rows

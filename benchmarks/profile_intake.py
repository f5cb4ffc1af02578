"""Where intake spends its time: py-spy on the real server under wrk, cProfile in-process."""

from __future__ import annotations

import cProfile
import io
import pstats
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import servers, wrk
from benchmarks.http_bench import ORDER_PREFIX, Desk, HttpConfig, load_orders, order_payloads
from refunddesk.bootstrap import bootstrap
from refunddesk.db.migrate import upgrade
from refunddesk.orders.schemas import OrderCreate
from refunddesk.orders.service import create_orders
from refunddesk.refunds.schemas import RefundCreate
from refunddesk.refunds.service import request_refund, to_public
from refunddesk.settings import Settings
from refunddesk.tenants.service import create_tenant

PY_SPY = Path(sys.executable).parent / "py-spy"

# Leaf frames are attributed to the first of these found in their file path.
PACKAGES = (
    "refunddesk",
    "sqlalchemy",
    "pydantic",
    "fastapi",
    "starlette",
    "uvicorn",
    "anyio",
    "asgi_correlation_id",
    "prometheus_client",
    "ulid",
    "json",
    "concurrent",
    "threading",
    "asyncio",
)


def _package(frame: str) -> str:
    path = frame[frame.rfind("(") + 1 :]
    for name in PACKAGES:
        if f"/{name}/" in path or f"/{name}.py" in path:
            return name
    return path.split(":")[0].rsplit("/", 1)[-1] or "?"


def _short(frame: str) -> str:
    name, _, where = frame.partition(" (")
    where = where.rstrip(")").split("site-packages/")[-1].split("/src/")[-1]
    return f"{name} ({where})"


def summarise_raw(path: Path, top: int = 25) -> dict[str, Any]:
    """Self time by leaf function and by package, and inclusive time, from py-spy raw stacks."""
    leaf: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    total = idle = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        if "Condition.wait" in frames[-1] and any("Queue.get" in f for f in frames):
            idle += count  # a thread-pool worker waiting for work: not time spent on a request
            continue
        total += count
        leaf[_short(frames[-1])] += count
        packages[_package(frames[-1])] += count
        for frame in set(frames):
            inclusive[_short(frame)] += count

    def pct(counter: Counter[str], n: int) -> list[tuple[str, float]]:
        return [(k, round(100 * v / total, 1)) for k, v in counter.most_common(n)]

    return {
        "samples": total,
        "idle_pool_samples_excluded": idle,
        "self_by_package_pct": pct(packages, 15),
        "self_by_function_pct": pct(leaf, top),
        "inclusive_pct": pct(inclusive, top * 3),
    }


def py_spy_server(work: Path, cfg: HttpConfig, synchronous: str = "FULL") -> dict[str, Any]:
    """Sample the 1-process server (all active threads) while wrk drives intake."""
    if not PY_SPY.exists() and shutil.which("py-spy") is None:
        return {"skipped": "py-spy not installed (pip install py-spy into the venv)"}
    exe = str(PY_SPY) if PY_SPY.exists() else "py-spy"
    folder = work / "pyspy"
    desk = Desk.prepare(folder, synchronous)
    port = servers.free_port()
    raw = folder / "intake.raw.txt"
    with servers.serving(
        servers.refunddesk_server(1, port), desk.env, port, folder / "server.log"
    ) as server:
        load_orders(server.base, desk.key, cfg.orders)
        script = wrk.post_script(
            folder / "post.lua",
            run="spy",
            key=desk.key,
            url_path="/v1/refunds",
            order_prefix=ORDER_PREFIX,
            orders=cfg.orders,
        )
        result: list[wrk.WrkResult] = []
        load = threading.Thread(
            target=lambda: result.append(
                wrk.run(
                    server.base,
                    script,
                    seconds=cfg.seconds + 2,
                    connections=cfg.connections,
                    threads=cfg.threads,
                )
            )
        )
        load.start()
        time.sleep(1)
        spy = subprocess.run(
            [
                exe,
                "record",
                "--pid",
                str(server.pid),
                "--duration",
                str(max(1, round(cfg.seconds))),
                "--rate",
                "200",
                "--format",
                "raw",
                "--nolineno",
                "--full-filenames",
                "-o",
                str(raw),
            ],
            capture_output=True,
            text=True,
            timeout=cfg.seconds + 60,
            check=False,
        )
        load.join()
    if spy.returncode != 0 or not raw.exists():
        return {"skipped": f"py-spy failed: {spy.stderr[-500:]}"}
    summary = summarise_raw(raw)
    summary["raw_file"] = str(raw)
    summary["sqlite_synchronous"] = synchronous
    if result:
        summary["wrk_while_sampling"] = result[0].as_dict()
    return summary


def cprofile_service(work: Path, requests: int, synchronous: str = "FULL") -> dict[str, Any]:
    """cProfile the service layer alone: validate, write transaction, request_refund, to_public."""
    work.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{work / 'cprofile.db'}"
    upgrade(url)
    container = bootstrap(Settings(database_url=url, sqlite_synchronous=synchronous))
    with container.db.write() as session:
        tenant, _ = create_tenant(
            session, clock=container.clock, name="Profile", currency="EUR", timezone="UTC"
        )
        tenant_id = tenant.id
    orders = 2000
    now = datetime.now(UTC)
    for start in range(1, orders + 1, 1000):
        batch = [OrderCreate.model_validate(o) for o in order_payloads(start, 1000, now)]
        with container.db.write() as session:
            create_orders(session, clock=container.clock, tenant_id=tenant_id, orders=batch)

    def one(i: int) -> None:
        body = {
            "order_id": f"{ORDER_PREFIX}{i % orders + 1}",
            "amount_minor": 1,
            "reason": "damaged",
        }
        data = RefundCreate.model_validate(body)
        with container.db.write() as session:
            refund, _ = request_refund(
                session,
                clock=container.clock,
                config=container.intake,
                tenant_id=tenant_id,
                data=data,
                actor="bench",
                idempotency_key=f"prof-{i}",
            )
            to_public(refund, data.order_id).model_dump_json()

    for i in range(200):
        one(i)
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    for i in range(200, 200 + requests):
        one(i)
    profiler.disable()
    wall = time.perf_counter() - started
    container.close()
    stats = pstats.Stats(profiler, stream=io.StringIO())
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    total = max(sum(v[2] for v in raw.values()), 1e-9)
    rows = []
    for (filename, _line, name), (_cc, calls, tt, ct, _callers) in raw.items():
        where = filename.split("site-packages/")[-1].split("/src/")[-1]
        rows.append((f"{name} ({where})", calls // requests, 100 * tt / total, 100 * ct / total))
    stats.dump_stats(str(work / "service.prof"))
    return {
        "requests": requests,
        "sqlite_synchronous": synchronous,
        "refunds_per_second_profiled": round(requests / wall, 1),
        "top_self_pct (name, calls/refund, self%)": [
            (f, c, round(s, 1)) for f, c, s, _ in sorted(rows, key=lambda r: -r[2])[:20]
        ],
        "top_cumulative_pct": [
            (f, c, round(cu, 1)) for f, c, _, cu in sorted(rows, key=lambda r: -r[3])[:40]
        ],
        "pstats_file": str(work / "service.prof"),
    }

"""The fraud model's cost: one refund scored (latency), and batch scoring (rows per second).

Rows are real feature rows of a simulated tenant (refunddesk.fraud.simulate), scored by the
shipped cold-start model through store's LoadedModel, the object intake uses.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.console import Console

from benchmarks.results import PhaseRow, at_least, at_most


@dataclass(frozen=True)
class FraudModelBenchConfig:
    orders: int = 20_000  # the simulated tenant the feature rows come from
    single: int = 2_000  # one-row predictions timed
    batch: int = 20_000  # rows per batch run


def run(work: Path, cfg: FraudModelBenchConfig, console: Console) -> list[PhaseRow]:
    from refunddesk.fraud import store, training

    work.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        session, tenant_id = training.simulated_session(
            orders=cfg.orders, seed=5, end=training.COLD_START_END, folder=Path(tmp)
        )
        try:
            ds = training.labelled(session, tenant_id=tenant_id)
        finally:
            session.close()
    model = store.cold_start_model()
    X = ds.X
    reps = int(np.ceil(cfg.batch / len(X)))
    big = np.tile(X, (reps, 1))[: cfg.batch]
    rows: list[PhaseRow] = []

    for name, fn in (("predict", model.predict), ("contributions", model.contributions)):
        fn(X[:1])  # warm: the path table is built once per model
        times = []
        for i in range(cfg.single):
            row = X[i % len(X) : i % len(X) + 1]
            started = time.perf_counter()
            fn(row)
            times.append(time.perf_counter() - started)
        median_us = statistics.median(times) * 1e6
        p99_us = sorted(times)[int(len(times) * 0.99)] * 1e6
        console.print(f"  one refund, {name}: median {median_us:.0f} µs, p99 {p99_us:.0f} µs")
        rows.append(
            PhaseRow(
                "fraud model",
                f"one refund: {name}",
                cfg.single,
                sum(times),
                targets=[at_most("median µs", median_us, 1000)],
                notes={"median_us": round(median_us, 1), "p99_us": round(p99_us, 1)},
            )
        )
        started = time.perf_counter()
        fn(big)
        seconds = time.perf_counter() - started
        console.print(f"  batch of {len(big):,}, {name}: {len(big) / seconds:,.0f} rows/s")
        rows.append(
            PhaseRow(
                "fraud model",
                f"batch: {name}",
                len(big),
                seconds,
                targets=[at_least("rows/s", len(big) / seconds, 20_000)],
                notes={"trees": model.booster.num_trees(), "features": len(model.feature_names)},
            )
        )
    return rows

"""`python -m benchmarks [--quick] [--only NAME]`: run, print a table, save bench-results/*.json."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console

from benchmarks import (
    console_queue,
    email_bench,
    escalation_scan,
    fraud_model,
    fraud_scoring,
    http_bench,
    payouts,
    pipeline,
    policy_bench,
    profile_intake,
    webhooks,
    wrk,
)
from benchmarks.results import Report
from benchmarks.servers import ROOT

BENCHES = (
    "intake",
    "read",
    "pipeline",
    "payouts",
    "profile",
    "policy",
    "webhooks",
    "email",
    "escalation",
    "fraud-model",
    "console",
    "fraud",
)
DEFAULT = ("intake", "read", "pipeline", "payouts")
ORDER = {"intake": 0, "read": 1, "trivial": 2}


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    p.add_argument("--quick", action="store_true", help="3 s wrk runs, 5,000-refund pipeline")
    p.add_argument(
        "--only",
        action="append",
        choices=BENCHES,
        help="run only this benchmark (repeatable); profile and policy run only when named",
    )
    p.add_argument("--profile", action="store_true", help="also profile intake (py-spy, cProfile)")
    p.add_argument("--seconds", type=float, help="wrk duration per run (default 10, quick 3)")
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--threads", type=int, default=1, help="wrk threads (2 cores: leave one)")
    p.add_argument("--orders", type=int, default=2000, help="orders the HTTP refunds spread over")
    p.add_argument("--pipeline-n", type=int, help="refunds in the pipeline (default 100000)")
    p.add_argument(
        "--pipeline-max-seconds",
        type=float,
        default=180.0,
        help="stop each pipeline phase after this long (the table then says so)",
    )
    p.add_argument("--payouts-n", type=int, help="refunds per payout run at 0 ms (default 20000)")
    p.add_argument("--webhooks-n", type=int, help="webhook deliveries (default 20000)")
    p.add_argument("--email-n", type=int, help="customer emails (default 10000)")
    p.add_argument(
        "--escalation-n", type=int, help="open refunds the escalation scan runs over (1000000)"
    )
    p.add_argument(
        "--escalation-due", type=float, default=0.001, help="share of them due in one pass"
    )
    p.add_argument("--console-n", type=int, help="refunds in the console's tenant (100000)")
    p.add_argument(
        "--fraud-history", type=int, help="refunds in the fraud bench's history (1000000)"
    )
    p.add_argument("--profile-requests", type=int, default=3000)
    p.add_argument("--policy-n", type=int, help="refunds per policy intake run (default 20000)")
    p.add_argument("--out", type=Path, default=ROOT / "bench-results")
    p.add_argument("--keep", action="store_true", help="keep the temporary databases and logs")
    args = p.parse_args(argv)
    args.seconds = args.seconds or (3.0 if args.quick else 10.0)
    args.pipeline_n = args.pipeline_n or (5000 if args.quick else 100_000)
    args.payouts_n = args.payouts_n or (3000 if args.quick else 20_000)
    args.policy_n = args.policy_n or (3000 if args.quick else 20_000)
    args.webhooks_n = args.webhooks_n or (3000 if args.quick else 20_000)
    args.email_n = args.email_n or (2000 if args.quick else 10_000)
    args.escalation_n = args.escalation_n or (50_000 if args.quick else 1_000_000)
    args.console_n = args.console_n or (5_000 if args.quick else 100_000)
    args.fraud_history = args.fraud_history or (100_000 if args.quick else 1_000_000)
    if args.quick:
        args.profile_requests = min(args.profile_requests, 500)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    selected = set(args.only or DEFAULT) | ({"profile"} if args.profile else set())
    console = Console(width=None if sys.stdout.isatty() else 200)
    report = Report(args={k: str(v) for k, v in vars(args).items()})
    report.extra["load_average_1m_at_start"] = round(os.getloadavg()[0], 2)
    console.print(
        f"cpu_count={os.cpu_count()}; load average {os.getloadavg()[0]:.2f}; "
        f"running {sorted(selected)}"
    )
    work = Path(tempfile.mkdtemp(prefix="refunddesk-bench-"))
    cfg = http_bench.HttpConfig(
        seconds=args.seconds,
        connections=args.connections,
        threads=args.threads,
        orders=args.orders,
    )
    started = time.monotonic()
    try:
        if selected & {"intake", "read", "profile"} and not wrk.available():
            console.print("[red]wrk not found: apt-get install wrk; skipping HTTP benchmarks[/red]")
            selected -= {"intake", "read", "profile"}
        if selected & {"intake", "read"}:
            console.print("[bold]HTTP benchmarks[/bold]")
            rows = http_bench.run(
                work / "http",
                cfg,
                intake="intake" in selected,
                read="read" in selected,
                console=console,
            )
            report.http = sorted(rows, key=lambda r: ORDER.get(r.bench.split()[0], 9))
        if "pipeline" in selected:
            console.print("[bold]Pipeline[/bold]")
            report.phases = pipeline.run(
                work / "pipeline",
                pipeline.PipelineConfig(args.pipeline_n, args.pipeline_max_seconds),
                console,
            )
        if "payouts" in selected:
            console.print("[bold]Payouts[/bold]")
            report.phases += payouts.run(
                work / "payouts",
                payouts.PayoutBenchConfig(
                    refunds=args.payouts_n,
                    # 200 ms runs: about as long as the 0 ms ones at their targets
                    slow_refunds=max(300, args.payouts_n * 3 // 10),
                    max_seconds=args.pipeline_max_seconds,
                    pg_url=payouts.pg_base_url(),
                ),
                console,
            )
        if "policy" in selected:
            console.print("[bold]Policy[/bold]")
            report.phases += policy_bench.run(
                work / "policy",
                policy_bench.PolicyBenchConfig(
                    refunds=args.policy_n,
                    rounds=1 if args.quick else 2,
                    evaluations=2_000 if args.quick else 20_000,
                ),
                console,
            )
        if "email" in selected:
            console.rule("email")
            report.phases += email_bench.run(
                work / "email",
                email_bench.EmailBenchConfig(args.email_n, args.pipeline_max_seconds),
                console,
            )
        if "webhooks" in selected:
            console.print("[bold]Webhooks[/bold]")
            report.phases += webhooks.run(
                work / "webhooks",
                webhooks.WebhookBenchConfig(args.webhooks_n, args.pipeline_max_seconds),
                console,
            )
        if "escalation" in selected:
            console.print("[bold]Escalation scan[/bold]")
            report.phases += escalation_scan.run(
                work / "escalation",
                escalation_scan.EscalationBenchConfig(
                    refunds=args.escalation_n,
                    due_fraction=args.escalation_due,
                    tenants=4,
                    pg_url=payouts.pg_base_url(),
                ),
                console,
            )
        if "fraud-model" in selected:
            console.print("[bold]Fraud model scoring[/bold]")
            report.phases += fraud_model.run(
                work / "fraud-model",
                fraud_model.FraudModelBenchConfig(orders=5_000 if args.quick else 20_000),
                console,
            )
        if "console" in selected:
            console.print("[bold]Console queue page[/bold]")
            report.phases += console_queue.run(
                work / "console",
                console_queue.ConsoleBenchConfig(
                    refunds=args.console_n, requests=30 if args.quick else 200
                ),
                console,
            )
        if "fraud" in selected:
            console.print("[bold]Fraud scoring (intake and batch)[/bold]")
            report.phases += fraud_scoring.run(
                work / "fraud",
                fraud_scoring.FraudBenchConfig(
                    history=args.fraud_history,
                    customers=max(args.fraud_history // 10, 1000),
                    open_refunds=args.fraud_history // 10,
                    intake=300 if args.quick else 1_000,
                    throughput=1_000 if args.quick else 2_000,
                    rounds=1 if args.quick else 2,
                ),
                console,
            )
        if "profile" in selected:
            console.print("[bold]Profiling intake[/bold]")
            report.extra["profile_py_spy_server"] = profile_intake.py_spy_server(
                work / "profile", cfg
            )
            report.extra["profile_cprofile_service"] = profile_intake.cprofile_service(
                work / "profile", args.profile_requests
            )
    finally:
        report.extra["wall_seconds"] = round(time.monotonic() - started, 1)
        if args.keep:
            report.extra["work_dir"] = str(work)
        else:
            shutil.rmtree(work, ignore_errors=True)
    console.print()
    report.render(console)
    path = report.save(args.out)
    console.print(f"saved {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

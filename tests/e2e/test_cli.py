"""The real `refunddesk` console script, run in subprocesses against a temporary database."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.orm import Session

from refunddesk.api.app import create_app
from refunddesk.bootstrap import bootstrap
from refunddesk.jobs.queue import stats
from refunddesk.settings import Settings
from tests.factories import Factory, TenantHandle, order_payload

pytestmark = pytest.mark.slow

CLI = str(Path(sys.executable).parent / "refunddesk")
TIMEOUT = 120


def cli_env(database_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REFUNDDESK_")}
    env.update(
        REFUNDDESK_DATABASE_URL=database_url,
        REFUNDDESK_SQLITE_SYNCHRONOUS="NORMAL",
        REFUNDDESK_LOG_LEVEL="WARNING",
        NO_COLOR="1",
        COLUMNS="200",
    )
    return env


def run(database_url: str, *args: str, expect: int = 0) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [CLI, *args],
        env=cli_env(database_url),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert result.returncode == expect, (args, result.returncode, result.stdout, result.stderr)
    return result


def run_json(database_url: str, *args: str, expect: int = 0) -> Any:
    result = run(database_url, *args, "--json", expect=expect)
    return json.loads(result.stdout)


@contextmanager
def api(database_url: str) -> Iterator[TestClient]:
    """The app in this process, on the database the CLI wrote to."""
    container = bootstrap(Settings(database_url=database_url))
    try:
        with TestClient(create_app(container), raise_server_exceptions=False) as client:
            yield client
    finally:
        container.close()


def make_tenant(database_url: str) -> TenantHandle:
    """Set-up without a subprocess: `tenants create` has a test of its own."""
    container = bootstrap(Settings(database_url=database_url))
    try:
        return Factory(container).tenant("Shop")
    finally:
        container.close()


def count_rows(database_url: str, table: str) -> int:
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())
    finally:
        engine.dispose()


def bearer(key: str, tenant_id: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {key}"}
    if tenant_id:
        headers["X-Tenant-Id"] = tenant_id
    return headers


def test_db_upgrade_creates_the_schema_and_can_run_again(tmp_path: Path) -> None:
    # given an empty database file
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    # when it is upgraded, twice
    first = run(url, "db", "upgrade")
    run(url, "db", "upgrade")
    # then the tables are there
    assert "up to date" in first.stdout
    engine = create_engine(url)
    tables = set(inspect(engine).get_table_names())
    engine.dispose()
    assert {"tenants", "api_keys", "orders", "refunds", "refund_events", "jobs"} <= tables


def test_tenants_create_prints_an_id_and_a_key_that_works_against_the_api(
    sqlite_url: str,
) -> None:
    # given a retailer created on the command line
    created = run_json(sqlite_url, "tenants", "create", "Shop", "--currency", "SEK")
    assert set(created) == {"tenant_id", "api_key"}
    # when its key is used against the API
    headers = bearer(created["api_key"])
    with api(sqlite_url) as client:
        order = client.post("/v1/orders", headers=headers, json=order_payload(currency="SEK"))
        refund = client.post(
            "/v1/refunds",
            headers=headers,
            json={"order_id": order.json()["external_id"], "amount_minor": 100, "reason": "other"},
        )
    # then it acts for that retailer
    assert order.status_code == 201, order.text
    assert refund.status_code == 201, refund.text
    assert refund.json()["currency"] == "SEK"
    # and the retailer is listed
    listed = run_json(sqlite_url, "tenants", "list")
    assert listed == [
        {"tenant_id": created["tenant_id"], "name": "Shop", "currency": "SEK", "timezone": "UTC"}
    ]


def test_tenants_create_with_a_bad_currency_or_zone_exits_2_saying_why(sqlite_url: str) -> None:
    human = run(sqlite_url, "tenants", "create", "Shop", "--currency", "XYZ", expect=2)
    assert "XYZ" in human.stderr
    assert "ISO 4217" in human.stderr
    as_json = run_json(sqlite_url, "tenants", "create", "Shop", "--currency", "EURO", expect=2)
    assert as_json["error"] == "invalid_currency"
    zone = run_json(sqlite_url, "tenants", "create", "Shop", "--timezone", "Mars/Base", expect=2)
    assert zone["field"] == "timezone"
    assert count_rows(sqlite_url, "tenants") == 0


def test_keys_create_makes_working_tenant_and_admin_keys(sqlite_url: str) -> None:
    # given a retailer
    tenant = make_tenant(sqlite_url)
    # when an agent key and an admin key are made
    agent = run_json(sqlite_url, "keys", "create", "--tenant", tenant.id, "--role", "agent")
    admin = run_json(sqlite_url, "keys", "create", "--admin")
    # then each works with its role's powers
    with api(sqlite_url) as client:
        assert client.get("/v1/refunds", headers=bearer(agent["api_key"])).status_code == 200
        assert client.get("/v1/jobs", headers=bearer(agent["api_key"])).status_code == 403
        posted = client.post("/v1/orders", headers=bearer(agent["api_key"]), json=order_payload())
        assert posted.status_code == 403
        assert client.get("/v1/jobs", headers=bearer(admin["api_key"])).status_code == 200
        as_tenant = bearer(admin["api_key"], tenant.id)
        assert client.get("/v1/refunds", headers=as_tenant).status_code == 200


@pytest.mark.parametrize(
    "args",
    [
        ["--admin", "--tenant", "T"],
        ["--role", "agent"],
        ["--tenant", "T", "--role", "admin"],
        ["--tenant", "01JZZZZZZZZZZZZZZZZZZZZZZZ", "--role", "agent"],
        ["--tenant", "T", "--role", "wizard"],
    ],
    ids=[
        "admin-with-tenant",
        "role-without-tenant",
        "admin-role",
        "unknown-tenant",
        "unknown-role",
    ],
)
def test_keys_create_refuses_invalid_combinations_with_exit_2(
    sqlite_url: str, args: list[str]
) -> None:
    result = run(sqlite_url, "keys", "create", *args, expect=2)
    assert result.stderr.strip()
    assert "API key:" not in result.stdout


def test_worker_once_pays_the_queued_refunds_and_jobs_list_shows_the_queue(
    sqlite_url: str,
) -> None:
    # given a refund approved through the API, its payout queued
    headers = make_tenant(sqlite_url).headers
    with api(sqlite_url) as client:
        order = client.post("/v1/orders", headers=headers, json=order_payload()).json()
        refund = client.post(
            "/v1/refunds",
            headers=headers,
            json={"order_id": order["external_id"], "amount_minor": 100, "reason": "damaged"},
        ).json()
    assert refund["status"] == "approved"
    queued = run_json(sqlite_url, "jobs", "list")
    assert queued["queued"] == 1
    assert [(j["kind"], j["payload"]) for j in queued["jobs"]] == [
        ("payout", {"refund_id": refund["id"]})
    ]
    # when a worker runs once
    ran = run(sqlite_url, "worker", "--once")
    # then the queue is empty and the refund is paid
    assert "ran 1 jobs" in ran.stdout
    with api(sqlite_url) as client:
        paid = client.get(f"/v1/refunds/{refund['id']}", headers=headers).json()
    engine = create_engine(sqlite_url)
    with Session(engine) as session:
        after = stats(session)
    engine.dispose()
    assert paid["status"] == "succeeded"
    assert (after.queued, after.running, after.dead) == (0, 0, 0)


def test_demo_loads_retailers_with_working_keys_and_refunds_in_many_states(
    sqlite_url: str,
) -> None:
    # when the demo is loaded
    demo = run_json(sqlite_url, "demo", "--orders", "20")
    # then its keys work and its refunds are spread over the states a desk sees
    assert len(demo["tenants"]) == 3
    assert demo["refunds"] > 0
    statuses: set[str] = set()
    with api(sqlite_url) as client:
        assert client.get("/v1/jobs", headers=bearer(demo["admin_key"])).status_code == 200
        for tenant in demo["tenants"]:
            assert set(tenant["keys"]) >= {"integration", "agent", "supervisor", "client_viewer"}
            for key in tenant["keys"].values():
                page = client.get("/v1/refunds?limit=200", headers=bearer(key))
                assert page.status_code == 200, page.text
            statuses |= {r["status"] for r in page.json()["items"]}
        if demo["sample"]:
            sample = demo["sample"]
            tracked = client.get(
                f"/v1/track/{sample['reference']}", params={"email": sample["email"]}
            )
            assert tracked.status_code == 200, tracked.text
    assert len(statuses) >= 3, statuses
    assert "succeeded" in statuses
    # and loading it again only when empty skips
    assert run_json(sqlite_url, "demo", "--if-empty") == {"skipped": True}
    assert count_rows(sqlite_url, "tenants") == 3


COMMANDS = [
    [],
    ["db"],
    ["db", "upgrade"],
    ["serve"],
    ["worker"],
    ["demo"],
    ["tenants"],
    ["tenants", "create"],
    ["tenants", "list"],
    ["keys"],
    ["keys", "create"],
    ["jobs"],
    ["jobs", "list"],
    ["jobs", "rerun"],
]


def test_every_command_has_help_that_exits_0(tmp_path: Path) -> None:
    # run at once: each is only an interpreter start
    env = cli_env(f"sqlite:///{tmp_path / 'untouched.db'}")
    procs = [
        (args, subprocess.Popen([CLI, *args, "--help"], env=env, stdout=subprocess.PIPE, text=True))
        for args in COMMANDS
    ]
    for args, proc in procs:
        out, _ = proc.communicate(timeout=TIMEOUT)
        assert proc.returncode == 0, (args, out)
        assert "Usage" in out, (args, out)
    assert not (tmp_path / "untouched.db").exists()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for(predicate: Any, *, seconds: float, what: str) -> Any:
    deadline = time.monotonic() + seconds
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except httpx.TransportError as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(0.2)
    raise AssertionError(f"gave up waiting for {what}; last: {last!r}")


def test_serve_answers_http_and_its_inline_worker_pays_refunds(sqlite_url: str) -> None:
    # given a retailer, and the server started on a free port
    headers = make_tenant(sqlite_url).headers
    port = free_port()
    env = cli_env(sqlite_url)
    env["REFUNDDESK_WORKER_POLL_SECONDS"] = "0.1"
    server = subprocess.Popen(
        [CLI, "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:

            def healthy() -> bool:
                if server.poll() is not None:
                    raise AssertionError(f"serve exited {server.returncode}")
                response = http.get("/healthz")
                return response.status_code == 200 and response.json() == {"status": "ok"}

            wait_for(healthy, seconds=30, what="/healthz")
            # when a refund is requested over HTTP
            order = http.post("/v1/orders", headers=headers, json=order_payload())
            assert order.status_code == 201, order.text
            refund = http.post(
                "/v1/refunds",
                headers=headers,
                json={"order_id": order.json()["external_id"], "amount_minor": 250, "reason": "x"},
            )
            assert refund.status_code == 422  # an unknown reason is refused
            refund = http.post(
                "/v1/refunds",
                headers=headers,
                json={
                    "order_id": order.json()["external_id"],
                    "amount_minor": 250,
                    "reason": "damaged",
                },
            )
            assert refund.status_code == 201, refund.text
            url = f"/v1/refunds/{refund.json()['id']}"

            # then the worker inside the server pays it
            def paid() -> bool:
                return bool(http.get(url, headers=headers).json()["status"] == "succeeded")

            wait_for(paid, seconds=20, what="the refund to succeed")
    finally:
        server.terminate()
        try:
            output, _ = server.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            output, _ = server.communicate()
    assert server.returncode is not None
    assert "Traceback" not in output, output

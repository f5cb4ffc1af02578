"""`refunddesk webhooks ...`: the real console script, in subprocesses."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest
from sqlalchemy import select

from refunddesk.bootstrap import Container
from refunddesk.jobs.orm import Job
from tests.e2e.test_cli import CLI, TIMEOUT, cli_env
from tests.factories import Factory

pytestmark = pytest.mark.slow


def webhooks(
    database_url: str, *args: str, allow_private: bool = True, expect: int = 0
) -> subprocess.CompletedProcess[str]:
    env = cli_env(database_url)
    env["REFUNDDESK_WEBHOOK_ALLOW_PRIVATE_URLS"] = "true" if allow_private else "false"
    result = subprocess.run(
        [CLI, "webhooks", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert result.returncode == expect, (args, result.returncode, result.stdout, result.stderr)
    return result


def as_json(result: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(result.stdout)


def test_add_prints_the_secret_once_list_hides_it_and_test_queues_an_event(
    database_url: str, container: Container, factory: Factory
) -> None:
    tenant = factory.tenant()

    # when an endpoint is added with an event filter
    added = as_json(
        webhooks(
            database_url,
            "add",
            "http://127.0.0.1:9/hooks",
            "--tenant",
            tenant.id,
            "--events",
            "payout.*, refund.requested",
            "--json",
        )
    )
    assert added["secret"].startswith("whsec_")
    assert added["event_types"] == ["payout.*", "refund.requested"]

    # then the list shows it without its secret
    listed = webhooks(database_url, "list", "--tenant", tenant.id, "--json")
    (item,) = as_json(listed)
    assert item["id"] == added["id"]
    assert added["secret"] not in listed.stdout
    human = webhooks(database_url, "list", "--tenant", tenant.id).stdout
    assert added["id"] in human
    assert "payout.*" in human

    # when a test event is sent, a delivery job is queued
    queued = as_json(webhooks(database_url, "test", added["id"], "--tenant", tenant.id, "--json"))
    with container.db.read() as session:
        (job,) = session.scalars(select(Job).where(Job.kind == "webhook_delivery"))
        assert job.payload == {"delivery_id": queued["delivery_id"]}

    # and the human form of add prints the secret with a warning to keep it
    printed = webhooks(database_url, "add", "http://127.0.0.1:9/other", "--tenant", tenant.id)
    assert "whsec_" in printed.stdout
    assert "shown once" in printed.stdout


def test_add_refuses_a_loopback_url_unless_allowed_and_a_bad_filter(
    database_url: str, factory: Factory
) -> None:
    tenant = factory.tenant()
    refused = webhooks(
        database_url,
        "add",
        "http://127.0.0.1:9/hooks",
        "--tenant",
        tenant.id,
        "--json",
        allow_private=False,
        expect=2,
    )
    assert as_json(refused)["field"] == "url"
    bad = webhooks(
        database_url,
        "add",
        "http://127.0.0.1:9/hooks",
        "--tenant",
        tenant.id,
        "--events",
        "nonsense",
        "--json",
        expect=2,
    )
    assert as_json(bad)["field"] == "event_types[0]"
    missing = webhooks(database_url, "test", "NOPE", "--tenant", tenant.id, expect=2)
    assert "no webhook endpoint" in missing.stderr

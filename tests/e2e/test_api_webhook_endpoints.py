"""/v1/webhook-endpoints over HTTP: management, permissions, tenant isolation, errors, the log."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from standardwebhooks.webhooks import Webhook

from refunddesk.api.app import create_app
from refunddesk.auth.domain import Role
from refunddesk.bootstrap import Container, bootstrap
from refunddesk.core.clock import FrozenClock
from refunddesk.payouts.gateways.sandbox import SandboxGateway
from tests.conftest import make_settings
from tests.e2e.support import assert_problem, bearer, row_counts
from tests.factories import Factory
from tests.integration.test_webhooks_out import Receiver, receiver  # noqa: F401

BASE = "/v1/webhook-endpoints"


@pytest.fixture
def local(database_url: str) -> Iterator[Container]:
    """A desk allowed to call 127.0.0.1, on a clock at the real now (for verification)."""
    c = bootstrap(
        make_settings(database_url, webhook_allow_private_urls=True),
        clock=FrozenClock(datetime.now(UTC).replace(microsecond=0)),
        gateways=[SandboxGateway(seed=1)],
    )
    yield c
    c.close()


@pytest.fixture
def api(local: Container) -> Iterator[TestClient]:
    with TestClient(create_app(local), raise_server_exceptions=False) as client:
        yield client


def supervisor(container: Container, name: str = "Acme") -> tuple[str, dict[str, str]]:
    factory = Factory(container)
    tenant = factory.tenant(name)
    return tenant.id, bearer(factory.key(tenant.id, Role.SUPERVISOR))


def test_a_supervisor_creates_lists_gets_updates_and_deletes_an_endpoint(
    api: TestClient, local: Container
) -> None:
    _, headers = supervisor(local)

    # when an endpoint is created: its whole secret is in this answer only
    created = api.post(
        BASE,
        headers=headers,
        json={
            "url": "http://127.0.0.1:9/hooks",
            "description": "ERP",
            "event_types": ["payout.*", "refund.requested"],
        },
    )
    assert created.status_code == 201, created.text
    endpoint = created.json()
    secret = endpoint["secret"]
    assert secret.startswith("whsec_")
    assert endpoint["enabled"] is True
    assert endpoint["event_types"] == ["payout.*", "refund.requested"]
    assert secret.startswith(endpoint["secret_hint"].removesuffix("..."))

    # then lists and reads show it without the secret
    listed = api.get(BASE, headers=headers)
    assert listed.status_code == 200
    (item,) = listed.json()
    assert item["id"] == endpoint["id"]
    assert "secret" not in item
    assert secret not in listed.text
    got = api.get(f"{BASE}/{endpoint['id']}", headers=headers)
    assert got.status_code == 200
    assert secret not in got.text

    # when it is updated: only what was sent changes
    patched = api.patch(
        f"{BASE}/{endpoint['id']}",
        headers=headers,
        json={"event_types": ["refund.*"], "enabled": False},
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["event_types"] == ["refund.*"]
    assert patched.json()["enabled"] is False
    assert patched.json()["disabled_reason"] == "disabled by the tenant"
    assert patched.json()["description"] == "ERP"
    cleared = api.patch(
        f"{BASE}/{endpoint['id']}", headers=headers, json={"description": None, "enabled": True}
    )
    assert cleared.json()["description"] is None
    assert cleared.json()["enabled"] is True
    assert cleared.json()["disabled_reason"] is None

    # when the secret is rotated: a new one, shown once
    rotated = api.post(f"{BASE}/{endpoint['id']}/rotate-secret", headers=headers)
    assert rotated.status_code == 200
    assert rotated.json()["secret"] != secret
    assert rotated.json()["previous_secret_valid_until"] is not None

    # when it is deleted, it is gone
    assert api.delete(f"{BASE}/{endpoint['id']}", headers=headers).status_code == 204
    assert_problem(api.get(f"{BASE}/{endpoint['id']}", headers=headers), 404)
    assert api.get(BASE, headers=headers).json() == []


def test_only_roles_that_manage_webhooks_may_see_or_change_endpoints(
    client: TestClient, container: Container
) -> None:
    factory = Factory(container)
    tenant = factory.tenant()
    body = {"url": "https://example.com/hooks"}
    for role in (Role.INTEGRATION, Role.AGENT, Role.FINANCE, Role.CLIENT_VIEWER):
        headers = bearer(factory.key(tenant.id, role))
        assert_problem(client.get(BASE, headers=headers), 403)
        assert_problem(client.post(BASE, headers=headers, json=body), 403)
    admin = factory.key(None, Role.ADMIN)
    assert_problem(client.get(BASE, headers=bearer(admin)), 403, field="X-Tenant-Id")
    created = client.post(BASE, headers=bearer(admin, tenant.id), json=body)
    assert created.status_code == 201, created.text
    assert client.get(BASE, headers=bearer(admin, tenant.id)).json()[0]["url"] == body["url"]
    assert_problem(client.get(BASE), 401)


def test_another_tenants_key_sees_nothing_of_an_endpoint(
    client: TestClient, container: Container
) -> None:
    # given an endpoint of Acme's with a queued test delivery
    _, acme = supervisor(container, "Acme")
    created = client.post(BASE, headers=acme, json={"url": "https://example.com/hooks"}).json()
    test = client.post(f"{BASE}/{created['id']}/test", headers=acme)
    assert test.status_code == 202, test.text
    delivery = test.json()["id"]
    _, other = supervisor(container, "Other")
    before = row_counts(container)

    # then the other tenant's supervisor lists nothing and finds nothing
    assert client.get(BASE, headers=other).json() == []
    one = f"{BASE}/{created['id']}"
    assert_problem(client.get(one, headers=other), 404)
    assert_problem(client.patch(one, headers=other, json={"enabled": False}), 404)
    assert_problem(client.delete(one, headers=other), 404)
    assert_problem(client.post(f"{one}/rotate-secret", headers=other), 404)
    assert_problem(client.post(f"{one}/test", headers=other), 404)
    assert_problem(client.get(f"{one}/deliveries", headers=other), 404)
    assert_problem(client.post(f"{one}/deliveries/{delivery}/retry", headers=other), 404)
    assert row_counts(container) == before


def test_bad_input_is_refused_as_problem_json_naming_the_field(
    client: TestClient, container: Container
) -> None:
    _, headers = supervisor(container)
    before = row_counts(container)
    cases = [
        ({"url": "ftp://example.com/hooks"}, "url"),
        ({"url": "example.com/hooks"}, "url"),
        ({"url": "https://example.com/" + "a" * 2000}, "url"),
        # private and loopback addresses are refused unless the desk allows them (SSRF)
        ({"url": "http://127.0.0.1:8080/hooks"}, "url"),
        ({"url": "http://169.254.169.254/latest/meta-data"}, "url"),
        ({"url": "http://localhost/hooks"}, "url"),
        ({"url": "https://example.com/h", "event_types": ["payout.*", "bogus"]}, "event_types[1]"),
        ({"url": "https://example.com/h", "secret": "whsec_mine"}, "secret"),
        ({}, "url"),
    ]
    for body, field in cases:
        problem = assert_problem(client.post(BASE, headers=headers, json=body), 422, field=field)
        assert problem["detail"]
    assert row_counts(container) == before
    json_headers = {**headers, "Content-Type": "application/json"}
    assert_problem(client.post(BASE, headers=json_headers, content=b"{"), 400)

    created = client.post(BASE, headers=headers, json={"url": "https://example.com/h"}).json()
    one = f"{BASE}/{created['id']}"
    assert_problem(
        client.patch(one, headers=headers, json={"url": "http://10.0.0.1/"}), 422, field="url"
    )
    assert_problem(
        client.patch(one, headers=headers, json={"enabled": "maybe"}), 422, field="enabled"
    )
    assert_problem(client.get(f"{one}/deliveries?limit=0", headers=headers), 422, field="limit")
    assert_problem(
        client.get(f"{one}/deliveries?status=lost", headers=headers), 422, field="status"
    )
    assert_problem(client.post(f"{one}/deliveries/NOPE/retry", headers=headers), 404)
    client.patch(one, headers=headers, json={"enabled": False})
    assert_problem(client.post(f"{one}/test", headers=headers), 409, field="enabled")


def test_a_test_event_is_delivered_logged_and_redelivered_with_the_same_webhook_id(
    api: TestClient,
    local: Container,
    receiver: Receiver,  # noqa: F811
) -> None:
    # given an endpoint on the local receiver, which checks signatures
    _, headers = supervisor(local)
    created = api.post(BASE, headers=headers, json={"url": receiver.url()}).json()
    receiver.secret = created["secret"]
    one = f"{BASE}/{created['id']}"

    # when a test event is sent and the worker runs
    queued = api.post(f"{one}/test", headers=headers)
    assert queued.status_code == 202
    assert queued.json()["status"] == "pending"
    local.worker().drain()

    # then the receiver verified it, and the log shows it delivered with its attempt
    (got,) = receiver.received
    assert got.verified is True
    assert Webhook(created["secret"]).verify(got.body, got.headers)["type"] == "webhook.test"
    (delivery,) = api.get(f"{one}/deliveries", headers=headers).json()
    assert delivery["status"] == "delivered"
    assert delivery["webhook_id"] == got.headers["webhook-id"]
    assert [a["status_code"] for a in delivery["attempts"]] == [204]

    # when it is redelivered
    again = api.post(f"{one}/deliveries/{delivery['id']}/retry", headers=headers)
    assert again.status_code == 202, again.text
    assert again.json()["status"] == "pending"
    assert_problem(api.post(f"{one}/deliveries/{delivery['id']}/retry", headers=headers), 409)
    local.worker().drain()

    # then it arrived again with the same webhook-id, and the log has both attempts
    assert [r.headers["webhook-id"] for r in receiver.received] == [delivery["webhook_id"]] * 2
    assert all(r.verified for r in receiver.received)
    (logged,) = api.get(f"{one}/deliveries?status=delivered", headers=headers).json()
    assert logged["attempt_count"] == 2
    assert len(logged["attempts"]) == 2

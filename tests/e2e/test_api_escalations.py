"""The clocks and escalations API over HTTP: roles, tenants, actors, problems."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient

from refunddesk.auth.domain import Role
from refunddesk.bootstrap import Container
from refunddesk.core.clock import FrozenClock
from tests.e2e.support import assert_problem, bearer, row_counts
from tests.factories import Factory

OLD = {
    "purchased_at": "2026-08-01T10:00:00Z",
    "delivered_at": "2026-08-03T10:00:00Z",
    "customer": {"email": "ada@example.com", "name": "Ada"},
}


def _reviewed_refund(client: TestClient, factory: Factory, tenant_id: str, key: str) -> str:
    response = client.post(
        "/v1/refunds",
        headers=bearer(key),
        json={
            "order_id": factory.order(tenant_id, **OLD),
            "reason": "damaged",
            "amount_minor": 900,
        },
    )
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "pending_review"
    refund_id: str = response.json()["id"]
    return refund_id


def test_an_agent_escalates_notes_and_a_supervisor_resolves_with_their_actors_recorded(
    client: TestClient, container: Container, factory: Factory
) -> None:
    tenant = factory.tenant()
    refund_id = _reviewed_refund(client, factory, tenant.id, tenant.key)
    agent_key = factory.key(tenant.id, Role.AGENT)
    agent = bearer(agent_key)
    supervisor = bearer(factory.key(tenant.id, Role.SUPERVISOR))

    opened = client.post(
        f"/v1/refunds/{refund_id}/escalations",
        headers=agent,
        json={"tier": "l2", "reason": "customer threatens a chargeback", "note": "called twice"},
    )
    assert opened.status_code == 201, opened.text
    esc = opened.json()
    assert esc["tier"] == "l2"
    assert esc["status"] == "open"
    assert esc["reason"] == "manual"
    assert esc["created_by"].startswith("agent:")
    assert [n["body"] for n in esc["notes"]] == ["called twice"]

    noted = client.post(f"/v1/escalations/{esc['id']}/notes", headers=agent, json={"body": "x"})
    assert noted.status_code == 201
    assert noted.json()["actor"].startswith("agent:")
    assigned = client.post(
        f"/v1/escalations/{esc['id']}/assign", headers=agent, json={"owner_id": "01USER"}
    )
    assert assigned.status_code == 200
    assert assigned.json()["owner_id"] == "01USER"

    # An agent may close only l1 escalations; this one is l2.
    refused = client.post(
        f"/v1/escalations/{esc['id']}/resolve", headers=agent, json={"resolution": "done"}
    )
    assert_problem(refused, 403)
    resolved = client.post(
        f"/v1/escalations/{esc['id']}/resolve",
        headers=supervisor,
        json={"resolution": "refunded by hand"},
    )
    assert resolved.status_code == 200, resolved.text
    assert resolved.json()["status"] == "resolved"
    assert resolved.json()["resolved_by"].startswith("supervisor:")

    listed = client.get("/v1/escalations?status=resolved&tier=l2", headers=tenant.headers)
    assert [e["id"] for e in listed.json()["items"]] == [esc["id"]]
    assert client.get("/v1/escalations?status=open", headers=tenant.headers).json()["items"] == []
    events = client.get(f"/v1/refunds/{refund_id}/events", headers=tenant.headers).json()
    types = [e["type"] for e in (events["items"] if isinstance(events, dict) else events)]
    assert types.count("escalation.opened") == 1
    assert "escalation.resolved" in types


def test_viewers_and_integrations_cannot_escalate_and_change_nothing(
    client: TestClient, container: Container, factory: Factory
) -> None:
    tenant = factory.tenant()
    refund_id = _reviewed_refund(client, factory, tenant.id, tenant.key)
    before = row_counts(container)
    for role in (Role.CLIENT_VIEWER, Role.INTEGRATION):
        headers = bearer(factory.key(tenant.id, role))
        response = client.post(
            f"/v1/refunds/{refund_id}/escalations", headers=headers, json={"reason": "x"}
        )
        assert_problem(response, 403)
        assert_problem(
            client.post(f"/v1/refunds/{refund_id}/contacts", headers=headers, json={}), 403
        )
    after = row_counts(container)
    after.pop("api_keys", None), before.pop("api_keys", None)
    assert after == before
    viewer = bearer(factory.key(tenant.id, Role.CLIENT_VIEWER))
    assert client.get(f"/v1/refunds/{refund_id}/clocks", headers=viewer).status_code == 200


def test_another_tenants_refunds_and_escalations_are_not_found(
    client: TestClient, container: Container, factory: Factory
) -> None:
    acme, other = factory.tenant("Acme"), factory.tenant("Other")
    refund_id = _reviewed_refund(client, factory, acme.id, acme.key)
    agent = bearer(factory.key(acme.id, Role.AGENT))
    esc = client.post(
        f"/v1/refunds/{refund_id}/escalations", headers=agent, json={"reason": "x"}
    ).json()
    other_agent = bearer(factory.key(other.id, Role.AGENT))
    assert_problem(client.get(f"/v1/refunds/{refund_id}/clocks", headers=other.headers), 404)
    assert_problem(client.get(f"/v1/escalations/{esc['id']}", headers=other.headers), 404)
    assert_problem(
        client.post(f"/v1/escalations/{esc['id']}/notes", headers=other_agent, json={"body": "hi"}),
        404,
    )
    assert_problem(
        client.post(
            f"/v1/refunds/{refund_id}/escalations", headers=other_agent, json={"reason": "x"}
        ),
        404,
    )
    assert client.get("/v1/escalations", headers=other.headers).json()["items"] == []


def test_clocks_show_time_left_and_tracking_lookups_count_as_contacts(
    client: TestClient, container: Container, factory: Factory, clock: FrozenClock
) -> None:
    tenant = factory.tenant()
    refund_id = _reviewed_refund(client, factory, tenant.id, tenant.key)
    clocks = client.get(f"/v1/refunds/{refund_id}/clocks", headers=tenant.headers)
    assert clocks.status_code == 200, clocks.text
    by_name = {c["name"]: c for c in clocks.json()["clocks"]}
    assert by_name["decision"]["state"] == "running"
    assert by_name["decision"]["remaining_seconds"] == 16 * 3600  # the default target
    assert clocks.json()["contacts"] == 0
    reference = client.get(f"/v1/refunds/{refund_id}", headers=tenant.headers).json()["reference"]
    for _ in range(3):
        tracked = client.get(f"/v1/track/{reference}", params={"email": "ada@example.com"})
        assert tracked.status_code == 200
        assert "escalat" not in tracked.text
        clock.advance(timedelta(hours=2))
    agent = bearer(factory.key(tenant.id, Role.AGENT))
    logged = client.post(
        f"/v1/refunds/{refund_id}/contacts", headers=agent, json={"channel": "phone"}
    )
    assert logged.status_code == 201
    assert logged.json()["contacts"] == 4
    scanned = scan_now(container)
    assert scanned["opened"] == 1
    listed = client.get(f"/v1/escalations?refund_id={refund_id}", headers=tenant.headers).json()
    assert listed["items"][0]["detail"].count("4 times") == 1


def scan_now(container: Container) -> dict[str, object]:
    from refunddesk.escalation.scan import scan

    return scan(db=container.db, clock=container.clock).as_dict()


def test_bad_bodies_and_cursors_are_problems_naming_the_field(
    client: TestClient, container: Container, factory: Factory
) -> None:
    tenant = factory.tenant()
    refund_id = _reviewed_refund(client, factory, tenant.id, tenant.key)
    agent = bearer(factory.key(tenant.id, Role.AGENT))
    assert_problem(
        client.post(f"/v1/refunds/{refund_id}/escalations", headers=agent, json={"tier": "l9"}),
        422,
    )
    assert_problem(client.get("/v1/escalations?cursor=!!", headers=tenant.headers), 422)
    for page_size in (1,):
        for _ in range(2):
            another = _reviewed_refund(client, factory, tenant.id, tenant.key)
            client.post(f"/v1/refunds/{another}/escalations", headers=agent, json={"reason": "x"})
        first = client.get(f"/v1/escalations?limit={page_size}", headers=tenant.headers).json()
        assert len(first["items"]) == 1
        assert first["next_cursor"]
        second = client.get(
            f"/v1/escalations?limit=1&cursor={first['next_cursor']}", headers=tenant.headers
        ).json()
        assert second["items"][0]["id"] < first["items"][0]["id"]


def test_the_customers_tracking_page_counts_as_a_contact(
    client: TestClient, container: Container, factory: Factory
) -> None:
    tenant = factory.tenant()
    refund_id = _reviewed_refund(client, factory, tenant.id, tenant.key)
    reference = client.get(f"/v1/refunds/{refund_id}", headers=tenant.headers).json()["reference"]
    page = client.get("/track", params={"reference": reference, "email": "ada@example.com"})
    assert page.status_code == 200
    assert "escalat" not in page.text.lower()
    wrong = client.get("/track", params={"reference": reference, "email": "eve@example.com"})
    assert wrong.status_code == 404
    clocks = client.get(f"/v1/refunds/{refund_id}/clocks", headers=tenant.headers).json()
    assert clocks["contacts"] == 1  # the wrong e-mail is nobody's contact

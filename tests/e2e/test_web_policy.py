"""The desk's policy page per retailer and its refund page, behind the admin sign-in."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from refunddesk.bootstrap import Container
from refunddesk.policy import example_text
from refunddesk.policy import service as policies
from refunddesk.refunds.orm import Refund
from tests.e2e.test_web import sign_in
from tests.web_seed import Seed, seed_desk


@pytest.fixture
def seed(container: Container) -> Seed:
    return seed_desk(container)


def activate_example(container: Container, tenant_id: str, name: str) -> int:
    with container.db.write() as session:
        row = policies.create_version(
            session,
            clock=container.clock,
            tenant_id=tenant_id,
            source=example_text(name),
            note="the standard policy",
            actor="supervisor:key1",
        )
        policies.activate(session, clock=container.clock, tenant_id=tenant_id, version=row.version)
        return row.version


def refund_of(container: Container, reference: str) -> Refund:
    with container.db.read() as session:
        refund = session.scalars(select(Refund).where(Refund.reference == reference)).one()
        session.expunge(refund)
        return refund


def test_the_policy_page_needs_a_member_of_the_retailer(client: TestClient, seed: Seed) -> None:
    north = seed.tenant_ids["Northwind Outfitters"]
    maple = seed.tenant_ids["Maple Home Goods"]
    page = client.get(f"/desk/tenants/{north}/policy", follow_redirects=False)
    assert page.status_code == 303
    assert page.headers["location"] == "/desk/login"
    sign_in(client, seed.agent_email)  # an agent of Northwind only
    assert client.get(f"/desk/tenants/{north}/policy").status_code == 200
    assert client.get(f"/desk/tenants/{maple}/policy").status_code == 404


def test_the_policy_page_shows_the_active_version_in_plain_language_and_the_history(
    client: TestClient, container: Container, seed: Seed
) -> None:
    sakura = seed.tenant_ids["Sakura Electronics"]
    activate_example(container, sakura, "northwind")
    activate_example(container, sakura, "sakura")
    sign_in(client, seed.admin_email)

    page = client.get(f"/desk/tenants/{sakura}/policy")

    assert page.status_code == 200, page.text
    assert "Sakura Electronics: refund policy" in page.text
    assert 'data-version="2">Version 2<' in page.text
    assert "supervisor:key1" in page.text
    assert "Active since" in page.text
    assert "Changed-mind returns must be unopened." in page.text
    assert "Refunds above 100,000 JPY need two different approvers." in page.text
    rows = re.findall(r'<tr data-version="(\d+)"', page.text)
    assert rows == ["2", "1"]
    assert "Content-Security-Policy" in page.headers


def test_a_retailer_without_versions_shows_the_built_in_default(
    client: TestClient, seed: Seed
) -> None:
    sign_in(client, seed.admin_email)
    page = client.get(f"/desk/tenants/{seed.tenant_ids['Maple Home Goods']}/policy")
    assert page.status_code == 200
    assert "Built-in default" in page.text
    assert "Returns are accepted within 30 calendar days of delivery." in page.text
    assert "No versions uploaded" in page.text


def test_unknown_retailers_and_refunds_are_a_friendly_404(client: TestClient, seed: Seed) -> None:
    sign_in(client, seed.admin_email)
    north = seed.tenant_ids["Northwind Outfitters"]
    for path in (
        "/desk/tenants/01NOSUCHTENANT0000000000000/policy",
        "/desk/tenants/bad%20id/policy",
        f"/desk/refunds/{north}/01NOSUCHREFUND0000000000000",
        f"/desk/refunds/{north}/{'x' * 300}",
    ):
        page = client.get(path)
        assert page.status_code == 404, path
        assert "No such" in page.text


def test_the_desk_links_retailers_to_their_policy_and_events_to_the_refund(
    client: TestClient, container: Container, seed: Seed
) -> None:
    sign_in(client, seed.admin_email)
    desk = client.get("/desk").text
    for tenant_id in seed.tenant_ids.values():
        if tenant_id != seed.tenant_ids["Sakura Electronics"]:  # no refunds: not in the table
            assert f'href="/desk/tenants/{tenant_id}/policy"' in desk
    refund = refund_of(container, seed.reference)
    assert f'href="/desk/refunds/{refund.tenant_id}/{refund.id}"' in desk


def test_the_refund_page_shows_status_amount_order_findings_and_timeline(
    client: TestClient, container: Container, seed: Seed
) -> None:
    sign_in(client, seed.admin_email)
    refund = refund_of(container, seed.reference)

    page = client.get(f"/desk/refunds/{refund.tenant_id}/{refund.id}")

    assert page.status_code == 200, page.text
    text = page.text
    assert seed.reference in text
    assert 'data-status="succeeded"' in text
    assert 'data-field="amount">12.50 EUR<' in text
    assert "Ada Lovelace" in text
    assert 'data-field="policy_version"' in text
    assert "Why: the decision" in text
    timeline = re.findall(r'<li class="t-(\w+)', text)
    assert timeline[-1] == "succeeded"
    assert len(timeline) >= 3
    for reason in refund.decision_reasons:
        assert reason.split(": ", 1)[-1][:20] in text


def test_the_refund_page_needs_an_admin_sign_in(
    client: TestClient, container: Container, seed: Seed
) -> None:
    refund = refund_of(container, seed.reference)
    page = client.get(f"/desk/refunds/{refund.tenant_id}/{refund.id}", follow_redirects=False)
    assert page.status_code == 303

"""Customer notification preferences over HTTP: defaults, replace, roles, bad input."""

from __future__ import annotations

from fastapi.testclient import TestClient

from refunddesk.auth.domain import Role
from tests.e2e.support import assert_problem, bearer, row_counts
from tests.factories import Factory

PATH = "/v1/customers/{}/notification-preferences"


def test_preferences_default_to_every_channel_and_can_be_replaced(
    client: TestClient, factory: Factory
) -> None:
    tenant = factory.tenant()
    got = client.get(PATH.format("Ada@Example.com"), headers=tenant.headers)
    assert got.status_code == 200, got.text
    assert got.json() == {
        "email": "ada@example.com",
        "channels": ["email", "sms"],
        "opted_out": False,
        "locale": None,
        "effective_locale": "en",
    }
    put = client.put(
        PATH.format("ada@example.com"),
        headers=tenant.headers,
        json={"channels": ["sms"], "opted_out": False, "locale": "de-AT"},
    )
    assert put.status_code == 200, put.text
    assert put.json()["channels"] == ["sms"]
    assert (put.json()["locale"], put.json()["effective_locale"]) == ("de_AT", "de")
    again = client.get(PATH.format("ADA@example.com"), headers=tenant.headers).json()
    assert again == put.json()


def test_another_tenant_sees_its_own_defaults(client: TestClient, factory: Factory) -> None:
    one, two = factory.tenant(name="One"), factory.tenant(name="Two")
    client.put(
        PATH.format("ada@example.com"),
        headers=one.headers,
        json={"channels": [], "opted_out": True},
    )
    assert (
        client.get(PATH.format("ada@example.com"), headers=two.headers).json()["opted_out"] is False
    )


def test_a_client_viewer_may_read_but_not_change_preferences(
    client: TestClient, factory: Factory
) -> None:
    tenant = factory.tenant()
    viewer = bearer(factory.key(tenant.id, Role.CLIENT_VIEWER))
    assert client.get(PATH.format("ada@example.com"), headers=viewer).status_code == 200
    before = row_counts(client.app.state.container)  # type: ignore[attr-defined]
    refused = client.put(
        PATH.format("ada@example.com"), headers=viewer, json={"channels": ["email"]}
    )
    assert_problem(refused, 403)
    assert row_counts(client.app.state.container) == before  # type: ignore[attr-defined]


def test_bad_input_names_the_field(client: TestClient, factory: Factory) -> None:
    tenant = factory.tenant()
    assert_problem(
        client.put(
            PATH.format("ada@example.com"), headers=tenant.headers, json={"channels": ["fax"]}
        ),
        422,
    )
    assert_problem(
        client.put(
            PATH.format("ada@example.com"),
            headers=tenant.headers,
            json={"channels": ["email"], "locale": "xx-QQ"},
        ),
        422,
        field="locale",
    )
    assert_problem(
        client.get(PATH.format("not-an-email"), headers=tenant.headers), 422, field="email"
    )

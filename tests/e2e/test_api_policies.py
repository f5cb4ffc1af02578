"""Policy versions over HTTP: upload, list, read in plain language, activate, refuse bad ones."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from refunddesk.auth.domain import Role
from refunddesk.bootstrap import Container
from refunddesk.policy import example_text
from tests.e2e.support import assert_problem, bearer, row_counts
from tests.factories import Factory, TenantHandle

STRICT_YAML = """\
format: 1
name: Strict returns
currency: EUR
window:
  days: 14
returns:
  default: return
fees:
  restocking:
    - percent: 15
      reasons: [changed_mind]
"""
# Line 5 (`days`) is out of range and line 7 names a field that does not exist.
BAD_YAML = """\
format: 1
name: Broken
currency: EUR
window:
  days: -3
returns:
  colour: red
"""
STRICT_TOML = """\
format = 1
name = "Strict in TOML"
currency = "EUR"

[window]
days = 10
outside = "hard"
"""


@pytest.fixture
def shop(factory: Factory) -> TenantHandle:
    return factory.tenant("Shop")


@pytest.fixture
def supervisor(factory: Factory, shop: TenantHandle) -> dict[str, str]:
    return bearer(factory.key(shop.id, Role.SUPERVISOR))


def upload(
    client: TestClient,
    headers: dict[str, str],
    text: str,
    *,
    media: str = "application/yaml",
    **params: Any,
) -> Any:
    return client.post(
        "/v1/policies", headers={**headers, "Content-Type": media}, content=text, params=params
    )


def test_a_tenant_without_versions_reads_the_built_in_default_as_active(
    client: TestClient, shop: TenantHandle
) -> None:
    listed = client.get("/v1/policies", headers=shop.headers)
    assert listed.status_code == 200, listed.text
    assert listed.json() == {"active_version": 0, "items": []}

    active = client.get("/v1/policies/active", headers=shop.headers).json()
    assert active["version"] == 0
    assert active["active"] is True
    assert active["document"]["window"]["days"] == 30
    assert "Returns are accepted within 30 calendar days of delivery." in active["summary"]


def test_a_supervisor_uploads_a_yaml_version_that_is_stored_but_not_active(
    client: TestClient, shop: TenantHandle, supervisor: dict[str, str]
) -> None:
    response = upload(client, supervisor, STRICT_YAML, note="stricter for Q4")
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["version"] == 1
    assert body["active"] is False
    assert body["activated_at"] is None
    assert body["note"] == "stricter for Q4"
    assert body["name"] == "Strict returns"
    assert body["created_by"].startswith("supervisor:")
    assert body["source"] == STRICT_YAML
    assert body["document"]["window"]["days"] == 14
    assert "Returns are accepted within 14 calendar days of delivery." in body["summary"]
    assert client.get("/v1/policies/active", headers=shop.headers).json()["version"] == 0


def test_versions_are_numbered_and_listed_newest_first_with_the_active_one_flagged(
    client: TestClient, shop: TenantHandle, supervisor: dict[str, str]
) -> None:
    upload(client, supervisor, STRICT_YAML)
    upload(client, supervisor, example_text("northwind"), activate="true")
    upload(client, supervisor, STRICT_TOML, media="application/toml")

    listed = client.get("/v1/policies", headers=shop.headers).json()
    assert listed["active_version"] == 2
    assert [v["version"] for v in listed["items"]] == [3, 2, 1]
    assert [v["active"] for v in listed["items"]] == [False, True, False]
    assert listed["items"][1]["activated_at"] is not None
    for key in ("note", "created_by", "created_at", "activated_at", "format"):
        assert key in listed["items"][0]


def test_activating_a_version_makes_it_the_active_policy(
    client: TestClient, shop: TenantHandle, supervisor: dict[str, str]
) -> None:
    upload(client, supervisor, STRICT_YAML)
    upload(client, supervisor, example_text("sakura"))

    response = client.post("/v1/policies/1/activate", headers=supervisor)
    assert response.status_code == 200, response.text
    assert response.json()["version"] == 1
    assert response.json()["active"] is True
    assert client.get("/v1/policies/active", headers=shop.headers).json()["version"] == 1

    client.post("/v1/policies/2/activate", headers=supervisor)
    active = client.get("/v1/policies/active", headers=shop.headers).json()
    assert active["version"] == 2
    assert "Refunds above 100,000 JPY need two different approvers." in active["summary"]
    assert client.get("/v1/policies/1", headers=shop.headers).json()["active"] is False


def test_a_version_reads_with_source_document_and_plain_language_summary(
    client: TestClient, shop: TenantHandle, supervisor: dict[str, str]
) -> None:
    upload(client, supervisor, example_text("sakura"))
    body = client.get("/v1/policies/1", headers=shop.headers).json()
    assert body["source"] == example_text("sakura")
    assert body["document"]["currency"] == "JPY"
    assert "Changed-mind returns must be unopened." in body["summary"]
    assert (
        "A 15% restocking fee applies to electronics returned for a change of mind."
        in body["summary"]
    )


def test_an_invalid_yaml_document_is_a_422_naming_line_and_field_and_the_active_stays(
    client: TestClient,
    container: Container,
    shop: TenantHandle,
    supervisor: dict[str, str],
) -> None:
    upload(client, supervisor, STRICT_YAML, activate="true")
    before = row_counts(container)

    response = upload(client, supervisor, BAD_YAML, activate="true")

    body = assert_problem(response, 422, field="window.days")
    assert body["code"] == "invalid_policy"
    by_field = {e["field"]: e for e in body["errors"]}
    assert by_field["window.days"]["line"] == 5
    assert "must be a whole number of days" in by_field["window.days"]["message"]
    assert by_field["returns.colour"]["line"] == 7
    assert by_field["returns.colour"]["message"] == "unknown field"
    assert row_counts(container) == before
    assert client.get("/v1/policies/active", headers=shop.headers).json()["version"] == 1


def test_malformed_yaml_is_a_422_with_the_line(
    client: TestClient, supervisor: dict[str, str]
) -> None:
    response = upload(client, supervisor, "format: 1\nwindow: [days: 3\n")
    body = assert_problem(response, 422)
    assert body["errors"][0]["line"] is not None
    assert "malformed YAML" in body["errors"][0]["message"]


def test_toml_is_accepted_raw_and_in_a_json_body(
    client: TestClient, shop: TenantHandle, supervisor: dict[str, str]
) -> None:
    raw = upload(client, supervisor, STRICT_TOML, media="application/toml")
    assert raw.status_code == 201, raw.text
    assert raw.json()["format"] == "toml"
    assert raw.json()["document"]["window"]["outside"] == "hard"

    wrapped = client.post(
        "/v1/policies",
        headers=supervisor,
        params={"activate": "true"},
        json={"source": STRICT_TOML, "format": "toml", "note": "via JSON"},
    )
    assert wrapped.status_code == 201, wrapped.text
    assert wrapped.json()["version"] == 2
    assert wrapped.json()["active"] is True
    assert wrapped.json()["note"] == "via JSON"
    assert "Requests after the window are refused." in wrapped.json()["summary"]


def test_a_json_body_with_bad_fields_is_a_422_and_another_media_type_a_415(
    client: TestClient, supervisor: dict[str, str]
) -> None:
    bad = client.post("/v1/policies", headers=supervisor, json={"source": "a: 1", "format": "ini"})
    assert_problem(bad, 422, field="format")
    other = upload(client, supervisor, "days=3", media="text/plain")
    assert_problem(other, 415)


def test_unknown_versions_are_404(
    client: TestClient, shop: TenantHandle, supervisor: dict[str, str]
) -> None:
    assert_problem(client.get("/v1/policies/7", headers=shop.headers), 404)
    assert_problem(client.post("/v1/policies/7/activate", headers=supervisor), 404)


@pytest.mark.parametrize("role", [Role.AGENT, Role.FINANCE, Role.CLIENT_VIEWER, Role.INTEGRATION])
def test_other_roles_may_read_policies_but_not_upload_or_activate(
    client: TestClient,
    factory: Factory,
    shop: TenantHandle,
    supervisor: dict[str, str],
    role: Role,
) -> None:
    upload(client, supervisor, STRICT_YAML)
    headers = bearer(factory.key(shop.id, role))
    assert client.get("/v1/policies", headers=headers).status_code == 200
    assert client.get("/v1/policies/1", headers=headers).status_code == 200
    assert client.get("/v1/policies/active", headers=headers).status_code == 200
    assert_problem(upload(client, headers, STRICT_YAML), 403)
    assert_problem(client.post("/v1/policies/1/activate", headers=headers), 403)
    assert client.get("/v1/policies/active", headers=headers).json()["version"] == 0


def test_an_admin_manages_a_tenants_policy_by_naming_it(
    client: TestClient, factory: Factory, shop: TenantHandle
) -> None:
    admin = bearer(factory.key(None, Role.ADMIN), shop.id)
    created = upload(client, admin, example_text("maple"), activate="true")
    assert created.status_code == 201, created.text
    assert client.get("/v1/policies/active", headers=shop.headers).json()["version"] == 1
    assert_problem(client.get("/v1/policies", headers=bearer(factory.key(None, Role.ADMIN))), 403)


def test_one_tenants_versions_are_invisible_to_another(
    client: TestClient, factory: Factory, supervisor: dict[str, str]
) -> None:
    upload(client, supervisor, STRICT_YAML)
    other = factory.tenant("Other")
    assert client.get("/v1/policies", headers=other.headers).json()["items"] == []
    assert_problem(client.get("/v1/policies/1", headers=other.headers), 404)


def test_the_openapi_document_describes_both_ways_to_send_a_policy(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    create = spec["paths"]["/v1/policies"]["post"]
    assert create["operationId"] == "create_policy"
    assert {"application/json", "application/yaml", "application/toml"} <= set(
        create["requestBody"]["content"]
    )
    ids = {op["operationId"] for path in spec["paths"].values() for op in path.values()}
    assert {
        "list_policies",
        "create_policy",
        "get_active_policy",
        "get_policy",
        "activate_policy",
    } <= ids

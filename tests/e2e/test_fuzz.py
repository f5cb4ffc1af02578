"""Schemathesis fuzzes every operation in /openapi.json: no 5xx, and answers match the schema."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from refunddesk.api.app import create_app
from refunddesk.auth.domain import Role
from refunddesk.bootstrap import bootstrap
from refunddesk.core.clock import FrozenClock
from refunddesk.payouts.gateways.sandbox import SandboxGateway
from tests.conftest import NOW, make_settings
from tests.factories import Factory

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


class Keys:
    integration: str = ""
    admin: str = ""
    supervisor: str = ""
    tenant_id: str = ""


KEYS = Keys()


@pytest.fixture(scope="module")
def fuzz_app(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> Iterator[FastAPI]:
    """The app on a SQLite database of its own (a copy of the migrated template, as `sqlite_url`
    makes, but shared by this module's tests), with a retailer, an order and a refund to find.
    """
    path = tmp_path_factory.mktemp("fuzz") / "refunddesk.db"
    shutil.copyfile(sqlite_template, path)
    container = bootstrap(
        make_settings(f"sqlite:///{path}"),
        clock=FrozenClock(NOW),
        gateways=[SandboxGateway(seed=1)],
    )
    factory = Factory(container)
    tenant = factory.tenant()
    KEYS.integration, KEYS.tenant_id = tenant.key, tenant.id
    KEYS.admin = factory.key(None, Role.ADMIN)
    KEYS.supervisor = factory.key(tenant.id, Role.SUPERVISOR)
    order = factory.order(tenant.id, external_id="ORD-FUZZ")
    app = create_app(container)
    with TestClient(app) as client:
        response = client.post(
            "/v1/refunds",
            headers=tenant.headers,
            json={"order_id": order, "amount_minor": 100, "reason": "damaged"},
        )
        assert response.status_code == 201, response.text
        yield app
    container.close()


# Every operation in /openapi.json; a test below fails if one is added and not listed here.
OPERATIONS = (
    "healthz",
    "create_order",
    "create_orders_batch",
    "get_order",
    "create_refund",
    "label_refund_fraud",
    "list_refund_fraud_labels",
    "list_fraud_review_queue",
    "list_refunds",
    "get_refund",
    "list_refund_events",
    "approve_refund",
    "reject_refund",
    "cancel_refund",
    "retry_refund_payout",
    "preview_refund",
    "list_approvals",
    "track_refund",
    "list_jobs",
    "rerun_job",
    "list_policies",
    "create_policy",
    "get_active_policy",
    "get_policy",
    "activate_policy",
    "backtest_policy",
    "get_return",
    "ship_return",
    "receive_return",
    "inspect_return",
    "mark_return_lost",
    "receive_gateway_webhook",
    "list_payouts_needing_attention",
    "list_refund_payouts",
    "list_gateway_accounts",
    "set_gateway_account",
    "delete_gateway_account",
    "get_store_credit",
    "spend_store_credit",
    "create_payout_choice_link",
    "create_webhook_endpoint",
    "list_webhook_endpoints",
    "get_webhook_endpoint",
    "update_webhook_endpoint",
    "delete_webhook_endpoint",
    "rotate_webhook_endpoint_secret",
    "send_webhook_test",
    "list_webhook_deliveries",
    "retry_webhook_delivery",
    "get_notification_preferences",
    "set_notification_preferences",
    "get_refund_clocks",
    "log_customer_contact",
    "list_escalations",
    "get_escalation",
    "escalate_refund",
    "add_escalation_note",
    "assign_escalation",
    "resolve_escalation",
)
ADMIN_ONLY = {
    "list_jobs",
    "rerun_job",
    "list_gateway_accounts",
    "set_gateway_account",
    "delete_gateway_account",
}
# Uploading and activating policies, and receiving, inspecting or losing returns, are for
# supervisors (and agents): fuzz them past the 403.
SUPERVISOR_ONLY = {
    # escalations are worked by agents, supervisors and finance (escalations:work)
    "log_customer_contact",
    "escalate_refund",
    "add_escalation_note",
    "assign_escalation",
    "resolve_escalation",
    "create_policy",
    "activate_policy",
    "backtest_policy",
    "receive_return",
    "inspect_return",
    "mark_return_lost",
    "create_payout_choice_link",
    # webhook endpoints show and change signing secrets: supervisors (webhooks:manage)
    "create_webhook_endpoint",
    "list_webhook_endpoints",
    "get_webhook_endpoint",
    "update_webhook_endpoint",
    "delete_webhook_endpoint",
    "rotate_webhook_endpoint_secret",
    "send_webhook_test",
    "list_webhook_deliveries",
    "retry_webhook_delivery",
}


def test_the_fuzzed_operations_are_all_the_operations(fuzz_app: FastAPI) -> None:
    spec = fuzz_app.openapi()
    ids = {op["operationId"] for path in spec["paths"].values() for op in path.values()}
    assert ids == set(OPERATIONS)


# pytest 9 broke schemathesis' lazy `from_fixture(...).parametrize()` (it rewrites node ids), so
# each operation gets a plain parametrized test that runs the operation's strategy itself.
CASES = [
    (operation_id, mode)
    for operation_id in OPERATIONS
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if not (operation_id == "healthz" and mode is GenerationMode.NEGATIVE)  # nothing to negate
]


@pytest.mark.slow
@pytest.mark.parametrize(("operation_id", "mode"), CASES, ids=[f"{o}-{m}" for o, m in CASES])
def test_no_operation_answers_a_5xx_or_off_schema(
    fuzz_app: FastAPI, operation_id: str, mode: GenerationMode
) -> None:
    # given the schema the app serves, and a real key (the admin one where only admins may go)
    schema = schemathesis.openapi.from_asgi("/openapi.json", fuzz_app)
    operation = schema.find_operation_by_id(operation_id)
    key = KEYS.admin if operation_id in ADMIN_ONLY else KEYS.integration
    if operation_id in SUPERVISOR_ONLY:
        key = KEYS.supervisor

    @settings(
        max_examples=10,
        derandomize=True,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def fuzz(case: Any) -> None:
        headers = dict(case.headers or {})
        headers["Authorization"] = f"Bearer {key}"
        case.headers = headers
        # when the generated request is sent, then the answer holds up
        case.call_and_validate(checks=CHECKS)

    fuzz()

"""SQLite's planner statistics: gathered on demand, so batch lookups use the primary key."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from refunddesk.bootstrap import Container, bootstrap
from refunddesk.core.clock import FrozenClock
from refunddesk.core.ids import new_id
from tests.conftest import make_settings

# Covered by ix_refunds_tenant_status (tenant_id, status, id): without statistics SQLite
# walks all of the tenant's rows through it.
BATCH_LOOKUP = (
    "EXPLAIN QUERY PLAN SELECT id, status FROM refunds "
    "WHERE tenant_id = :t AND id IN ('a', 'b', 'c')"
)


@pytest.fixture
def sqlite_container(sqlite_url: str, clock: FrozenClock) -> Iterator[Container]:
    c = bootstrap(make_settings(sqlite_url), clock=clock)
    yield c
    c.close()


def _fill_one_tenant(container: Container, refunds: int) -> str:
    tenant_id, order_id = new_id(), new_id()
    at = datetime(2026, 11, 20, tzinfo=UTC).isoformat(" ")
    with container.db.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO tenants (id, name, currency, timezone, created_at) "
                "VALUES (:t, 'T', 'EUR', 'UTC', :at)"
            ),
            {"t": tenant_id, "at": at},
        )
        conn.execute(
            text(
                "INSERT INTO orders (tenant_id, id, external_id, customer_email, customer_name,"
                " currency, shipping_minor, tax_minor, total_minor, payment_method,"
                " payment_gateway, payment_reference, purchased_at, created_at) VALUES"
                " (:t, :o, 'O-1', 'a@example.com', 'A', 'EUR', 0, 0, 100, 'card', 'sandbox',"
                " 'pi', :at, :at)"
            ),
            {"t": tenant_id, "o": order_id, "at": at},
        )
        conn.execute(
            text(
                "INSERT INTO refunds (tenant_id, id, order_id, reference, status, reason, channel,"
                " amount_minor, currency, decision_reasons, approvals_required, created_at,"
                " updated_at, event_count) VALUES (:t, :id, :o, :ref, 'succeeded', 'damaged',"
                " 'api', 1, 'EUR', '[]', 0, :at, :at, 0)"
            ),
            [
                {"t": tenant_id, "id": new_id(), "o": order_id, "ref": f"RF-{n:08d}", "at": at}
                for n in range(refunds)
            ],
        )
    return tenant_id


def _plan(container: Container, tenant_id: str) -> str:
    with container.db.engine.connect() as conn:
        return " ".join(str(row[-1]) for row in conn.execute(text(BATCH_LOOKUP), {"t": tenant_id}))


def test_with_statistics_a_batch_of_ids_is_looked_up_by_primary_key(
    sqlite_container: Container,
) -> None:
    container = sqlite_container
    tenant_id = _fill_one_tenant(container, 2_000)
    container.db.refresh_statistics()
    plan = _plan(container, tenant_id)
    # Not a walk through one of the tenant-leading secondary indexes (ix_refunds_tenant_*).
    assert "sqlite_autoindex_refunds_1 (tenant_id=? AND id=?)" in plan, plan


def test_the_worker_refreshes_statistics_periodically(sqlite_container: Container) -> None:
    names = [task.name for task in sqlite_container.periodic]
    assert any("statistics" in name for name in names), names

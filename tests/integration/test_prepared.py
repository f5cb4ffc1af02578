"""Prepared statements on the driver connection store and read values exactly as the ORM does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Table, bindparam, insert, literal, select, text, update
from sqlalchemy.exc import IntegrityError, StatementError

from refunddesk.bootstrap import Container
from refunddesk.core.ids import new_id, new_reference
from refunddesk.db.base import table_of
from refunddesk.db.prepared import Driver, Prepared
from refunddesk.refunds import service
from refunddesk.refunds.orm import Refund, RefundEvent, RefundLine
from refunddesk.tenants.orm import Tenant
from tests.conftest import NOW
from tests.factories import Factory
from tests.integration.support import request


def _stored(container: Container, table: Table, where: str, **params: Any) -> list[dict[str, Any]]:
    """Rows as the database holds them: plain SQL, values exactly as the driver returns them."""
    with container.db.read() as session:
        rows = session.execute(text(f"SELECT * FROM {table.name} WHERE {where}"), params)
        return [dict(row._mapping) for row in rows]


def _comparable(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows without the columns that are unique per refund, in a stable order."""
    unique = {"id", "reference", "idempotency_key", "refund_id"}
    return sorted(({k: v for k, v in row.items() if k not in unique} for row in rows), key=repr)


def _copy_through_the_orm(container: Container, refund_id: str, tenant_id: str) -> str:
    """Store a copy of a refund, its lines and events through the ORM's unit of work."""
    copy_id = new_id()
    with container.db.write() as session:
        original = service.get_refund(session, tenant_id=tenant_id, refund_id=refund_id)
        values = {c.key: getattr(original, c.key) for c in table_of(Refund).columns}
        values.update(id=copy_id, reference=new_reference(), idempotency_key=None)
        session.add(Refund(**values))
        for line in original.lines:
            fields = {c.key: getattr(line, c.key) for c in table_of(RefundLine).columns}
            session.add(RefundLine(**{**fields, "refund_id": copy_id}))
        session.flush()
        events = session.scalars(select(RefundEvent).where(RefundEvent.refund_id == refund_id))
        for event in list(events):
            fields = {c.key: getattr(event, c.key) for c in table_of(RefundEvent).columns}
            session.add(RefundEvent(**{**fields, "id": new_id(), "refund_id": copy_id}))
    return copy_id


def test_intake_on_the_driver_stores_rows_byte_for_byte_as_the_orm_would(
    container: Container, factory: Factory
) -> None:
    # given a refund made by intake (prepared statements: JSON, times, nulls, lines, events)
    tenant = factory.tenant()
    order = factory.order(tenant.id)
    created, _ = request(
        container,
        tenant.id,
        key="k-1",
        order_id=order,
        lines=[{"sku": "SKU-A", "quantity": 1, "condition": "unused"}],
        evidence=["photo"],
        note="bent corner",
    )
    # when the ORM stores a copy of everything it reads back
    copy_id = _copy_through_the_orm(container, created.id, tenant.id)
    # then the database holds the same values for both, column by column
    for table in (table_of(Refund), table_of(RefundLine), table_of(RefundEvent)):
        key = "id" if table.name == "refunds" else "refund_id"
        fast = _stored(container, table, f"{key} = :id", id=created.id)
        orm = _stored(container, table, f"{key} = :id", id=copy_id)
        assert fast, table.name
        for ours, theirs in zip(_comparable(fast), _comparable(orm), strict=True):
            differ = {k: (v, theirs[k]) for k, v in ours.items() if v != theirs[k]}
            assert not differ, (table.name, differ)


def test_the_status_read_on_the_driver_shows_what_the_orm_reads(
    container: Container, factory: Factory
) -> None:
    tenant = factory.tenant()
    order = factory.order(tenant.id)
    created, _ = request(
        container, tenant.id, order_id=order, lines=[{"sku": "SKU-B", "quantity": 1}]
    )
    with container.db.reading() as db:
        fast = service.read_refund(db, tenant_id=tenant.id, refund_id=created.id)
    with container.db.read() as session:
        orm = service.public(
            session, service.get_refund(session, tenant_id=tenant.id, refund_id=created.id)
        )
    assert fast == orm
    assert fast.created_at == NOW
    assert fast.created_at.utcoffset() == timedelta(0)


_TENANT_NOW = Prepared(
    select(Tenant.id, Tenant.created_at, literal("constant").label("tag")).where(
        Tenant.id == bindparam("tenant_id")
    )
)


def test_a_prepared_select_binds_constants_and_returns_aware_utc_times(
    container: Container, factory: Factory
) -> None:
    tenant = factory.tenant()
    with container.db.reading() as db:
        row = db.first(_TENANT_NOW, {"tenant_id": tenant.id})
        missing = db.first(_TENANT_NOW, {"tenant_id": "nobody"})
    assert row is not None
    assert missing is None
    assert (row.id, row.tag) == (tenant.id, "constant")
    assert row.created_at == NOW
    assert row.created_at.utcoffset() == timedelta(0)


def test_a_duplicate_key_on_the_driver_raises_sqlalchemys_integrity_error(
    container: Container, factory: Factory
) -> None:
    # the intake view retries on sqlalchemy's IntegrityError (a concurrent idempotent request)
    tenant = factory.tenant()
    insert_tenant = Prepared(
        insert(table_of(Tenant)).values(
            id=bindparam("id"),
            name="Twin",
            currency="EUR",
            timezone="UTC",
            created_at=bindparam("at"),
        )
    )
    with pytest.raises(IntegrityError), container.db.write() as session:
        Driver.of(session).execute(insert_tenant, {"id": tenant.id, "at": NOW})


def test_statements_whose_sql_depends_on_their_values_are_refused(container: Container) -> None:
    in_list = Prepared(select(Tenant.id).where(Tenant.id.in_(bindparam("ids", expanding=True))))
    with container.db.reading() as db, pytest.raises(ValueError, match="expanding"):
        db.all(in_list, {"ids": ["a"]})


@pytest.mark.parametrize(
    "given",
    [
        datetime(2026, 3, 29, 0, 59, 59, 999999, tzinfo=UTC),
        datetime(2026, 3, 29, 3, 0, 0, 1, tzinfo=ZoneInfo("Europe/Berlin")),
        datetime(999, 1, 1, tzinfo=timezone(timedelta(hours=-5))),
    ],
    ids=["utc", "berlin-after-dst", "year-999-offset"],
)
def test_times_are_stored_as_utc_and_read_back_equal(
    container: Container, factory: Factory, given: datetime
) -> None:
    # The same instant through the ORM and through a prepared statement: equal, sortable text
    # on SQLite (naive UTC), and aware UTC when read back.
    tenant = factory.tenant()
    update_created = Prepared(
        update(table_of(Tenant))
        .where(table_of(Tenant).c.id == bindparam("k_id"))
        .values(created_at=bindparam("at"))
    )
    with container.db.write() as session:
        Driver.of(session).execute(update_created, {"k_id": tenant.id, "at": given})
    with container.db.read() as session:
        read = session.scalar(select(Tenant.created_at).where(Tenant.id == tenant.id))
        raw = session.execute(
            text("SELECT created_at FROM tenants WHERE id = :id"), {"id": tenant.id}
        ).scalar()
    assert read == given
    assert read is not None
    assert read.utcoffset() == timedelta(0)
    if container.db.engine.dialect.name == "sqlite":
        assert raw == given.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f").zfill(26)


def test_a_naive_time_is_refused_before_it_reaches_the_database(
    container: Container, factory: Factory
) -> None:
    tenant = factory.tenant()
    with pytest.raises(StatementError, match="naive datetimes"), container.db.write() as s:
        s.execute(
            update(Tenant).where(Tenant.id == tenant.id).values(created_at=datetime(2026, 1, 1))
        )

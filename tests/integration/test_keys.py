"""keys_in: the same rows as a row-value IN list, found through the index on SQLite."""

from __future__ import annotations

import itertools

from sqlalchemy import Column, Integer, MetaData, String, Table, create_engine, select, tuple_

from refunddesk.db.keys import keys_in, pairs_in

META = MetaData()
ROWS = Table(
    "rows",
    META,
    Column("tenant_id", String, primary_key=True),
    Column("id", Integer, primary_key=True),
    Column("kind", String, primary_key=True),
)


def _engine():  # type: ignore[no-untyped-def]
    engine = create_engine("sqlite://")
    META.create_all(engine)
    with engine.begin() as conn:
        conn.execute(
            ROWS.insert(),
            [
                {"tenant_id": t, "id": i, "kind": k}
                for t, i, k in itertools.product("abc", range(50), ("x", "y"))
            ],
        )
    return engine


def test_the_same_rows_as_a_row_value_in_list() -> None:
    engine = _engine()
    wanted = [("a", 1, "x"), ("a", 7, "y"), ("c", 49, "x"), ("b", 99, "x"), ("c", 3, "y")]
    columns = (ROWS.c.tenant_id, ROWS.c.id, ROWS.c.kind)
    with engine.connect() as conn:
        expected = set(conn.execute(select(*columns).where(tuple_(*columns).in_(wanted))))
        got = set(conn.execute(select(*columns).where(keys_in(columns, wanted))))
        none = list(conn.execute(select(*columns).where(keys_in(columns, []))))
        pairs = set(
            conn.execute(
                select(ROWS.c.tenant_id, ROWS.c.id).where(
                    pairs_in(ROWS.c.tenant_id, ROWS.c.id, [("a", 1), ("b", 2)])
                )
            )
        )
    assert got == expected
    assert len(got) == 4
    assert none == []
    assert pairs == {("a", 1), ("b", 2)}


def test_sqlite_searches_the_index_instead_of_scanning_the_table() -> None:
    engine = _engine()
    columns = (ROWS.c.tenant_id, ROWS.c.id, ROWS.c.kind)
    query = select(ROWS.c.id).where(keys_in(columns, [("a", 1, "x"), ("b", 2, "y")]))
    sql = str(query.compile(engine, compile_kwargs={"literal_binds": True}))
    with engine.connect() as conn:
        plan = " ".join(str(row[-1]) for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}"))
        row_values = str(
            select(ROWS.c.id)
            .where(tuple_(*columns).in_([("a", 1, "x"), ("b", 2, "y")]))
            .compile(engine, compile_kwargs={"literal_binds": True})
        )
        scan = " ".join(
            str(row[-1]) for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {row_values}")
        )
    assert "SEARCH" in plan
    assert "SCAN rows" not in plan
    assert "SCAN rows" in scan  # what keys_in avoids

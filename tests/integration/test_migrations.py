"""The migrations build exactly the schema the models describe, on both databases."""

from __future__ import annotations

from alembic import command
from sqlalchemy import create_engine, inspect

from refunddesk.db.migrate import alembic_config, check, upgrade
from refunddesk.db.models import Base


def test_a_freshly_migrated_database_matches_the_models(database_url: str) -> None:
    check(database_url)  # raises alembic.util.exc.CommandError on any difference


def test_the_migrated_database_has_every_table_of_the_models(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        tables = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert {t.name for t in Base.metadata.sorted_tables} <= tables
    assert "alembic_version" in tables


def test_the_migrations_go_down_to_nothing_and_back_up_cleanly(database_url: str) -> None:
    config = alembic_config(database_url)
    try:
        command.downgrade(config, "base")
        engine = create_engine(database_url)
        try:
            left = set(inspect(engine).get_table_names()) - {"alembic_version"}
        finally:
            engine.dispose()
        assert left == set()
    finally:
        upgrade(database_url)  # leave the (shared, per-worker) database as we found it
    check(database_url)

"""The one installer's view of both packages of SQL: versions, migrations, version queries."""

from __future__ import annotations

import pytest

from orchestrator.db.install import SqlPackage
from orchestrator.db.named_sql import named_queries
from orchestrator.queue.sqlfiles import QUEUE_SQL
from orchestrator.store.install import STORE_SQL, VERSION

VERSION_QUERIES = {
    "version_table",
    "installed_version",
    "record_version",
    "recorded_checksum",
    "record_checksum",
}


@pytest.mark.parametrize("package", [QUEUE_SQL, STORE_SQL], ids=["queue", "store"])
def test_every_package_answers_the_version_queries(package: SqlPackage) -> None:
    assert set(named_queries(package.package)) >= VERSION_QUERIES


def test_the_queue_schema_is_its_latest_version() -> None:
    versions = [m.version for m in QUEUE_SQL.migrations()]
    assert versions == list(range(1, len(versions) + 1))
    assert QUEUE_SQL.base_version() == QUEUE_SQL.latest_version() == versions[-1]
    assert QUEUE_SQL.pending_migrations(QUEUE_SQL.latest_version()) == ()


def test_the_store_schema_is_version_one_and_migrations_follow() -> None:
    assert STORE_SQL.base_version() == 1
    assert all(m.version >= 2 for m in STORE_SQL.migrations())
    assert VERSION == STORE_SQL.latest_version() >= 1
    assert STORE_SQL.pending_migrations(1) == STORE_SQL.migrations()


def test_the_lock_keys_differ() -> None:
    assert QUEUE_SQL.lock_key != STORE_SQL.lock_key
    assert len(QUEUE_SQL.functions_sha256()) == len(STORE_SQL.functions_sha256()) == 64

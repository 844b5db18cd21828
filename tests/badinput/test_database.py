"""Databases that do not answer, DSNs that are not DSNs, databases without the schema.

README, "Exit codes": 3 when the database did not answer, 4 when it is not prepared ("run
orchestrator apply"). Either way one line, within the connect timeout (never a hang), with
the DSN's password hidden, and nothing written.
"""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.badinput.support import (
    DatabaseState,
    assert_refused,
    cli,
    closed_port,
    main,
    silent_server,
)

RUN = str(uuid.UUID(int=7))
COMMANDS = [
    ("status",),
    ("plan",),
    ("apply",),
    ("send", "orders", "{}"),
    ("trace", RUN),
    ("dlq", "list", "orders"),
    ("maintain",),
    ("install",),
    ("queue", "list"),
    ("run", "--drain"),
]
IDS = [" ".join(c) for c in COMMANDS]


@pytest.mark.parametrize("command", COMMANDS, ids=IDS)
def test_a_port_nobody_listens_on(project: Path, command: tuple[str, ...]) -> None:
    dsn = f"postgresql://app:s3cret@127.0.0.1:{closed_port()}/app"
    result = cli(*command, "--dsn", dsn, cwd=project, timeout=60)
    line = assert_refused(result, 3, "cannot connect to postgresql://app:***@127.0.0.1:")
    assert "s3cret" not in result.text, line


def test_a_server_that_never_answers(project: Path) -> None:
    """The TCP handshake succeeds and then nothing: the connect timeout must end it. (The
    commands run side by side: each waits out the whole timeout.)"""
    commands = [("status",), ("send", "orders", "{}"), ("run", "--drain")]
    with silent_server() as port, ThreadPoolExecutor(len(commands)) as pool:
        dsn = f"postgresql://app:s3cret@127.0.0.1:{port}/app"
        results = list(pool.map(lambda c: cli(*c, "--dsn", dsn, cwd=project, timeout=60), commands))
    for result in results:
        assert_refused(result, 3, f"cannot connect to postgresql://app:***@127.0.0.1:{port}/app")
        assert "s3cret" not in result.text


def test_an_unroutable_address(project: Path) -> None:
    """TEST-NET-1 (RFC 5737) is never routed: refused at once or timed out, never a hang."""
    result = cli("status", "--dsn", "postgresql://app:s3cret@192.0.2.1:5432/app", cwd=project)
    assert_refused(result, 3, "cannot connect to postgresql://app:***@192.0.2.1:5432/app")
    assert "s3cret" not in result.text


def test_a_host_that_does_not_resolve(project: Path) -> None:
    result = main("status", "--dsn", "postgresql://app:s3cret@no-such-host.invalid/app")
    assert_refused(result, 3, "cannot connect to postgresql://app:***@no-such-host.invalid/app")
    assert "s3cret" not in result.text


def test_a_database_that_does_not_exist(admin_dsn: str) -> None:
    from tests.support.pg import with_database

    result = main("status", "--dsn", with_database(admin_dsn, "no_such_database_here"))
    assert_refused(result, 3, "no_such_database_here")


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://app:s3cret@127.0.0.1:notaport/app",
        "postgresql://app:s3cret@[::1/app",
        "mysql://app:s3cret@127.0.0.1/app",
        "postgresql://app:s3cret@127.0.0.1:1/app?sslmode=sometimes",
        "not a dsn at all",
    ],
)
def test_a_malformed_dsn_is_one_line(project: Path, dsn: str) -> None:
    """A DSN the driver cannot parse is invalid input: one line, exit 1, password hidden."""
    result = cli("status", "--dsn", dsn, cwd=project)
    assert "s3cret" not in result.text
    assert_refused(result, 1)


def test_a_key_value_dsn_of_a_dead_server_is_one_line(project: Path) -> None:
    """libpq's key=value form is a DSN like a URL: a server that does not answer is exit 3,
    one line, the password hidden."""
    result = cli("status", "--dsn", "host=127.0.0.1 port=1 user=app password=s3cret", cwd=project)
    assert "s3cret" not in result.text
    assert_refused(result, 3)


SCHEMA_COMMANDS = [
    (("status",), 4, "run `orchestrator apply`"),
    (("send", "orders", "{}"), 4, "run orchestrator apply"),
    (("trace", RUN), 4, "run `orchestrator apply`"),
    (("dlq", "list", "orders"), 4, "run `orchestrator apply`"),
    (("dlq", "show", "orders", "1"), 4, "run `orchestrator apply`"),
    (("dlq", "replay", "orders", "--all"), 4, "run `orchestrator apply`"),
    (("dlq", "purge", "orders", "--yes"), 4, "run `orchestrator apply`"),
    (("maintain",), 4, "run `orchestrator apply`"),
    (("queue", "list"), 4, "run `orchestrator install`"),
    (("queue", "metrics"), 4, "run `orchestrator install`"),
    (("queue", "drop", "orders__receive"), 4, "run `orchestrator install`"),
]


@pytest.mark.parametrize(
    ("command", "code", "fragment"),
    SCHEMA_COMMANDS,
    ids=[" ".join(c) for c, _, _ in SCHEMA_COMMANDS],
)
def test_a_database_without_the_schema(
    empty_dsn: str, command: tuple[str, ...], code: int, fragment: str
) -> None:
    before = DatabaseState.read(empty_dsn)
    assert_refused(main(*command, "--dsn", empty_dsn), code, fragment)
    assert before.differences(DatabaseState.read(empty_dsn)) == {}


def test_run_on_a_database_without_the_schema(project: Path, empty_dsn: str) -> None:
    before = DatabaseState.read(empty_dsn)
    result = cli("run", "--drain", "--dsn", empty_dsn, cwd=project)
    assert_refused(result, 4, "run orchestrator apply")
    assert before.differences(DatabaseState.read(empty_dsn)) == {}


def test_run_with_only_the_queue_layer(project: Path, dsn: str) -> None:
    """The queue layer and schema orchestrator are there, the pipelines were never applied."""
    before = DatabaseState.read(dsn)
    result = cli("run", "--drain", "--dsn", dsn, cwd=project)
    assert_refused(result, 4, "pipeline orders is not applied", "run orchestrator apply")
    assert before.differences(DatabaseState.read(dsn)) == {}

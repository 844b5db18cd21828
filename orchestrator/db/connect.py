"""asyncpg connections and pools that speak jsonb through orjson, directly or through a pooler.

The codec is registered once per connection (pool `init`), so every query in the project gets
Python objects for jsonb columns and may pass dicts/lists as jsonb parameters.

Poolers. A pooler in transaction mode (PgBouncer `pool_mode = transaction`, Supavisor, RDS
Proxy) hands each transaction to whichever server connection is free, so nothing may rely on
session state: no named prepared statements (asyncpg's statement cache), no session advisory
locks, no LISTEN, no `SET` without `LOCAL`. How a DSN reaches PostgreSQL is its `PoolMode`:

- the DSN says it, with the query parameter ``pool_mode=transaction`` (or ``session``, or
  ``direct``); the parameter is ours and never reaches the server;
- otherwise the first connection finds out: through a pooler the backend key the server
  announced at login (asyncpg's ``get_server_pid()``) is the pooler's, not the pid of the
  backend that runs our statements. A pooler found this way is taken as transaction mode,
  the safe assumption; ``pool_mode=session`` restores prepared statements and LISTEN.

Behind a transaction pooler connections run every statement unnamed (``statement_cache_size
= 0``, one parse per statement) and skip asyncpg's reset query on release (the pooler resets
server connections; our transactions leave no session state). The runtime asks `pool_mode`
for the rest (upkeep leases instead of session locks, wake-ups on a direct DSN or polling).

TLS: ``sslmode`` (``require``, ``verify-ca``, ``verify-full``), ``sslrootcert``, ``sslcert``
and ``sslkey`` in the DSN go to asyncpg as they are; a refused certificate is one line.

A server that refuses a login for now (``too many clients already``, the reserved slots, a
server still starting: `REFUSED_FOR_NOW`) is waited out when the caller gives `patience`
(seconds, None for as long as it takes): the attempt is repeated after `reconnect_delay`, one
warning per `REFUSED_LOG_INTERVAL` saying so. A worker's pool waits that way, so a fleet larger
than ``max_connections`` queues for connections instead of dying; one-shot commands keep the
default (no patience): a full server is a one-line error at once.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
import orjson

from orchestrator.db.dsn import redact
from orchestrator.errors import ConfigError, DatabaseUnavailable

CONNECT_TIMEOUT = 5.0

RECONNECT_INITIAL = 0.2
RECONNECT_MAX = 30.0

REFUSED_FOR_NOW: tuple[type[BaseException], ...] = (
    asyncpg.TooManyConnectionsError,  # 53300: max_connections or the reserved slots
    asyncpg.CannotConnectNowError,  # 57P03: the server is starting or shutting down
    # The server closed the socket during the login: a full server does that too, when the
    # refusal cannot be sent (seen with 20 workers starting against 100 connections).
    asyncpg.ConnectionDoesNotExistError,
)
"""Login refusals that a later attempt may get past (a server that is not there at all
refuses the socket itself: OSError, never retried here)."""

REFUSED_LOG_INTERVAL = 60.0
"""Seconds between two warnings of a process whose connections are refused for now."""

_log = logging.getLogger(__name__)
_last_refusal_logged = -REFUSED_LOG_INTERVAL


def reconnect_delay(failures: int, *, rand: Callable[[], float] = random.random) -> float:
    """The wait after `failures` database errors in a row (capped exponential, jittered)."""
    wait = min(RECONNECT_MAX, RECONNECT_INITIAL * 2.0 ** min(max(failures, 1) - 1, 20))
    return wait * (0.5 + 0.5 * rand())


def _encode_jsonb(value: Any) -> bytes:
    return b"\x01" + orjson.dumps(value)


def _decode_jsonb(data: bytes) -> Any:
    return orjson.loads(data[1:])


def _encode_json(value: Any) -> str:
    return orjson.dumps(value).decode()


async def init_connection(conn: asyncpg.Connection) -> None:
    """Register the jsonb/json codecs on a fresh connection."""
    await conn.set_type_codec(
        "jsonb",
        encoder=_encode_jsonb,
        decoder=_decode_jsonb,
        schema="pg_catalog",
        format="binary",
    )
    await conn.set_type_codec(
        "json", encoder=_encode_json, decoder=orjson.loads, schema="pg_catalog", format="text"
    )


def _unavailable(dsn: str, exc: BaseException) -> DatabaseUnavailable:
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        reason = f"no answer within {CONNECT_TIMEOUT:g}s"
    else:
        reason = pooler_problem(exc) or str(exc) or type(exc).__name__
    return DatabaseUnavailable(f"cannot connect to {redact(dsn)}: {redact(reason)}")


def _malformed(dsn: str, exc: BaseException) -> ConfigError:
    return ConfigError(f"invalid database URL {redact(dsn)}: {redact(str(exc))}")


_CONNECT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,  # ssl.SSLError (a refused certificate) included
    asyncpg.ProtocolViolationError,  # a pooler refusing the login (its FATAL is 08P01)
    asyncio.TimeoutError,
    asyncpg.InvalidCatalogNameError,
    asyncpg.InvalidPasswordError,
    asyncpg.InvalidAuthorizationSpecificationError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.ConnectionDoesNotExistError,
)


async def connect(
    dsn: str,
    *,
    timeout: float = CONNECT_TIMEOUT,
    patience: float | None = 0.0,
    **kwargs: Any,
) -> asyncpg.Connection:
    """One connection with our codecs; a failure to connect becomes DatabaseUnavailable.

    The first connection to a DSN that does not say its `PoolMode` finds it out (one round
    trip, once per process); found behind a pooler, it is replaced by a pooler-safe one.
    A login refused for now is tried again for up to `patience` seconds (None: no limit).
    """
    target = parse_target(dsn)
    mode = target.mode or _DETECTED.get(target.dsn)
    if mode is None and kwargs.get("server_settings"):  # a pooler would refuse them at login
        mode = await pool_mode(dsn, patience=patience)
    if mode is None:
        conn = await _open(dsn, target.dsn, timeout, kwargs, patience)
        mode = _DETECTED[target.dsn] = await _probe(conn)
        if mode is PoolMode.DIRECT:
            await init_connection(conn)
            return conn
        await conn.close()
    settings = {**connection_settings(mode), **_startup(mode, kwargs)}
    conn = await _open(dsn, target.dsn, timeout, settings, patience)
    await init_connection(conn)
    await _set_in_session(conn, _session_sets(mode, kwargs))
    return conn


async def _open(
    dsn: str,
    real_dsn: str,
    timeout: float,
    kwargs: dict[str, Any],
    patience: float | None = 0.0,
) -> Any:
    try:
        return await patiently(asyncpg.connect, patience, real_dsn, timeout=timeout, **kwargs)
    except _CONNECT_ERRORS as exc:
        raise _unavailable(dsn, exc) from None
    except ValueError as exc:  # a DSN asyncpg cannot parse
        raise _malformed(dsn, exc) from None


async def patiently(
    opener: Callable[..., Awaitable[Any]],
    patience: float | None,
    *args: Any,
    give_up: Callable[[], bool] | None = None,
    **kwargs: Any,
) -> Any:
    """`await opener(*args, **kwargs)`, repeated after a backoff while the server refuses the
    login for now (`REFUSED_FOR_NOW`), for up to `patience` seconds (None: no limit); other
    failures, a refusal past the patience, and a refusal when `give_up()` says so, propagate."""
    deadline = None if patience is None else time.monotonic() + patience
    failures = 0
    while True:
        try:
            return await opener(*args, **kwargs)
        except REFUSED_FOR_NOW as exc:
            failures += 1
            delay = reconnect_delay(failures)
            if deadline is not None and time.monotonic() + delay > deadline:
                raise
            _warn_refused(exc)
            if give_up is not None and give_up():
                raise
            await asyncio.sleep(delay)


def _warn_refused(exc: BaseException) -> None:
    global _last_refusal_logged
    now = time.monotonic()
    if now - _last_refusal_logged >= REFUSED_LOG_INTERVAL:
        _last_refusal_logged = now
        _log.warning(
            "PostgreSQL refused a connection for now (%s); waiting for one "
            "(fewer workers or a larger max_connections avoid the wait)",
            _first_line(str(exc)),
        )


async def create_pool(
    dsn: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    init: Callable[[asyncpg.Connection], Awaitable[None]] | None = None,
    timeout: float = CONNECT_TIMEOUT,
    patience: float | None = 0.0,
    **kwargs: Any,
) -> asyncpg.Pool:
    """A pool whose connections carry our codecs (plus an optional extra `init`); each new
    connection it opens waits out a login refused for now for up to `patience` seconds."""

    async def _init(conn: asyncpg.Connection) -> None:
        await init_connection(conn)
        await _set_in_session(conn, sets)
        if init is not None:
            await init(conn)

    made: list[asyncpg.Pool] = []

    def _idle_here() -> bool:
        # A login refused for now while this pool holds an idle connection: give the empty
        # slot back at once, so that the caller's next acquire takes that connection. Waiting
        # out the refusal in the slot, with a backoff of up to RECONNECT_MAX, left the callers
        # stuck while idle connections of their own pool kept the server's slots (a role
        # allowed 6 connections and 24 consumer loops: stalls of 15-25 s).
        return bool(made) and made[0].get_idle_size() > 0

    async def _connect(*args: Any, **connect_kwargs: Any) -> asyncpg.Connection:
        return await patiently(
            asyncpg.connect, patience, *args, give_up=_idle_here, **connect_kwargs
        )

    target = parse_target(dsn)
    mode = await pool_mode(dsn, patience=patience)
    sets = _session_sets(mode, kwargs)
    settings = {**connection_settings(mode), **_startup(mode, kwargs)}
    settings["connection_class"] = _connection_class(mode, kwargs.get("connection_class"))
    try:
        pool = await asyncpg.create_pool(
            target.dsn,
            min_size=min_size,
            max_size=max_size,
            init=_init,
            timeout=timeout,
            connect=_connect,
            **settings,
        )
    except _CONNECT_ERRORS as exc:
        raise _unavailable(dsn, exc) from None
    except ValueError as exc:
        raise _malformed(dsn, exc) from None
    assert pool is not None
    made.append(pool)
    return pool


# -- poolers -----------------------------------------------------------------------------------

POOL_MODE_PARAMETER = "pool_mode"
"""The DSN query parameter that says how the DSN reaches PostgreSQL (removed before connecting)."""


class PoolMode(Enum):
    """How a DSN reaches PostgreSQL."""

    DIRECT = "direct"
    SESSION = "session"
    """Through a pooler that gives each client one server connection for its whole session."""
    TRANSACTION = "transaction"
    """Through a pooler that may change the server connection after every transaction."""

    @property
    def keeps_session(self) -> bool:
        """Whether session state (prepared statements, LISTEN, session locks) survives."""
        return self is not PoolMode.TRANSACTION


@dataclass(frozen=True)
class Target:
    """A DSN as the user wrote it, split into what asyncpg gets and our pool mode."""

    dsn: str
    """The DSN without our parameter."""
    mode: PoolMode | None
    """The mode the DSN says, None when it says nothing (the first connection finds out)."""


_MODES = ", ".join(m.value for m in PoolMode)
_DETECTED: dict[str, PoolMode] = {}
"""Pool modes found out by a first connection, by DSN (once per process)."""


def parse_target(dsn: str) -> Target:
    """`dsn` without ``pool_mode=...`` and the mode it named; a bad value is a ConfigError."""
    try:
        parts = urlsplit(dsn)
    except ValueError:  # malformed: the driver says what is wrong with it
        return Target(dsn, None)
    if not parts.query or POOL_MODE_PARAMETER not in parts.query:
        return Target(dsn, None)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    values = [v for k, v in pairs if k == POOL_MODE_PARAMETER]
    if not values:
        return Target(dsn, None)
    rest = urlencode([(k, v) for k, v in pairs if k != POOL_MODE_PARAMETER])
    return Target(urlunsplit(parts._replace(query=rest)), _mode(values[-1]))


def _mode(value: str) -> PoolMode:
    try:
        return PoolMode(value.strip().lower())
    except ValueError:
        if value.strip().lower() == "statement":
            raise ConfigError(
                "pool_mode=statement cannot work: a hand-off runs several statements in one "
                "transaction; give orchestrator a pool with pool_mode = transaction (or session)"
            ) from None
        raise ConfigError(
            f"invalid pool_mode={value!r} in the database URL: use {_MODES}"
        ) from None


async def pool_mode(dsn: str, *, patience: float | None = 0.0) -> PoolMode:
    """How `dsn` reaches PostgreSQL: what it says, else what a first connection found out."""
    target = parse_target(dsn)
    mode = target.mode or _DETECTED.get(target.dsn)
    if mode is None:
        conn = await _open(dsn, target.dsn, CONNECT_TIMEOUT, {"statement_cache_size": 0}, patience)
        try:
            mode = _DETECTED[target.dsn] = await _probe(conn)
        finally:
            await conn.close()
    return mode


_PROBE = (
    "DO $$BEGIN IF pg_backend_pid() <> {pid:d} THEN "
    "RAISE EXCEPTION USING ERRCODE = 'OR001'; END IF; END$$"
)


async def _probe(conn: asyncpg.Connection) -> PoolMode:
    """DIRECT when the backend running our statements is the one that announced itself at
    login, else TRANSACTION (a pooler answered the login with a key of its own).

    The check runs as a simple-protocol statement, so it leaves no prepared statement behind
    on a server connection a pooler shares with other clients; the pid is our own integer.
    """
    announced = int(conn.get_server_pid())
    try:
        await conn.execute(_PROBE.format(pid=announced))
    except asyncpg.PostgresError as exc:
        if exc.sqlstate != "OR001":
            raise
        return PoolMode.TRANSACTION
    return PoolMode.DIRECT


CANCEL_SETTLE_TIMEOUT = 5.0
"""Seconds a closing connection behind a pooler waits for its cancel requests to be answered."""


class PooledConnection(asyncpg.Connection):  # type: ignore[misc]
    """A connection behind a transaction pooler.

    - No reset query when a pool takes it back: asyncpg's reset (unlock advisory locks,
      UNLISTEN, RESET ALL) would run on whichever server connection the pooler picks, a round
      trip per release for state we never leave.
    - Closing waits for the cancel requests it sent (a query cancelled at shutdown) to be
      answered: PgBouncer before 1.20 (Debian 12 ships 1.18) exits when a cancel request's
      client goes away before the server answered it (pgbouncer #801, fixed by #846).
    """

    def get_reset_query(self) -> str:
        return ""

    async def close(self, *, timeout: float | None = None) -> None:
        await _settle_cancel_requests(self)
        await super().close(timeout=timeout)


async def _settle_cancel_requests(conn: asyncpg.Connection) -> None:
    """Wait (bounded) for the cancel requests `conn` has in flight. asyncpg keeps them in the
    private `_cancellations` set and cancels them on close; nothing public lists them."""
    pending = [t for t in getattr(conn, "_cancellations", ()) if not t.done()]
    if pending:
        await asyncio.wait(pending, timeout=CANCEL_SETTLE_TIMEOUT)


_POOLER_STARTUP_PARAMETERS = frozenset(
    {"application_name", "client_encoding", "datestyle", "timezone", "standard_conforming_strings"}
)
"""Startup parameters PgBouncer passes on; it refuses a login with any other."""


def _startup(mode: PoolMode, kwargs: dict[str, Any]) -> dict[str, Any]:
    """`kwargs` without the server settings a pooler refuses at login (PgBouncer takes only
    a few startup parameters, whatever its pool mode). Behind a session pooler they are set
    once the session is open (`_session_sets`); behind a transaction pooler, which could not
    keep them for the session anyway, they are left to the database's defaults."""
    settings = kwargs.get("server_settings")
    if mode is PoolMode.DIRECT or not settings:
        return kwargs
    kept = {k: v for k, v in settings.items() if k.lower() in _POOLER_STARTUP_PARAMETERS}
    return {**kwargs, "server_settings": kept}


def _session_sets(mode: PoolMode, kwargs: dict[str, Any]) -> dict[str, str]:
    """The server settings a session pooler refused at login, to SET in the open session."""
    settings: dict[str, str] = kwargs.get("server_settings") or {}
    if mode is not PoolMode.SESSION:
        return {}
    return {k: v for k, v in settings.items() if k.lower() not in _POOLER_STARTUP_PARAMETERS}


async def _set_in_session(conn: asyncpg.Connection, sets: dict[str, str]) -> None:
    for name, value in sets.items():
        await conn.execute("SELECT set_config($1, $2, false)", name, value)


def _connection_class(mode: PoolMode, wanted: type | None) -> type:
    """The connection class of a pool: the caller's, made to behave as a pooler needs too."""
    base: type = connection_settings(mode).get("connection_class", asyncpg.Connection)
    if wanted is None or issubclass(wanted, base):
        return wanted or base
    return type(f"Pooled{wanted.__name__}", (base, wanted), {})


def connection_settings(mode: PoolMode) -> dict[str, Any]:
    """asyncpg connection arguments for `mode`: unnamed statements behind a transaction pooler."""
    if mode.keeps_session:
        return {}
    return {"statement_cache_size": 0, "connection_class": PooledConnection}


# -- problems only the pooler's configuration can fix ---------------------------------------------

_POOLER_PROBLEMS = (
    (
        "prepared statement",
        "the pooler gave this session another server connection under a prepared statement: "
        "it pools transactions; add pool_mode=transaction to the database URL "
        "(or set pool_mode = session for this database in the pooler)",
    ),
    (
        "unsupported startup parameter",
        "the pooler refused a connection parameter; add it to ignore_startup_parameters "
        "in pgbouncer.ini",
    ),
    (
        "no more connections allowed",
        "the pooler is full; raise max_client_conn in pgbouncer.ini or run fewer workers",
    ),
    (
        "transaction blocks not allowed in statement pooling mode",
        "the pooler runs pool_mode = statement, which cannot hold a hand-off's transaction; "
        "set pool_mode = transaction (or session) for this database",
    ),
    (
        "query_wait_timeout",
        "no server connection became free within the pooler's query_wait_timeout; raise "
        "default_pool_size for this database in pgbouncer.ini or run fewer workers",
    ),
)


def pooler_problem(exc: BaseException) -> str | None:
    """One line naming the setting to change, when `exc` is a pooler problem the code cannot
    work around (a prepared statement lost to a transaction pooler, a full pooler...)."""
    if not isinstance(exc, asyncpg.PostgresError | asyncpg.InterfaceError):
        return None
    text = str(exc)
    lost = asyncpg.DuplicatePreparedStatementError | asyncpg.InvalidSQLStatementNameError
    key = "prepared statement" if isinstance(exc, lost) else text
    for marker, advice in _POOLER_PROBLEMS:
        if marker in key:
            return f"{advice} ({_first_line(text)})"
    return None


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text

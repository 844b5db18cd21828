"""asyncpg connections and pools that speak jsonb through orjson.

The codec is registered once per connection (pool `init`), so every query in the project gets
Python objects for jsonb columns and may pass dicts/lists as jsonb parameters.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import orjson

from orchestrator.db.dsn import redact
from orchestrator.errors import ConfigError, DatabaseUnavailable

CONNECT_TIMEOUT = 5.0


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
        reason = str(exc) or type(exc).__name__
    return DatabaseUnavailable(f"cannot connect to {redact(dsn)}: {redact(reason)}")


def _malformed(dsn: str, exc: BaseException) -> ConfigError:
    return ConfigError(f"invalid database URL {redact(dsn)}: {redact(str(exc))}")


_CONNECT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.InvalidCatalogNameError,
    asyncpg.InvalidPasswordError,
    asyncpg.InvalidAuthorizationSpecificationError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.ConnectionDoesNotExistError,
)


async def connect(
    dsn: str, *, timeout: float = CONNECT_TIMEOUT, **kwargs: Any
) -> asyncpg.Connection:
    """One connection with our codecs; a failure to connect becomes DatabaseUnavailable."""
    try:
        conn = await asyncpg.connect(dsn, timeout=timeout, **kwargs)
    except _CONNECT_ERRORS as exc:
        raise _unavailable(dsn, exc) from None
    except ValueError as exc:  # a DSN asyncpg cannot parse
        raise _malformed(dsn, exc) from None
    await init_connection(conn)
    return conn


async def create_pool(
    dsn: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    init: Callable[[asyncpg.Connection], Awaitable[None]] | None = None,
    timeout: float = CONNECT_TIMEOUT,
    **kwargs: Any,
) -> asyncpg.Pool:
    """A pool whose connections carry our codecs (plus an optional extra `init`)."""

    async def _init(conn: asyncpg.Connection) -> None:
        await init_connection(conn)
        if init is not None:
            await init(conn)

    try:
        pool = await asyncpg.create_pool(
            dsn, min_size=min_size, max_size=max_size, init=_init, timeout=timeout, **kwargs
        )
    except _CONNECT_ERRORS as exc:
        raise _unavailable(dsn, exc) from None
    except ValueError as exc:
        raise _malformed(dsn, exc) from None
    assert pool is not None
    return pool

"""Adopt an existing PGMQ (1.x) in place: `orchestrator install --adopt`.

People who run PGMQ keep their queues: every queue table and archive with its rows (msg_id,
read_ct, vt, headers and all), the `meta` rows, topic bindings and insert notifications stay;
PGMQ's functions and types are replaced by the queue layer's. It all happens inside the
installer's one transaction, under its lock:

1. `plan` reads what is there and what stops adoption (a partitioned queue, a queue name the
   layer refuses, a table of another shape, a relation in schema `pgmq` that is not PGMQ's).
   Anything there refuses the whole adoption with the report: nothing is touched.
2. `set_aside` (PGMQ installed as an extension: its tables are detached from the extension and
   the extension dropped first) keeps bindings and throttles aside, drops PGMQ's functions,
   triggers and types, and renames schema `pgmq` to `pgmq_adopted`.
3. The installer creates the queue layer as on an empty database.
4. `bring_back` moves each queue's tables back into `pgmq`, registers the queues and restores
   bindings and notifications; schema `pgmq_adopted` is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from importlib.resources import files

import asyncpg

from orchestrator.db.named_sql import named_queries
from orchestrator.errors import ConfigError
from orchestrator.queue.client import InvalidQueueName, validate_queue_name

_Q = named_queries("orchestrator.queue")


class AdoptionRefused(ConfigError):
    """The PGMQ found cannot be adopted as it is; the message is the report."""


@cache
def _script(name: str) -> str:
    """One of the adoption's scripts, `sql/adopt/<name>.sql`."""
    return (files("orchestrator.queue") / "sql" / "adopt" / f"{name}.sql").read_text("utf-8")


@dataclass
class AdoptionPlan:
    """What adopting the PGMQ in this database keeps, and what stops it."""

    extension: bool = False
    queues: list[str] = field(default_factory=list)
    bindings: list[str] = field(default_factory=list)
    throttles: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The report, one line per change (or per problem), as `install --adopt` prints it."""
        source = "the pgmq extension" if self.extension else "PGMQ installed from its SQL files"
        out = [f"adopting {source} in schema pgmq:"]
        out += [f"  keep queue {line}" for line in self.queues]
        out += [f"  keep topic binding {line}" for line in self.bindings]
        out += [f"  keep insert notifications of {line}" for line in self.throttles]
        out.append(
            "  replace PGMQ's functions and types with the queue layer's; add schema pgmq_ext"
        )
        if self.extension:
            out.append("  detach the queue tables from the extension, then drop the extension")
        return out

    def refusal(self) -> str:
        """One line: every problem, separated by semicolons."""
        problems = "; ".join(self.problems)
        return f"cannot adopt the PGMQ in this database (nothing was changed): {problems}"


async def plan(conn: asyncpg.Connection, *, extension: bool = False) -> AdoptionPlan:
    """Read what adoption would keep and what stops it; changes nothing."""
    found = AdoptionPlan(extension=extension)
    if not await conn.fetchval(_Q["adopt_has_meta"]):
        found.problems.append("schema pgmq has no table meta: this is not PGMQ")
        return found
    if await conn.fetchval(_Q["adopt_has_pgmq_ext"]):
        found.problems.append("schema pgmq_ext exists already: a failed or foreign install?")
    for row in await conn.fetch(_Q["adopt_queues"]):
        await _plan_queue(conn, found, row)
    found.problems += [
        f"{name}: not a PGMQ object; move or drop it first"
        for name in [r["name"] for r in await conn.fetch(_Q["adopt_strays"])]
    ]
    if await conn.fetchval(_Q["adopt_has_bindings"]):
        rows = await conn.fetch(_Q["adopt_bindings"])
        found.bindings = [f"{pattern} -> {queue}" for pattern, queue in rows]
    if await conn.fetchval(_Q["adopt_has_throttles"]):
        rows = await conn.fetch(_Q["adopt_throttles"])
        found.throttles = [f"{queue} ({ms} ms)" for queue, ms in rows]
    return found


async def _plan_queue(conn: asyncpg.Connection, found: AdoptionPlan, row: asyncpg.Record) -> None:
    given, name = row["given"], row["name"]
    try:
        validate_queue_name(name)
    except InvalidQueueName as exc:
        found.problems.append(f"queue {given!r}: a name the queue layer refuses ({exc})")
        return
    if row["is_partitioned"] or not row["plain_tables"]:
        found.problems.append(
            f"queue {name}: partitioned (pg_partman) or its tables are missing; "
            "convert or drop it first"
        )
        return
    if not (row["queue_shape"] and row["archive_shape"]):
        found.problems.append(f"queue {name}: its tables do not have PGMQ's columns")
        return
    counts = []
    for prefix in ("q", "a"):
        query = await conn.fetchval(_Q["adopt_count_sql"], f"{prefix}_{name}")
        counts.append(await conn.fetchval(query))
    kind = "unlogged" if row["is_unlogged"] else "plain"
    found.queues.append(f"{name} ({kind}): {counts[0]} messages, {counts[1]} archived")


async def set_aside(conn: asyncpg.Connection, *, extension: bool) -> AdoptionPlan:
    """Steps 1-2 (see the module): plan, refuse with the report, or set PGMQ aside."""
    found = await plan(conn, extension=extension)
    if found.problems:
        raise AdoptionRefused(found.refusal())
    if extension:
        await conn.execute(_script("detach_extension"))
    await conn.execute(_script("set_aside"))
    return found


async def bring_back(conn: asyncpg.Connection) -> None:
    """Step 4 (see the module): the queues back into the queue layer's schema pgmq."""
    await conn.execute(_script("bring_back"))

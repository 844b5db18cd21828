"""One message at a time: the claim and hand-off of a single message go through the queues'
own fenced functions (lock_owned, move_owned, send), and give exactly what the statements
planned for the call give to a queue without them: the same fence, archive, headers, groups
and joins."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from orchestrator.runtime import handoff, start
from orchestrator.runtime.handoff import Outcomes, StepMessage, StepTarget
from tests.integration.runtime.conftest import Runtime

PIPE = """
pipeline: {name}
queues: {{archive: {{enabled: {archive}}}}}
defaults: {{visibility_timeout: 30s, timeout: 10s}}
steps:
  a: {{handler: t:a, group_by: c, next: [b, c]}}
  b: {{handler: t:b, group_by: order.id, next: d}}
  c: {{handler: t:c, next: d}}
  d: {{handler: t:d}}
"""

FAST_CALLS = ("lock_owned", "move_owned", "send")


async def _functions_called(conn: asyncpg.Connection, pipeline: str) -> set[str]:
    """The per-queue functions of `pipeline`'s queues called in the current transaction (and
    perhaps in earlier ones: the server reports its pending counts, flushed at most once a
    second)."""
    rows = await conn.fetch(
        "SELECT funcname FROM pg_stat_xact_user_functions"
        " WHERE schemaname = 'pgmq_ext' AND split_part(funcname, ':', 2) LIKE $1 || '\\_\\_%'",
        pipeline,
    )
    return {r["funcname"].split(":")[0] for r in rows}


async def _step_once(
    rt: Runtime, pipeline: str, step: str, output: dict[str, Any]
) -> tuple[handoff.Completion, set[str]]:
    """Read, claim and hand off the one message waiting in `step`, as a batch of one; what
    complete did and the per-queue functions the claim and the hand-off called."""
    p = rt.pipelines[pipeline]
    target = StepTarget.of(p, p.step(step))
    [message] = await handoff.read(rt.conn, target.queue, 30, 1)
    stale = StepMessage(message.msg_id, message.read_ct + 1, {}, {}, message.run_id)
    async with rt.conn.transaction():
        await rt.conn.execute("SET LOCAL track_functions = 'all'")
        assert await handoff.claim(rt.conn, target.queue, [stale]) == set()
        assert await handoff.claim(rt.conn, target.queue, [message]) == {message.msg_id}
        lost = Outcomes()
        lost.done(stale, "{}")
        with pytest.raises(asyncpg.ObjectNotInPrerequisiteStateError, match="lease lost"):
            async with rt.conn.transaction():
                await handoff.complete(rt.conn, target, lost)
        done = Outcomes()
        done.done(message, handoff.encode_object(output))
        completion, _ = await handoff.complete(rt.conn, target, done)
        called = await _functions_called(rt.conn, pipeline)
    return completion, called


def _comparable(headers: dict[str, Any]) -> dict[str, Any]:
    """Headers without what differs between two pipelines and two moments."""
    varying = {"run_id", "pipeline", "parent_id", "traceparent", "sent_at", "spec_hash"}
    return {k: v for k, v in headers.items() if k not in varying}


async def _everything(rt: Runtime, name: str) -> list[Any]:
    rows: list[Any] = []
    for step in "abcd":
        for archive in (False, True):
            found = await rt.rows(f"{name}__{step}", archive=archive)
            rows.append([(r["read_ct"], r["message"], _comparable(r["headers"])) for r in found])
    return rows


@pytest.mark.parametrize("archive", ["true", "false"])
async def test_one_message_takes_the_queue_functions_and_gives_what_the_batch_path_gives(
    rt: Runtime, archive: str
) -> None:
    seen: dict[str, list[Any]] = {}
    for name, fast in (("fast", True), ("slow", False)):
        await rt.apply(PIPE.format(name=name, archive=archive))
        if not fast:
            for step in "abcd":
                await rt.conn.execute("SELECT pgmq_ext.drop_queue_functions($1)", f"{name}__{step}")
        run = await start(
            name,
            {"c": "x", "order": {"id": 7}},
            conn=rt.conn,
            headers={"tenant": "acme"},
        )
        results = [await _step_once(rt, name, "a", {"c": "x", "order": {"id": 7}})]
        [b] = await rt.rows(f"{name}__b")
        assert b["headers"]["x-pgmq-group"] == "7"  # b's group_by, from a's output
        assert b["headers"]["tenant"] == "acme"
        [c] = await rt.rows(f"{name}__c")
        assert "x-pgmq-group" not in c["headers"]  # a's own group stays behind
        for step in "bc":
            results.append(await _step_once(rt, name, step, {"from": step}))
        assert [(c.handed_off, c.sent, c.joins_completed) for c, _ in results] == [
            (1, 2, 0),
            (1, 0, 0),
            (1, 0, 1),
        ]
        for step, (_, called) in zip("abc", results, strict=True):
            # a sends to b and c ("send"); b and c arrive at the join d, a batch of its own
            expected = set(FAST_CALLS) if step == "a" else {"lock_owned", "move_owned"}
            assert called.issuperset(expected) if fast else not called & set(FAST_CALLS), step
        [d] = await rt.rows(f"{name}__d")
        assert d["message"] == {"b": {"from": "b"}, "c": {"from": "c"}}
        assert d["headers"]["run_id"] == str(run)
        seen[name] = await _everything(rt, name)
    assert seen["fast"] == seen["slow"]


async def test_the_sixteen_argument_complete_of_the_previous_release_still_hands_off(
    rt: Runtime,
) -> None:
    """Workers of the release before topics call complete() without routing keys; during a
    rolling deploy their hand-offs go on, publishing nothing."""
    await rt.apply("pipeline: old\nsteps:\n  a: {handler: t:a, next: b}\n  b: {handler: t:b}\n")
    run = await start("old", {"n": 1}, conn=rt.conn)
    p = rt.pipelines["old"]
    target = StepTarget.of(p, p.step("a"))
    [message] = await handoff.read(rt.conn, target.queue, 30, 1)
    sixteen = (
        "SELECT * FROM orchestrator.complete("
        " $1::text, $2::text, $3::text::jsonb, $4::boolean, $5::text,"
        " $6::bigint[], $7::integer[], $8::uuid[], $9::text[]::jsonb[],"
        " '{}'::bigint[], '{}'::integer[], '{}'::float8[], '{}'::jsonb[],"
        " '{}'::bigint[], '{}'::integer[], '{}'::jsonb[])"
    )
    async with rt.conn.transaction():
        assert await handoff.claim(rt.conn, target.queue, [message]) == {message.msg_id}
        row = await rt.conn.fetchrow(
            sixteen,
            target.pipeline,
            target.step,
            target.routes,
            target.archive,
            target.dead_letter_queue,
            [message.msg_id],
            [message.read_ct],
            [message.run_id],
            ['{"n": 2}'],
        )
    assert (row["handed_off"], row["sent"], row["retried"], row["dead_lettered"]) == (1, 1, 0, 0)
    assert await rt.count("old__a") == 0
    [b] = await rt.rows("old__b")
    assert b["message"] == {"n": 2} and b["headers"]["run_id"] == str(run)

"""One attempt: run a step's handler on one message and say how it went.

`Invoker.attempt` builds the handler's `StepContext`, runs the handler (awaited, or in a thread
for a plain ``def``) under the step's timeout, and returns an `Attempt`: the output encoded as
JSON text, or the error. It never touches the batch's bookkeeping; the batch decides what an
attempt's result means (`runtime.bookkeeping`).

A timed-out ``async def`` handler is cancelled. A timed-out plain ``def`` handler cannot be: its
thread is abandoned (see `runtime.threads`), the attempt fails with HandlerTimeout, and the
handler can see it through ``ctx.abandoned`` (checked between its own steps of work) before it
does anything a later attempt would do again.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from orchestrator.errors import ContractError, HandlerTimeout, InvalidOutput
from orchestrator.observe import otel
from orchestrator.runtime import handoff
from orchestrator.runtime.context import StepContext
from orchestrator.runtime.contracts import StepContracts
from orchestrator.runtime.handoff import PayloadError, StepMessage
from orchestrator.runtime.lease import Lease
from orchestrator.runtime.threads import Threads
from orchestrator.runtime.timers import Deadline
from orchestrator.spec.handlers import HandlerInfo
from orchestrator.spec.models import ResolvedStep

MessageLogger = Callable[[StepMessage], logging.LoggerAdapter[logging.Logger]]


@dataclass(slots=True)
class Attempt:
    """The result of one attempt: `output` (JSON text) when it succeeded, else `error`."""

    message: StepMessage
    ctx: StepContext
    output: str | None = None
    error: BaseException | None = None
    span: Any = None
    """The attempt's trace span, still open when it failed: `Bookkeeper.failed` ends it with
    what follows (retry or dead letter)."""

    @property
    def ok(self) -> bool:
        return self.error is None


class Invoker:
    """Runs one step's handler; see the module docstring."""

    def __init__(
        self,
        pipeline: str,
        step: ResolvedStep,
        handler: HandlerInfo,
        message_logger: MessageLogger,
        observe: Callable[[float], None] | None = None,
        *,
        contracts: StepContracts | None = None,
    ) -> None:
        self._pipeline = pipeline
        self._contracts = contracts or StepContracts(step.name)
        self._checks_payload = self._contracts.checks_payload
        self._checks_output = self._contracts.checks_output
        self._step = step
        self._handler = handler
        self._message_logger = message_logger
        self._observe = observe
        self.threads = Threads(step.queue)

    @property
    def is_async(self) -> bool:
        return self._handler.is_async

    def context(self, m: StepMessage, conn: Any) -> StepContext:
        step = self._step
        return StepContext(
            run_id=m.run_id,
            pipeline=self._pipeline,
            step=step.name,
            attempt=m.read_ct,
            max_attempts=step.retry.max_attempts,
            message_id=m.msg_id,
            headers=m.headers,
            logger=functools.partial(self._message_logger, m),
            deadline=time.time() + step.timeout,
            conn=conn,
        )

    async def attempt(self, conn: Any, m: StepMessage, lease: Lease, deadline: Deadline) -> Attempt:
        """Run the handler on `m` under `deadline` (the batch's, run by the current task; a
        lost lease expires it too, and the caller checks `lease`)."""
        ctx = self.context(m, conn)
        task = deadline.task
        deadline.arm(self._step.timeout)
        lease.deadline = deadline
        started = time.perf_counter()
        span = otel.start_attempt(ctx.pipeline, ctx.step, m.run_id, m.read_ct, m.msg_id, m.headers)
        try:
            result, error = await self._run(m, ctx, deadline, task)
        finally:
            deadline.disarm()
            lease.deadline = None
            if self._observe is not None:
                self._observe(time.perf_counter() - started)
        if deadline.expired:
            # Our timer cancelled the task (the timeout, or a lost lease): take that request
            # back; another one still pending means we are being cancelled as well.
            if task.uncancel() > 0:
                raise asyncio.CancelledError
            ctx.abandon()
            error = HandlerTimeout(
                f"the handler ran past the step's timeout of {self._step.timeout:g}s"
            )
        found = (
            Attempt(m, ctx, error=error)
            if error is not None
            else self._output(m, ctx, m.body if result is None else result)
        )
        if found.ok:
            otel.end_attempt(span, None)
        found.span = span
        return found

    async def _run(
        self, m: StepMessage, ctx: StepContext, deadline: Deadline, task: asyncio.Task[Any]
    ) -> tuple[Any, BaseException | None]:
        try:
            payload = m.body
            if self._checks_payload:
                payload = self._contracts.payload(m.body, m.headers)  # ContractError: permanent
            if self._handler.is_async:
                return await self._handler.function(payload, ctx), None
            return await self.threads.run(self._sync_call(payload, ctx)), None
        except asyncio.CancelledError as exc:
            if deadline.expired:
                return None, None  # ours: the caller turns it into HandlerTimeout
            if task.cancelling():
                raise  # we are being cancelled
            return None, exc  # the handler's own cancellation, not ours: a failed attempt
        except Exception as exc:
            return None, exc

    def _sync_call(self, payload: Any, ctx: StepContext) -> Callable[[], Any]:
        function = self._handler.function
        if self._handler.takes_context:
            return functools.partial(function, payload, ctx)
        return functools.partial(function, payload)

    def _output(self, m: StepMessage, ctx: StepContext, output: Any) -> Attempt:
        try:
            checked = output
            if self._checks_output or type(output) is not dict:  # a model is dumped too
                checked = self._contracts.output(output)
            return Attempt(m, ctx, output=handoff.encode_object(checked, "handler output"))
        except PayloadError as exc:
            return Attempt(m, ctx, error=InvalidOutput(str(exc)))
        except ContractError as exc:
            return Attempt(m, ctx, error=exc)

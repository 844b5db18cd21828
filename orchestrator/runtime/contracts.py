"""Step contracts at run time: what a message must be before its handler runs, and after.

`StepContracts.of` compiles a step's checks once, when its consumer is built: the step's
effective input (its own ``input``, else what its predecessors promise), and for its outputs
its own ``output``, else the declared ``input`` of each successor that is not a join. The
consumer calls `payload` before the handler (a handler whose first parameter is annotated with
a pydantic model gets an instance) and `output` after it (a returned model is dumped to JSON).
Both raise `ContractError`, which the retry policy treats as permanent: the message goes to the
dead-letter queue at once, naming the JSON pointer and the rule. A message sent under the
worker's own spec hash to a step without an ``input`` of its own is not checked again: its
sender checked it against that very contract.

`check_entry` is what `start()`/`send` run before anything is enqueued.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from orchestrator.errors import ContractError
from orchestrator.spec.contracts import (
    ContractViolation,
    checker,
    effective_input,
    violation_of,
)
from orchestrator.spec.handlers import HandlerInfo
from orchestrator.spec.models import Pipeline

Check = Callable[[Any], None]


@dataclass(frozen=True)
class StepContracts:
    """The compiled checks of one step (see the module docstring)."""

    step: str
    input: Check | None = None
    outputs: tuple[tuple[str, Check], ...] = ()
    model: type[BaseModel] | None = None
    trusted_hash: str | None = None
    """Spec hash of messages whose input need not be checked again: the step declares no
    input of its own, so a sender of this very version checked its output against it."""

    @classmethod
    def of(cls, pipeline: Pipeline, step: str, handler: HandlerInfo | None = None) -> StepContracts:
        wanted = effective_input(pipeline, step)
        own = pipeline.steps[step].input is not None or not pipeline.predecessors(step)
        return cls(
            step=step,
            input=None if wanted is None else checker(wanted),
            outputs=tuple(_output_checks(pipeline, step)),
            model=payload_model(handler.function) if handler is not None else None,
            trusted_hash=None if own else pipeline.spec_hash(),
        )

    @property
    def checks_payload(self) -> bool:
        """Whether `payload` does anything: an input to check or a model to build."""
        return self.input is not None or self.model is not None

    @property
    def checks_output(self) -> bool:
        """Whether `output` checks a dict: a contract applies to the step's outputs."""
        return bool(self.outputs)

    def payload(self, body: Any, headers: Any = None) -> Any:
        """`body` (a message with `headers`) checked against the input, unless a sender of
        this version checked it already; a model instance when the handler wants one."""
        trusted = (
            self.trusted_hash is not None
            and isinstance(headers, dict)
            and headers.get("spec_hash") == self.trusted_hash
        )
        if self.input is not None and not trusted:
            _check(self.input, body, f"the message breaks the input contract of step '{self.step}'")
        if self.model is None:
            return body
        try:
            return self.model.model_validate(body)
        except ValidationError as exc:
            where = f"the message does not fit the handler's model {self.model.__name__}"
            raise ContractError(f"{where} at {violation_of(exc)}") from None

    def output(self, result: Any) -> Any:
        """`result` as JSON-ready data, checked against every contract it must meet."""
        if type(result) is not dict and isinstance(result, BaseModel):
            result = result.model_dump(mode="json")
        for what, check in self.outputs:
            _check(check, result, f"the handler output breaks {what}")
        return result


def check_entry(contract: str | dict[str, Any], payloads: Sequence[Any], where: str) -> None:
    """Raise `ContractError` for the first payload that breaks the entry step's input."""
    check = checker(contract)
    for index, payload in enumerate(payloads):
        what = "the payload" if len(payloads) == 1 else f"payload {index + 1} of {len(payloads)}"
        _check(check, payload, f"{what} breaks the input contract of {where}")


def payload_model(function: Callable[..., Any]) -> type[BaseModel] | None:
    """The pydantic model the handler's first parameter is annotated with, if any."""
    try:
        first = next(iter(inspect.signature(function).parameters.values()), None)
        hints = typing.get_type_hints(function)
    except (TypeError, ValueError, NameError):
        return None
    hint = hints.get(first.name) if first is not None else None
    return hint if isinstance(hint, type) and issubclass(hint, BaseModel) else None


def _output_checks(pipeline: Pipeline, step: str) -> list[tuple[str, Check]]:
    own = pipeline.steps[step].output
    if own is not None:
        return [(f"the output contract of step '{step}'", checker(own))]
    return [
        (f"the input contract of step '{name}'", checker(wanted))
        for name in pipeline.successors(step)
        if not pipeline.is_join(name) and (wanted := pipeline.steps[name].input) is not None
    ]


def _check(check: Check, value: Any, what: str) -> None:
    try:
        check(value)
    except ContractViolation as exc:
        raise ContractError(f"{what} at {exc}") from None

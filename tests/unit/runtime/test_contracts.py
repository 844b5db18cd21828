"""StepContracts without a database: what is checked before and after a handler."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from orchestrator.errors import ContractError
from orchestrator.runtime.contracts import StepContracts, payload_model
from orchestrator.spec import parse_pipeline

PIPELINE = parse_pipeline(
    "pipeline: p\nsteps:\n"
    "  a:\n    handler: m:a\n    input: {type: object, required: [id]}\n"
    "    output: {type: object, properties: {id: {type: integer}}, required: [id]}\n"
    "    next: [b, c]\n"
    "  b: {handler: m:b}\n"
    "  c:\n    handler: m:c\n    input: {type: object, properties: {id: {type: integer}}}\n",
    Path("p.yaml"),
)
SAME = {"spec_hash": PIPELINE.spec_hash()}


def test_a_default_input_sent_under_this_version_is_not_checked_again() -> None:
    b = StepContracts.of(PIPELINE, "b")
    assert b.payload({"id": "x"}, SAME) == {"id": "x"}  # its sender checked it already
    with pytest.raises(ContractError, match=r"input contract of step 'b' at /id: must be integer"):
        b.payload({"id": "x"}, {"spec_hash": "another version"})
    with pytest.raises(ContractError):
        b.payload({"id": "x"}, None)  # sent by hand


def test_a_declared_input_is_always_checked() -> None:
    with pytest.raises(ContractError, match=r"step 'a' at /id: is missing"):
        StepContracts.of(PIPELINE, "a").payload({}, SAME)
    with pytest.raises(ContractError, match=r"step 'c' at /id: must be integer"):
        StepContracts.of(PIPELINE, "c").payload({"id": "x"}, SAME)


def test_outputs_meet_the_own_output_else_each_declared_successor_input() -> None:
    with pytest.raises(ContractError, match=r"output contract of step 'a' at /id"):
        StepContracts.of(PIPELINE, "a").output({"id": "1"})
    assert StepContracts.of(PIPELINE, "b").output({"anything": 1}) == {"anything": 1}


class Item(BaseModel):
    id: int


def typed(payload: Item, ctx: Any) -> Item:
    return payload


def test_a_model_annotation_is_found_and_returned_models_are_dumped() -> None:
    assert payload_model(typed) is Item
    assert payload_model(lambda payload, ctx: None) is None
    contracts = StepContracts(step="s", model=Item)
    assert contracts.payload({"id": 3}) == Item(id=3)
    assert contracts.output(Item(id=4)) == {"id": 4}
    with pytest.raises(ContractError, match=r"model Item at /id"):
        contracts.payload({"id": "four"})

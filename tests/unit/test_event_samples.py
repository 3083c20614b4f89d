"""The sample events of tests/events against the models, and the state machine's paths against the models."""

from __future__ import annotations

import re
from typing import Any

import pytest
from pydantic import BaseModel

from dbexport.aws import contract
from tests.events import MODELS, SAMPLES, sample
from tests.infra.test_asl import DEFINITION, walk

LAMBDA_INVOKE = "arn:aws:states:::lambda:invoke"


def function_of(state: dict[str, Any]) -> str:
    """The function a Lambda task invokes: `${CheckAccessFunctionArn}` -> check_access."""
    match = re.fullmatch(r"\$\{(\w+)FunctionArn\}", state["Parameters"]["FunctionName"])
    assert match, state["Parameters"]["FunctionName"]
    return re.sub(r"(?<!^)(?=[A-Z])", "_", match[1]).lower()


def lambda_states() -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """Each function's task state, and the fields its event gets: its Payload, or its Map's ItemSelector."""
    found = {}
    for scope, _, state, _ in walk(DEFINITION["States"]):
        if state.get("Resource") == LAMBDA_INVOKE:
            payload = state["Parameters"].get("Payload")
            if payload is None:  # "Payload.$": "$": the item the Map's ItemSelector made
                payload = DEFINITION["States"][scope.rstrip("/")]["ItemSelector"]
            found[function_of(state)] = (state, payload)
    return found


def fields(model: type[BaseModel]) -> set[str]:
    """The names a model has on the wire (its aliases, where it has them)."""
    return {field.alias or name for name, field in model.model_fields.items()}


def required(model: type[BaseModel]) -> set[str]:
    return {field.alias or name for name, field in model.model_fields.items() if field.is_required()}


def test_every_function_has_a_sample_and_models() -> None:
    assert set(lambda_states()) == set(contract.FUNCTIONS) == set(MODELS)
    assert {p.stem for p in SAMPLES.glob("*.json")} == set(contract.FUNCTIONS)


@pytest.mark.parametrize("function", contract.FUNCTIONS)
def test_each_sample_validates_against_its_event_model(function: str) -> None:
    event_model, _ = MODELS[function]
    event = event_model.model_validate(sample(function))
    # Nothing in the sample is left unread.
    assert event.model_dump(mode="json", by_alias=True, exclude_unset=True) == sample(function)


@pytest.mark.parametrize("function", contract.FUNCTIONS)
def test_the_state_machine_passes_each_function_its_event_fields(function: str) -> None:
    _, payload = lambda_states()[function]
    passed = {key.removesuffix(".$") for key in payload}
    event_model, _ = MODELS[function]
    assert required(event_model) <= passed <= fields(event_model)


@pytest.mark.parametrize("function", contract.FUNCTIONS)
def test_what_the_state_machine_selects_from_each_result_is_a_field_of_its_model(function: str) -> None:
    state, _ = lambda_states()[function]
    _, result_model = MODELS[function]
    selected = {path.removeprefix("$.Payload.") for path in state.get("ResultSelector", {}).values()}
    if result_model is None:
        assert state["ResultPath"] is None and not selected
    else:
        assert selected and selected <= fields(result_model)

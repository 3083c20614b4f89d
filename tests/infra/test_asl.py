"""statemachine/export.asl.json against the stack and the core: substitutions, transitions, retries, cleanup."""

from __future__ import annotations

import importlib
import json
import pkgutil
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

import dbexport
from dbexport import events
from dbexport.aws.contract import RESULTS_PREFIX
from dbexport.errors import RetryableError
from stacks.constructs.state_machine import ASL

if TYPE_CHECKING:
    from tests.infra.conftest import Synthesized

TEXT = ASL.read_text()
DEFINITION: dict[str, Any] = json.loads(TEXT)
# AWS's advice for lambda:invoke: retry these, the Lambda service's own transient failures.
LAMBDA_TRANSIENT = {
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
}
FAILING_TYPES = ("Task", "Map", "Parallel")
CLEANUP = "Cleanup"


def walk(states: dict[str, Any], scope: str = "") -> Iterator[tuple[str, str, dict[str, Any], dict[str, Any]]]:
    """(scope, name, state, sibling states) for every state, nested Map and Parallel states too."""
    for name, state in states.items():
        yield scope, name, state, states
        if "ItemProcessor" in state or "Iterator" in state:
            processor = state.get("ItemProcessor") or state["Iterator"]
            yield from walk(processor["States"], f"{scope}{name}/")
        for i, branch in enumerate(state.get("Branches", [])):
            yield from walk(branch["States"], f"{scope}{name}[{i}]/")


def transitions(state: dict[str, Any]) -> list[str]:
    """Every state this one can go to: Next, Choice rules and Default, Catch targets."""
    targets = [state["Next"]] if "Next" in state else []
    targets += [choice["Next"] for choice in state.get("Choices", [])]
    targets += [state["Default"]] if "Default" in state else []
    targets += [catcher["Next"] for catcher in state.get("Catch", [])]
    return targets


def reachable(states: dict[str, Any], start: str, *, stop: str | None = None) -> set[str]:
    """States reachable from start by any transition, not going past stop."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        if name != stop:
            todo += transitions(states[name])
    return seen


def retry_errors(state: dict[str, Any]) -> set[str]:
    return {error for retrier in state.get("Retry", []) for error in retrier["ErrorEquals"]}


def test_every_placeholder_has_a_substitution_and_every_substitution_is_used(default_stack: Synthesized) -> None:
    placeholders = set(re.findall(r"\$\{(\w+)\}", TEXT))
    (machine,) = default_stack.resources("AWS::StepFunctions::StateMachine").values()
    substitutions = set(machine["Properties"]["DefinitionSubstitutions"])
    assert placeholders - substitutions == set(), "placeholders the stack does not fill"
    assert substitutions - placeholders == set(), "substitutions the definition does not use"


def test_every_transition_target_exists() -> None:
    assert DEFINITION["StartAt"] in DEFINITION["States"]
    for scope, name, state, siblings in walk(DEFINITION["States"]):
        for target in transitions(state):
            assert target in siblings, f"{scope}{name} goes to missing state {target}"
        for nested in [state.get("ItemProcessor") or state.get("Iterator"), *state.get("Branches", [])]:
            if nested:
                assert nested["StartAt"] in nested["States"], f"{scope}{name}: StartAt {nested['StartAt']}"
        terminal = state["Type"] in ("Succeed", "Fail") or state.get("End") is True
        assert terminal or "Next" in state or state["Type"] == "Choice", f"{scope}{name} has no way on"


def test_every_state_is_reachable() -> None:
    assert reachable(DEFINITION["States"], DEFINITION["StartAt"]) == set(DEFINITION["States"])


@pytest.mark.parametrize(
    "name", [f"{scope}{name}" for scope, name, state, _ in walk(DEFINITION["States"]) if state["Type"] == "Task"]
)
def test_every_task_retries_transient_failures(name: str) -> None:
    state = {f"{scope}{n}": s for scope, n, s, _ in walk(DEFINITION["States"])}[name]
    errors = retry_errors(state)
    # Every AWS call can be throttled or hit a service error for a moment.
    assert errors, f"{name} has no Retry"
    if state["Resource"].startswith("arn:aws:states:::lambda:invoke"):
        assert LAMBDA_TRANSIENT <= errors, f"{name} does not retry {sorted(LAMBDA_TRANSIENT - errors)}"
    for retrier in state["Retry"]:
        assert retrier.get("BackoffRate", 2.0) > 1 and retrier.get("MaxAttempts", 3) >= 1, name


def _all_retryable_errors() -> set[str]:
    """Every RetryableError subclass in the core (all its modules imported), by the name Lambda reports."""
    for module in pkgutil.walk_packages(dbexport.__path__, "dbexport."):
        importlib.import_module(module.name)
    found: set[str] = set()
    todo: list[type] = [RetryableError]
    while todo:
        cls = todo.pop()
        found.add(cls.__name__)
        todo += cls.__subclasses__()
    return found


def test_every_retryable_error_is_retried_somewhere() -> None:
    retried = {error for _, _, state, _ in walk(DEFINITION["States"]) for error in retry_errors(state)}
    retryable = _all_retryable_errors()
    assert "SourceUnavailable" in retryable
    assert retryable - retried == set(), "RetryableError subclasses that no Retry names"


def test_every_failure_after_validation_reaches_cleanup() -> None:
    states = DEFINITION["States"]
    start = DEFINITION["StartAt"]
    # A refused request (ValidateRequest fails) has nothing to clean up; from then on, a clone may exist.
    after_validation = reachable(states, states[start]["Next"], stop=CLEANUP) - {CLEANUP}
    assert CLEANUP in reachable(states, start)
    for name in sorted(after_validation):
        state = states[name]
        assert state["Type"] != "Fail", f"{name} fails before Cleanup"
        assert state["Type"] != "Succeed", f"{name} succeeds without Cleanup"
        if state["Type"] == "Choice":
            assert "Default" in state, f"{name}: no Default, so States.NoChoiceMatched would skip Cleanup"
        if state["Type"] in FAILING_TYPES:
            catchers = state.get("Catch", [])
            caught = {error for catcher in catchers for error in catcher["ErrorEquals"]}
            assert "States.ALL" in caught, f"{name} can fail without a Catch, skipping Cleanup"
            for catcher in catchers:
                assert CLEANUP in reachable(states, catcher["Next"]), f"{name}'s Catch never reaches Cleanup"
        assert CLEANUP in reachable(states, name), f"{name} never reaches Cleanup"


def test_distributed_map_reads_and_writes_the_work_bucket() -> None:
    (name,) = [n for n, s in DEFINITION["States"].items() if s["Type"] == "Map"]
    state = DEFINITION["States"][name]
    assert state["ItemProcessor"]["ProcessorConfig"]["Mode"] == "DISTRIBUTED"
    assert state["ItemReader"]["Resource"] == "arn:aws:states:::s3:getObject"
    assert state["ItemReader"]["Parameters"]["Bucket"] == "${WorkBucketName}"
    assert state["ResultWriter"]["Resource"] == "arn:aws:states:::s3:putObject"
    assert state["ResultWriter"]["Parameters"]["Bucket"] == "${WorkBucketName}"
    # the stack's grants and lifecycle rule cover results/...
    prefix = state["ResultWriter"]["Parameters"].get("Prefix") or state["ResultWriter"]["Parameters"]["Prefix.$"]
    assert re.match(rf"^(States\.Format\(')?{RESULTS_PREFIX.rstrip('/')}(/|'|$)", prefix), prefix
    assert state["MaxConcurrencyPath"]


def test_task_end_event_has_the_source_and_detail_type_of_dbexport_events() -> None:
    entries = [
        entry
        for _, _, state, _ in walk(DEFINITION["States"])
        if state.get("Resource") == "arn:aws:states:::events:putEvents"
        for entry in state["Parameters"]["Entries"]
    ]
    assert entries
    for entry in entries:
        assert (entry["Source"], entry["DetailType"]) == (events.SOURCE, events.DETAIL_TYPE)

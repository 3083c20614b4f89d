"""The optional EventBridge rule that starts an export on a schedule (scheduleExpression, scheduleInput)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets

if TYPE_CHECKING:
    from aws_cdk import Stack
    from aws_cdk import aws_stepfunctions as sfn

    from stacks.config import ScheduleSettings


def add_schedule(stack: Stack, machine: sfn.StateMachine, schedule: ScheduleSettings) -> events.Rule:
    """Create the rule directly in the stack, where deployed stacks have it (same logical IDs)."""
    return events.Rule(
        stack,
        "Schedule",
        description="Starts a dbexport export on a schedule (scheduleExpression, scheduleInput)",
        schedule=events.Schedule.expression(schedule.expression),
        targets=[targets.SfnStateMachine(machine, input=events.RuleTargetInput.from_object(schedule.input))],
    )

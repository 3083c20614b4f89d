"""The stack's settings, read from CDK context (cdk.json defaults, `cdk synth -c key=value` overrides)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from constructs import Node

SourceMode = Literal["clone", "direct"]

_SECRET_ARN = re.compile(r"^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:.+-[A-Za-z0-9]{6}$")
# EC2 ids: a prefix and 8 or 17 hex digits (what CloudFormation accepts).
_VPC_ID = re.compile(r"^vpc-([0-9a-f]{8}|[0-9a-f]{17})$")
_SUBNET_ID = re.compile(r"^subnet-([0-9a-f]{8}|[0-9a-f]{17})$")
_SG_ID = re.compile(r"^sg-([0-9a-f]{8}|[0-9a-f]{17})$")
# A Distributed Map runs at most 10,000 child executions at once.
MAX_MAP_CONCURRENCY = 10_000


class ConfigError(ValueError):
    """A context value that cannot be deployed; the message names the -c option to fix."""


@dataclass(frozen=True)
class VpcSettings:
    """Where the functions that connect to the database run."""

    vpc_id: str
    subnet_ids: tuple[str, ...]
    security_group_id: str


@dataclass(frozen=True)
class ScheduleSettings:
    """An EventBridge rule that starts an export on a schedule."""

    expression: str
    input: dict[str, Any]


@dataclass(frozen=True)
class ExportStackProps:
    """Everything the stack can be told; defaults are cdk.json's."""

    # None: log in with each source cluster's own master user secret (RDS-managed, `rds!cluster-...`).
    source_secret_arn: str | None = None
    source_mode: SourceMode = "clone"
    vpc: VpcSettings | None = None
    max_concurrency: int = 100
    max_unfinished_tasks: int = 5
    log_level: str = "INFO"
    schedule: ScheduleSettings | None = None

    def __post_init__(self) -> None:
        if self.source_secret_arn is not None and not _SECRET_ARN.match(self.source_secret_arn):
            raise ConfigError(
                f"sourceSecretArn {self.source_secret_arn!r} is not a complete Secrets Manager secret ARN "
                "(arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME-XXXXXX, as `aws secretsmanager "
                "describe-secret` prints it): pass -c sourceSecretArn=..."
            )
        if self.source_mode not in ("clone", "direct"):
            raise ConfigError(f"sourceMode must be 'clone' or 'direct', not {self.source_mode!r}")
        if not 1 <= self.max_concurrency <= MAX_MAP_CONCURRENCY:
            raise ConfigError(f"maxConcurrency must be 1 to {MAX_MAP_CONCURRENCY}, not {self.max_concurrency}")
        if self.max_unfinished_tasks < 1:
            raise ConfigError(f"maxUnfinishedTasks must be at least 1, not {self.max_unfinished_tasks}")
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ConfigError(f"logLevel must be DEBUG, INFO, WARNING, ERROR or CRITICAL, not {self.log_level!r}")

    @classmethod
    def from_context(cls, node: Node) -> ExportStackProps:
        """Read the props from an app's context; raise ConfigError naming the -c option that is wrong."""

        def get(key: str) -> Any:
            return node.try_get_context(key)

        vpc_id = _text(get("vpcId"))
        subnet_ids = _string_list(get("subnetIds"))
        sg_id = _text(get("securityGroupId"))
        vpc = None
        if vpc_id or subnet_ids or sg_id:
            if not (vpc_id and subnet_ids and sg_id):
                raise ConfigError("vpcId, subnetIds and securityGroupId go together: give all three or none")
            if not _VPC_ID.match(vpc_id):
                raise ConfigError(f"vpcId {vpc_id!r} is not a VPC id (vpc-...)")
            for subnet in subnet_ids:
                if not _SUBNET_ID.match(subnet):
                    raise ConfigError(f"subnetIds: {subnet!r} is not a subnet id (subnet-...)")
            if not _SG_ID.match(sg_id):
                raise ConfigError(f"securityGroupId {sg_id!r} is not a security group id (sg-...)")
            vpc = VpcSettings(vpc_id, tuple(subnet_ids), sg_id)

        schedule = None
        expression = _text(get("scheduleExpression"))
        schedule_input = _json_object(get("scheduleInput"), "scheduleInput")
        if expression:
            schedule = ScheduleSettings(expression, _checked_schedule_input(schedule_input))
        elif schedule_input:
            raise ConfigError("scheduleInput is set but scheduleExpression is not: give both, e.g. cron(0 3 * * ? *)")

        defaults = cls()
        return cls(
            source_secret_arn=_text(get("sourceSecretArn")) or None,
            source_mode=_text(get("sourceMode")) or defaults.source_mode,  # type: ignore[arg-type]
            vpc=vpc,
            max_concurrency=_int(get("maxConcurrency"), "maxConcurrency", defaults.max_concurrency),
            max_unfinished_tasks=_int(get("maxUnfinishedTasks"), "maxUnfinishedTasks", defaults.max_unfinished_tasks),
            log_level=(_text(get("logLevel")) or defaults.log_level).upper(),
            schedule=schedule,
        )


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _string_list(value: Any) -> list[str]:
    """A list from cdk.json, or `-c subnetIds=subnet-a,subnet-b` (a string), or a JSON list string."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            value = json.loads(text)
        else:
            return [part.strip() for part in text.split(",") if part.strip()]
    if not isinstance(value, list):
        raise ConfigError(f"expected a list of ids, got {value!r}")
    return [str(item).strip() for item in value if str(item).strip()]


def _int(value: Any, key: str, default: int) -> int:
    if value is None or value == "":
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key} must be a whole number, not {value!r}") from None


def _json_object(value: Any, key: str) -> dict[str, Any]:
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{key} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{key} must be a JSON object, not {value!r}")
    return value


def _checked_schedule_input(value: dict[str, Any]) -> dict[str, Any]:
    # An identifier is unique for ever, so a fixed one would fail from the second run on.
    if "ExportTaskIdentifier" in value:
        raise ConfigError(
            "scheduleInput must give ExportTaskIdentifierPrefix, not ExportTaskIdentifier: each run needs a new "
            "identifier, which ValidateRequest makes from the prefix"
        )
    if not value.get("ExportTaskIdentifierPrefix"):
        raise ConfigError("scheduleInput needs ExportTaskIdentifierPrefix (and the StartExportTask fields)")
    return value

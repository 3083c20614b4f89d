"""dbexport's JSON and errors against botocore's own RDS service model: what scripts written for the AWS CLI read."""

from __future__ import annotations

import inspect
import json
import re
from datetime import UTC, datetime
from typing import Any

import botocore.session
import pytest
from pydantic.alias_generators import to_pascal

from dbexport import errors
from dbexport.models import ExportSettings, ExportTask, Status
from dbexport.tasks.sqlite import SqliteTaskStore
from tests.helpers import cancel_task, database_of, describe_tasks, execute, start_task

MODEL = botocore.session.get_session().get_service_model("rds")
OPERATIONS = ("StartExportTask", "DescribeExportTasks", "CancelExportTask")


def output_shape(operation: str) -> Any:
    return MODEL.operation_model(operation).output_shape


def documented_codes(shape: Any) -> set[str]:
    """Values a string member lists in its documentation (`<code>X</code>`), for members the model gives no enum."""
    return set(re.findall(r"<code>([A-Z_]+)</code>", shape.documentation or ""))


def shape_errors(value: Any, shape: Any, path: str = "$") -> list[str]:
    """Everything in `value` that the botocore shape does not allow; empty when it conforms."""
    kind = shape.type_name
    problems: list[str] = []
    if kind == "structure":
        if not isinstance(value, dict):
            return [f"{path}: a structure, got {type(value).__name__}"]
        problems += [f"{path}.{name}: not a member of {shape.name}" for name in set(value) - set(shape.members)]
        problems += [f"{path}.{name}: required" for name in shape.required_members if name not in value]
        for name, member in value.items():
            if name in shape.members:
                problems += shape_errors(member, shape.members[name], f"{path}.{name}")
    elif kind == "list":
        if not isinstance(value, list):
            return [f"{path}: a list, got {type(value).__name__}"]
        for i, item in enumerate(value):
            problems += shape_errors(item, shape.member, f"{path}[{i}]")
    elif kind == "string":
        if not isinstance(value, str):
            return [f"{path}: a string, got {type(value).__name__}"]
        if shape.enum and value not in shape.enum:
            problems.append(f"{path}: {value!r} is not one of {shape.enum}")
        if not shape.enum and (listed := documented_codes(shape)) and value not in listed:
            problems.append(f"{path}: {value!r} is not one of the documented {sorted(listed)}")
        if "min" in shape.metadata and len(value) < shape.metadata["min"]:
            problems.append(f"{path}: shorter than {shape.metadata['min']}")
        if "max" in shape.metadata and len(value) > shape.metadata["max"]:
            problems.append(f"{path}: longer than {shape.metadata['max']}")
    elif kind in ("integer", "long"):
        if not isinstance(value, int) or isinstance(value, bool):
            return [f"{path}: an integer, got {value!r}"]
        if "min" in shape.metadata and value < shape.metadata["min"]:
            problems.append(f"{path}: below {shape.metadata['min']}")
        if "max" in shape.metadata and value > shape.metadata["max"]:
            problems.append(f"{path}: above {shape.metadata['max']}")
    elif kind == "boolean":
        if not isinstance(value, bool):
            problems.append(f"{path}: a boolean, got {value!r}")
    elif kind == "timestamp":
        # The AWS CLI prints timestamps as ISO 8601 with their offset.
        try:
            parsed = datetime.fromisoformat(value) if isinstance(value, str) else None
        except ValueError:
            parsed = None
        if parsed is None or parsed.tzinfo is None:
            problems.append(f"{path}: not an ISO 8601 timestamp with an offset: {value!r}")
    elif kind in ("double", "float"):
        if not isinstance(value, int | float) or isinstance(value, bool):
            problems.append(f"{path}: a number, got {value!r}")
    else:
        problems.append(f"{path}: no check for the shape type {kind}")
    return problems


def assert_conforms(operation: str, value: Any) -> None:
    assert shape_errors(value, output_shape(operation)) == [], json.dumps(value, indent=2)


# --- The validator itself ------------------------------------------------------------------------------------


def test_the_validator_catches_what_breaks_a_script():
    good = {"ExportTaskIdentifier": "x", "Status": "COMPLETE", "PercentProgress": 100, "SourceType": "CLUSTER"}
    assert shape_errors(good, output_shape("CancelExportTask")) == []
    broken = {
        "ExportTaskIdentifier": 1,
        "Status": "DONE",
        "PercentProgress": "100",
        "SourceType": "cluster",
        "TaskStartTime": "yesterday",
        "SnapshotTime": "2024-01-01T00:00:00",  # no offset
        "ExportOnly": "db",
        "Extra": True,
    }
    found = "\n".join(shape_errors(broken, output_shape("StartExportTask")))
    for path in ("ExportTaskIdentifier", "Status", "PercentProgress", "SourceType", "TaskStartTime", "SnapshotTime"):
        assert f"$.{path}:" in found
    assert "$.ExportOnly: a list" in found and "$.Extra: not a member" in found
    page = {"ExportTasks": [good, {"Status": 3}], "Marker": None}
    assert [p.split(":")[0] for p in shape_errors(page, output_shape("DescribeExportTasks"))] == [
        "$.ExportTasks[1].Status",
        "$.Marker",
    ]


def test_every_field_of_the_export_task_shape_is_a_field_of_dbexports_task():
    fields = {ExportTask.model_fields[name].alias or to_pascal(name) for name in ExportTask.model_fields}
    assert fields == set(MODEL.shape_for("ExportTask").members)
    assert {s.value for s in Status} == documented_codes(MODEL.shape_for("ExportTask").members["Status"])


# --- Real CLI output -----------------------------------------------------------------------------------------


@pytest.fixture
def exported(source, tmp_path, state_dir) -> dict[str, Any]:
    """The CLI's output for each operation, from real tasks."""
    execute(
        source,
        "CREATE TABLE t (id int PRIMARY KEY, at timestamptz DEFAULT now()); INSERT INTO t (id) VALUES (1), (2);"
        "CREATE UNLOGGED TABLE scratch (id int);",
    )
    outputs: dict[str, Any] = {}
    result = start_task("shape-ok", source, (tmp_path / "ok").as_uri(), "--s3-prefix", "p", "--wait")
    assert result.returncode == 0, result.stderr
    outputs["complete"] = json.loads(result.stdout)
    only = f"{database_of(source)}.public.nope"
    result = start_task("shape-failed", source, (tmp_path / "f").as_uri(), "--export-only", only, "--wait")
    assert result.returncode == 1, result.stderr
    outputs["failed"] = json.loads(result.stdout)
    store = SqliteTaskStore(state_dir / "tasks.sqlite3", max_unfinished=100)
    for n in range(20):
        task = ExportTask(
            export_task_identifier=f"shape-{n}",
            source_arn=f"postgresql://h{n}/db",
            s3_bucket="file:///tmp/b",
            task_start_time=datetime.now(UTC),
        )
        store.create(task, ExportSettings())
    result = cancel_task("shape-19")
    assert result.returncode == 0, result.stderr
    outputs["cancel"] = json.loads(result.stdout)
    outputs["first page"] = describe_tasks("--max-records", "20")
    outputs["last page"] = describe_tasks("--max-records", "20", "--marker", outputs["first page"]["Marker"])
    return outputs


def test_cli_output_conforms_to_botocores_output_shapes(exported):
    complete, failed, cancel = exported["complete"], exported["failed"], exported["cancel"]
    assert complete["Status"] == "COMPLETE" and "WarningMessage" in complete
    assert json.loads(complete["WarningMessage"])["skippedTables"][0]["reason"] == "UNLOGGED_TABLE"
    assert failed["Status"] == "FAILED" and "FailureCause" in failed
    assert cancel["Status"] == "CANCELING"
    first, last = exported["first page"], exported["last page"]
    assert len(first["ExportTasks"]) == 20 and "Marker" in first
    assert len(last["ExportTasks"]) == 2 and "Marker" not in last
    assert_conforms("StartExportTask", complete)
    assert_conforms("StartExportTask", failed)
    assert_conforms("CancelExportTask", cancel)
    assert_conforms("DescribeExportTasks", first)
    assert_conforms("DescribeExportTasks", last)
    described = {t["ExportTaskIdentifier"]: t for t in first["ExportTasks"] + last["ExportTasks"]}
    # Describe shows the same record the start printed, every field the shape has that the task has.
    assert described["shape-ok"] == complete
    assert described["shape-failed"] == failed
    for name in ("SnapshotTime", "TaskStartTime", "TaskEndTime", "S3Prefix", "PercentProgress"):
        assert name in complete, name


# --- Errors --------------------------------------------------------------------------------------------------


def model_errors() -> dict[str, tuple[str, int]]:
    """Every error shape of the model: shape name -> (code, HTTP status)."""
    found = {}
    for name in MODEL.shape_names:
        error = MODEL.shape_for(name).metadata.get("error")
        if error:
            found[name] = (error["code"], error["httpStatusCode"])
    return found


RDS_ERRORS = {
    errors.ExportTaskAlreadyExists: ("ExportTaskAlreadyExistsFault", ["StartExportTask"]),
    errors.ExportTaskNotFound: ("ExportTaskNotFoundFault", ["DescribeExportTasks", "CancelExportTask"]),
    errors.InvalidExportTaskStateFault: ("InvalidExportTaskStateFault", ["CancelExportTask"]),
    errors.InvalidExportOnly: ("InvalidExportOnlyFault", ["StartExportTask"]),
    errors.InvalidExportSourceState: ("InvalidExportSourceStateFault", ["StartExportTask"]),
    errors.InvalidS3BucketFault: ("InvalidS3BucketFault", ["StartExportTask"]),
    errors.IamRoleNotFound: ("IamRoleNotFoundFault", ["StartExportTask"]),
    errors.IamRoleMissingPermissions: ("IamRoleMissingPermissionsFault", ["StartExportTask"]),
    errors.KMSKeyNotAccessibleFault: ("KMSKeyNotAccessibleFault", ["StartExportTask"]),
    errors.DBClusterNotFoundFault: ("DBClusterNotFoundFault", ["StartExportTask"]),
}


@pytest.mark.parametrize("error", list(RDS_ERRORS), ids=lambda e: e.__name__)
def test_error_codes_and_http_statuses_are_the_models(error):
    shape, operations = RDS_ERRORS[error]
    assert model_errors()[shape] == (error.code, error.http_status)
    for operation in operations:
        assert shape in [e.name for e in MODEL.operation_model(operation).error_shapes], operation


def test_every_rds_error_dbexport_raises_is_checked():
    raised = {
        cls
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, errors.RdsError) and cls not in (errors.RdsError, errors.InvalidParameterValue)
    }
    assert raised == set(RDS_ERRORS)
    # InvalidParameterValue is one of the errors common to every AWS query API, not in the RDS model: 400.
    assert errors.InvalidParameterValue.http_status == 400
    assert "InvalidParameterValue" not in {code for code, _ in model_errors().values()}

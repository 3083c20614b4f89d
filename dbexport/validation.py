"""The anchor's request rules: identifiers, ExportOnly, S3 names, and the request that passes them becomes a task.

Light: no driver or Parquet imports (the AWS runtime's ValidateRequest runs it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from pydantic import ValidationError

from dbexport.errors import DBClusterNotFoundFault, InvalidExportOnly, InvalidParameterValue, InvalidS3BucketFault
from dbexport.models import ExportSettings, ExportTask
from dbexport.sources import for_url
from dbexport.urls import ENGINES, engine_of, has_schemas, redact

if TYPE_CHECKING:
    from collections.abc import Mapping

    from dbexport.models import Runtime, StartExportTaskRequest
    from dbexport.urls import EngineName

# A destination of this form is a local directory instead of an S3 bucket.
LOCAL_PREFIX = "file://"
_IDENTIFIER = re.compile(r"[A-Za-z](?:[A-Za-z0-9]|-(?!-))*")
_MAX_IDENTIFIER = 60
_EXPORT_ONLY_NAME = re.compile(r"[A-Za-z0-9_$]+")
_MAX_EXPORT_ONLY_BYTES = 200 * 1024
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_IP_ADDRESS = re.compile(r"\d+\.\d+\.\d+\.\d+")
# S3 reserves these for its own kinds of bucket and access point names.
_RESERVED_BUCKET_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_RESERVED_BUCKET_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")
# Characters the anchor replaces with `_` in every S3 path element.
_PATH_UNSAFE = str.maketrans({c: "_" for c in '\\`" '})


def validate_identifier(identifier: str) -> None:
    """ExportTaskIdentifier: a letter, then letters, digits and single hyphens; no trailing hyphen."""
    if not 1 <= len(identifier) <= _MAX_IDENTIFIER or not _IDENTIFIER.fullmatch(identifier) or identifier.endswith("-"):
        raise InvalidParameterValue(
            f"The export task identifier {identifier!r} is not valid: it must be 1 to {_MAX_IDENTIFIER} "
            "letters, digits or hyphens, start with a letter, and not end with a hyphen or contain "
            "two consecutive hyphens."
        )


def validate_s3_prefix(prefix: str) -> None:
    """The anchor refuses a prefix with a colon; a `.` or `..` folder would put the export somewhere else."""
    if ":" in prefix:
        raise InvalidParameterValue(f"The S3 prefix {prefix!r} is not valid: it must not contain ':'.")
    if any(segment in (".", "..") for segment in prefix.split("/")):
        raise InvalidParameterValue(f"The S3 prefix {prefix!r} is not valid: no folder in it may be '.' or '..'.")
    if _CONTROL.search(prefix):  # no file system holds a NUL, and S3's XML listings can't show these
        raise InvalidParameterValue(f"The S3 prefix {prefix!r} is not valid: it must not contain control characters.")


def validate_bucket_name(bucket: str) -> None:
    """An S3 bucket name by S3's rules (a file:// destination is checked elsewhere)."""
    if (
        not _BUCKET.fullmatch(bucket)
        or ".." in bucket
        or _IP_ADDRESS.fullmatch(bucket)
        or bucket.startswith(_RESERVED_BUCKET_PREFIXES)
        or bucket.endswith(_RESERVED_BUCKET_SUFFIXES)
    ):
        raise InvalidS3BucketFault(
            f"The S3 bucket {bucket} is invalid. Either it isn't located in the current AWS Region or it "
            "doesn't exist. Review your S3 bucket name and retry the export."
        )


def local_directory(bucket: str) -> Path:
    """The directory a `file:///absolute/path` destination names (percent-escapes decoded); other forms refused."""
    try:
        parts = urlsplit(bucket)
    except ValueError:  # an unbalanced [ in the host
        parts = None
    path = unquote(parts.path) if parts else ""
    if parts is None or parts.netloc:
        problem = "it names a host; a local directory is file:///absolute/path, with three slashes"
    elif not path.startswith("/"):
        problem = "it names no absolute path; use file:///absolute/path"
    elif parts.query or parts.fragment or "\x00" in path:
        problem = "it has a query, a fragment or a NUL; percent-encode ? as %3F and # as %23"
    elif any(segment in (".", "..") for segment in path.split("/")):
        problem = "no folder in it may be '.' or '..'"
    else:
        return Path(path)
    raise InvalidParameterValue(f"The destination {bucket!r} is not valid: {problem}.")


def export_settings(values: Mapping[str, Any], names: Mapping[str, str] | None = None) -> ExportSettings:
    """ExportSettings from `values`, refused as RDS refuses a parameter; `names` says how the caller calls each."""
    try:
        return ExportSettings(**values)
    except ValidationError as exc:
        problems = [
            f"{(names or {}).get(str(error['loc'][0]), error['loc'][0])} is {error['input']!r}: "
            f"{error['msg'][0].lower()}{error['msg'][1:]}"
            for error in exc.errors()
        ]
        raise InvalidParameterValue(f"Invalid export settings: {'; '.join(problems)}.") from None


_CLUSTER_ARN = re.compile(r"arn:aws[a-z-]*:rds:[a-z0-9-]+:\d{12}:cluster:[A-Za-z][A-Za-z0-9-]{0,62}")


def validate_cluster_arn(arn: str) -> None:
    """The AWS runtime exports an Aurora DB cluster, named by its ARN."""
    if not _CLUSTER_ARN.fullmatch(arn):
        raise DBClusterNotFoundFault(
            f"The source {redact(arn)!r} is not a DB cluster ARN (arn:aws:rds:<region>:<account>:cluster:<name>)."
        )


def sanitize_path_element(name: str) -> str:
    """Replace the characters the anchor never puts in an S3 path."""
    return name.translate(_PATH_UNSAFE)


@dataclass(frozen=True)
class Selection:
    """What ExportOnly asks for; an empty selection is the whole cluster."""

    databases: frozenset[str] = frozenset()
    schemas: frozenset[tuple[str, str]] = frozenset()
    tables: frozenset[tuple[str, str, str]] = frozenset()

    @property
    def everything(self) -> bool:
        return not (self.databases or self.schemas or self.tables)

    def database_names(self) -> set[str]:
        """Every database the selection names, in any of its forms."""
        return {*self.databases, *(s[0] for s in self.schemas), *(t[0] for t in self.tables)}

    def wants_database(self, database: str) -> bool:
        """True when anything in this database may be exported."""
        return self.everything or database in self.database_names()

    def wants_table(self, database: str, schema: str, table: str) -> bool:
        return (
            self.everything
            or database in self.databases
            or (database, schema) in self.schemas
            or (database, schema, table) in self.tables
        )

    def names(self) -> list[str]:
        """Every name the selection lists, in ExportOnly's dotted form."""
        return sorted([*self.databases, *(".".join(s) for s in self.schemas), *(".".join(t) for t in self.tables)])


def parse_export_only(export_only: list[str], engine: EngineName | None = None) -> Selection:
    """Parse ExportOnly: `database`, `database.schema`, `database.schema.table` (PostgreSQL, or an engine not
    known yet); `database`, `database.table` for an engine without schemas (MySQL, whose tables are held as
    `(database, database, table)`)."""
    if sum(len(item.encode()) for item in export_only) > _MAX_EXPORT_ONLY_BYTES:
        raise InvalidExportOnly("ExportOnly is larger than 200 KB.")
    schemas_named = has_schemas(engine)
    forms = "database, database.schema or database.schema.table" if schemas_named else "database or database.table"
    databases: set[str] = set()
    schemas: set[tuple[str, str]] = set()
    tables: set[tuple[str, str, str]] = set()
    for item in export_only:
        parts = item.split(".")
        bad = [p for p in parts if not _EXPORT_ONLY_NAME.fullmatch(p)]
        if bad or len(parts) > (3 if schemas_named else 2):
            raise InvalidExportOnly(
                f"The ExportOnly value {item!r} is not valid: use {forms}, with names of the characters "
                "A-Z a-z 0-9 $ _ only"
                + (f" ({', '.join(repr(b) for b in bad)} has other characters)." if bad else ".")
                + (
                    f" {ENGINES[engine].label} has no schemas."
                    if engine and not schemas_named and len(parts) > 2
                    else ""
                )
            )
        if len(parts) == 1:
            databases.add(parts[0])
        elif not schemas_named:
            tables.add((parts[0], parts[0], parts[1]))
        elif len(parts) == 2:
            schemas.add((parts[0], parts[1]))
        else:
            tables.add((parts[0], parts[1], parts[2]))
    return Selection(frozenset(databases), frozenset(schemas), frozenset(tables))


def validate_request(
    request: StartExportTaskRequest, now: datetime | None = None, *, runtime: Runtime = "local"
) -> ExportTask:
    """Check the request's shapes and names; return the new task, STARTING.

    The local runtime exports a PostgreSQL or MySQL URL; the AWS runtime an Aurora cluster ARN, and like
    the anchor it needs the IAM role and KMS key that write to the bucket.
    """
    validate_identifier(request.export_task_identifier)
    validate_s3_prefix(request.s3_prefix)
    if not request.s3_bucket_name.startswith(LOCAL_PREFIX) or runtime == "aws":
        validate_bucket_name(request.s3_bucket_name)
    else:
        local_directory(request.s3_bucket_name)
    # A cluster ARN does not say its engine: the AWS runtime checks MySQL's forms once it knows (aws.requests.validate).
    parse_export_only(request.export_only, engine_of(request.source_arn))
    if runtime == "aws":
        validate_cluster_arn(request.source_arn)
        for name, value in (("IamRoleArn", request.iam_role_arn), ("KmsKeyId", request.kms_key_id)):
            if not value:
                raise InvalidParameterValue(f"{name} is required to export a cluster to Amazon S3.")
    else:
        for_url(request.source_arn)  # refuses a malformed URL, or one of no engine dbexport reads
    return ExportTask(
        export_task_identifier=request.export_task_identifier,
        source_arn=redact(request.source_arn),
        export_only=request.export_only,
        task_start_time=now or datetime.now(UTC),
        s3_bucket=request.s3_bucket_name,
        s3_prefix=request.s3_prefix,
        iam_role_arn=request.iam_role_arn,
        kms_key_id=request.kms_key_id,
    )

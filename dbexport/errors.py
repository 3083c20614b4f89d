"""Errors dbexport raises on purpose, with the codes and HTTP statuses of Amazon RDS's API."""

from __future__ import annotations


class DbExportError(Exception):
    """Base for errors we raise on purpose."""


class RdsError(DbExportError):
    """An error with an RDS error code, refused before the task starts."""

    code = "InternalFailure"
    http_status = 500

    def __init__(self, message: str, operation: str = "StartExportTask") -> None:
        super().__init__(message)
        self.message = message
        self.operation = operation

    def __str__(self) -> str:
        # The AWS CLI's wording, so scripts that parse it keep working.
        return f"An error occurred ({self.code}) when calling the {self.operation} operation: {self.message}"


class ExportTaskAlreadyExists(RdsError):
    code, http_status = "ExportTaskAlreadyExists", 400


class ExportTaskNotFound(RdsError):
    code, http_status = "ExportTaskNotFound", 404


class InvalidExportTaskStateFault(RdsError):
    code, http_status = "InvalidExportTaskStateFault", 400


class InvalidExportOnly(RdsError):
    code, http_status = "InvalidExportOnly", 400


class InvalidExportSourceState(RdsError):
    code, http_status = "InvalidExportSourceState", 400


class InvalidS3BucketFault(RdsError):
    code, http_status = "InvalidS3BucketFault", 400


class IamRoleNotFound(RdsError):
    code, http_status = "IamRoleNotFound", 404


class IamRoleMissingPermissions(RdsError):
    code, http_status = "IamRoleMissingPermissions", 400


class KMSKeyNotAccessibleFault(RdsError):
    code, http_status = "KMSKeyNotAccessibleFault", 400


class DBClusterNotFoundFault(RdsError):
    code, http_status = "DBClusterNotFoundFault", 404


class InvalidParameterValue(RdsError):
    code, http_status = "InvalidParameterValue", 400


class ExportFailed(DbExportError):
    """The export ran and failed; the message is the task's FailureCause."""


class AccessCheckFailed(ExportFailed):
    """The access preflight found the IAM role, the bucket or the KMS key unusable; the message says which."""


class RetryableError(DbExportError):
    """Retrying may help: connection dropped, throttled."""


class SourceUnavailable(RetryableError):
    """The source database cannot be reached or refused the connection."""


class DestinationUnavailable(RetryableError):
    """The destination can't be reached for now, or asked to slow down (throttling, 5xx, timeouts)."""


class StateDirUnusable(DbExportError):
    """The local runtime's state directory can't hold its task records: the message says which and why."""


class SourceBusy(RetryableError):
    """The clone is being created or changed and can't be deleted yet: Cleanup tries again later."""


class ExportCanceled(DbExportError):
    """CancelExportTask was called: stop taking work, keep what is written."""

"""The source's credentials, from Secrets Manager: the stack's secret or the cluster's managed one."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import boto3
from botocore.exceptions import ClientError

from dbexport.errors import ExportFailed
from dbexport.urls import ENGINES

if TYPE_CHECKING:
    from dbexport.aws.config import CloudConfig
    from dbexport.aws.events import Source

log = logging.getLogger(__name__)


def source_url(config: CloudConfig, source: Source) -> str:
    """The source's URL from its Secrets Manager secret, at the clone's endpoint and port if any.

    The secret is the stack's (SOURCE_SECRET_ARN, RDS's shape: username, password, host, port) or else
    the cluster's managed master user secret (username and password; the cluster gives host and port).
    The URL is mysql:// for an Aurora MySQL cluster (or a secret whose `engine` is MySQL's), else postgresql://.
    """
    secret = json.loads(
        secret_value(config.source_secret_arn or source.secret_arn, source.secret_version)["SecretString"]
    )
    user, password = quote(secret["username"], safe=""), quote(secret["password"], safe="")
    engine = source.engine or ("mysql" if "mysql" in str(secret.get("engine", "")) else "postgresql")
    default_port = ENGINES[engine].default_port
    if source.endpoint:
        host, port = source.endpoint, source.port or secret.get("port", default_port)
    else:
        host, port = secret["host"], secret.get("port", default_port)
    return f"{engine}://{user}:{password}@{host}:{port}/"


def secret_value(arn: str | None, version: str | None = None) -> dict[str, Any]:
    """GetSecretValue of the source secret: the given version, or the current one."""
    assert arn is not None, "neither SOURCE_SECRET_ARN nor the cluster's managed secret is known"
    which = {"VersionId": version} if version else {}
    try:
        return boto3.client("secretsmanager").get_secret_value(SecretId=arn, **which)  # type: ignore[no-any-return]
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "unknown")
        log.warning("GetSecretValue %s (version %s): %s", arn, version, exc)
        raise ExportFailed(
            f"dbexport can't read the source secret {arn} (Error code: {code}). Check that it exists and that "
            "the stack's functions may read it and decrypt it with its KMS key."
        ) from exc

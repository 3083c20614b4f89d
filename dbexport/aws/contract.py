"""What the AWS runtime and the CDK stack must agree on, defined once: both import this module.

No CDK, boto3 or data-path imports here: the stack imports it at synth time, every Lambda at cold start.
"""

from __future__ import annotations

# --- environment variables the stack sets and the functions read -------------------------------------------
TASK_TABLE_NAME = "TASK_TABLE_NAME"
WORK_BUCKET_NAME = "WORK_BUCKET_NAME"
SOURCE_SECRET_ARN = "SOURCE_SECRET_ARN"
SOURCE_MODE = "SOURCE_MODE"
MAX_UNFINISHED_TASKS = "MAX_UNFINISHED_TASKS"
MAX_CONCURRENCY = "MAX_CONCURRENCY"

# --- the work bucket -----------------------------------------------------------------------------------------
# PlanExport writes each task's plan and partition manifest under this prefix; the Distributed Map and Finalize
# read them.
MANIFEST_PREFIX = "manifests/"
# The Distributed Map's ResultWriter writes under this prefix.
RESULTS_PREFIX = "results/"


def manifest_key(identifier: str) -> str:
    """The partition manifest the Distributed Map reads."""
    return f"{MANIFEST_PREFIX}{identifier}/partitions.json"


def plan_key(identifier: str) -> str:
    """The export's plans, which Finalize reads back."""
    return f"{MANIFEST_PREFIX}{identifier}/plan.json"


# --- clones ----------------------------------------------------------------------------------------------------
# A clone is named after its task, so Cleanup finds it without state; the stack lets the functions create and
# delete only clusters and instances with this prefix.
CLONE_PREFIX = "dbexport-"
CLONE_NAME_PATTERN = f"{CLONE_PREFIX}*"
# RDS names a cluster's managed master user secret rds!cluster-<cluster resource id>-<suffix>.
MANAGED_SECRETS = "rds!cluster-*"

# --- the functions (one per state, `lambdas.<name>.handler`) and what each may do --------------------------
VALIDATE = "validate"
CHECK_ACCESS = "check_access"
PREPARE_SOURCE = "prepare_source"
SOURCE_READY = "source_ready"
PLAN = "plan"
EXPORT_PARTITION = "export_partition"
FINALIZE = "finalize"
RECORD_FAILURE = "record_failure"
CLEANUP = "cleanup"
FUNCTIONS = (
    VALIDATE,
    CHECK_ACCESS,
    PREPARE_SOURCE,
    SOURCE_READY,
    PLAN,
    EXPORT_PARTITION,
    FINALIZE,
    RECORD_FAILURE,
    CLEANUP,
)
# Which functions may assume the IamRoleArn of a request (to write the user's bucket), as the anchor does.
ASSUMES_USER_ROLE = (CHECK_ACCESS, EXPORT_PARTITION, FINALIZE, RECORD_FAILURE)
# Which read the source's credentials (and connect to the database).
READS_SOURCE_SECRET = (PREPARE_SOURCE, PLAN, EXPORT_PARTITION, FINALIZE)
# Which describe, clone or delete the source cluster and its clone.
MANAGES_SOURCE = (PREPARE_SOURCE, SOURCE_READY, CLEANUP)
# SourceReady only describes: PrepareSource creates the clone and its instance at once.
CREATES_CLONE = (PREPARE_SOURCE,)
DELETES_CLONE = (CLEANUP,)
# In clone mode ValidateRequest describes the source cluster (RDS's refusals of a missing or non-Aurora one).
DESCRIBES_SOURCE_CLUSTER = (VALIDATE,)
# The work bucket (WORK_BUCKET_NAME): PlanExport writes the manifest, Finalize reads it and the Map's results back.
WRITES_MANIFESTS = (PLAN,)
READS_MAP_RESULTS = (FINALIZE,)
USES_WORK_BUCKET = (*WRITES_MANIFESTS, *READS_MAP_RESULTS)
# Which are told the source mode (clone or direct) and, where set, the stack's source secret.
KNOWS_SOURCE_MODE = (VALIDATE, *MANAGES_SOURCE)

# --- logs and metrics ------------------------------------------------------------------------------------------
# Powertools' service name and metrics namespace: the stack sets them, the handlers fall back to them.
SERVICE_NAME = "dbexport"

# --- the stack's outputs that the CLI's --stack-name mode reads (dbexport/remote.py) ---------------------------
STATE_MACHINE_ARN_OUTPUT = "StateMachineArn"
TASK_TABLE_NAME_OUTPUT = "TaskTableName"

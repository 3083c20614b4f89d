"""The synthesized template: every resource of the AWS runtime, least-privilege IAM, encryption, limits."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Match
from cdk_nag import AwsSolutionsChecks

from dbexport.aws.contract import FUNCTIONS
from layers import build as layer_build
from stacks.config import ConfigError, ExportStackProps
from stacks.constructs.functions import CODE_EXCLUDE, SPECS
from tests.infra.conftest import ROOT, SCHEDULE_INPUT, SECRET_ARN, VPC_CONTEXT, Synthesized, make_app

MODULES = [spec.module for spec in SPECS]
# Lambda's limit for a function and all its layers, unzipped: 250 MB.
LAMBDA_UNZIPPED_LIMIT = 262_144_000
THIRTY_DAYS = 30


# --- helpers -----------------------------------------------------------------------------------------------
def role_statements(synth: Synthesized, role: Any) -> list[dict[str, Any]]:
    """Every statement of the policies attached to a role (CDK puts grants in the role's DefaultPolicy)."""
    role_id = synth.logical_id(role)
    statements: list[dict[str, Any]] = []
    for policy in synth.resources("AWS::IAM::Policy").values():
        if {"Ref": role_id} in policy["Properties"]["Roles"]:
            statements += policy["Properties"]["PolicyDocument"]["Statement"]
    role_props = synth.json["Resources"][role_id]["Properties"]
    assert "ManagedPolicyArns" not in role_props, "roles get inline, scoped statements only"
    return statements


def actions_of(statements: list[dict[str, Any]]) -> set[str]:
    found: set[str] = set()
    for statement in statements:
        assert statement["Effect"] == "Allow"
        action = statement["Action"]
        found.update([action] if isinstance(action, str) else action)
    return found


def statements_with(statements: list[dict[str, Any]], action: str) -> list[dict[str, Any]]:
    return [s for s in statements if action in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])]


def function_role_statements(synth: Synthesized, module: str) -> list[dict[str, Any]]:
    return role_statements(synth, synth.stack.functions.roles[module])


def function_props(synth: Synthesized, module: str) -> dict[str, Any]:
    fn = synth.stack.functions.functions[module]
    return synth.json["Resources"][synth.logical_id(fn)]["Properties"]  # type: ignore[no-any-return]


def mentions(value: Any, text: str) -> bool:
    return text in json.dumps(value)


# --- storage, topic, outputs -------------------------------------------------------------------------------
def test_task_table_is_pay_per_request_with_pitr_encryption_and_retained(default_stack: Synthesized) -> None:
    default_stack.template.resource_count_is("AWS::DynamoDB::Table", 1)
    default_stack.template.has_resource(
        "AWS::DynamoDB::Table",
        {
            "Properties": {
                "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
                "AttributeDefinitions": Match.array_with(
                    [{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "S"}]
                ),
                "BillingMode": "PAY_PER_REQUEST",
                "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
                "SSESpecification": {"SSEEnabled": True},
            },
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
        },
    )


def test_topic_is_encrypted_with_a_rotating_key_and_ssl_only(default_stack: Synthesized) -> None:
    default_stack.template.resource_count_is("AWS::SNS::Topic", 1)
    key_id = default_stack.logical_id(default_stack.stack.key)
    default_stack.template.has_resource_properties(
        "AWS::SNS::Topic", {"KmsMasterKeyId": {"Fn::GetAtt": [key_id, "Arn"]}}
    )
    default_stack.template.has_resource_properties("AWS::KMS::Key", {"EnableKeyRotation": True})
    default_stack.template.has_resource_properties(
        "AWS::SNS::TopicPolicy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [Match.object_like({"Effect": "Deny", "Condition": {"Bool": {"aws:SecureTransport": "false"}}})]
                )
            }
        },
    )


def test_work_bucket_is_private_encrypted_ssl_only_and_expires_scratch(default_stack: Synthesized) -> None:
    template = default_stack.template
    template.resource_count_is("AWS::S3::Bucket", 1)
    rules = template.find_resources("AWS::S3::Bucket")
    (bucket,) = rules.values()
    props = bucket["Properties"]
    assert bucket["DeletionPolicy"] == "Retain"
    assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"][
        "SSEAlgorithm"
    ] in ("AES256", "aws:kms")
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    expiring = {
        rule["Prefix"]: rule["ExpirationInDays"]
        for rule in props["LifecycleConfiguration"]["Rules"]
        if "Prefix" in rule and rule["Status"] == "Enabled"
    }
    assert expiring == {"manifests/": THIRTY_DAYS, "results/": THIRTY_DAYS}
    template.has_resource_properties(
        "AWS::S3::BucketPolicy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [Match.object_like({"Effect": "Deny", "Condition": {"Bool": {"aws:SecureTransport": "false"}}})]
                )
            }
        },
    )
    # auto-delete off: no custom resource that empties the bucket
    assert not template.find_resources("Custom::S3AutoDeleteObjects")


def test_outputs_name_what_the_cli_reads(default_stack: Synthesized) -> None:
    outputs = default_stack.json["Outputs"]
    stack = default_stack.stack
    assert outputs["StateMachineArn"]["Value"] == {"Ref": default_stack.logical_id(stack.state_machine)}
    assert outputs["TaskTableName"]["Value"] == {"Ref": default_stack.logical_id(stack.table)}
    assert outputs["TopicArn"]["Value"] == {"Ref": default_stack.logical_id(stack.topic)}
    assert outputs["WorkBucketName"]["Value"] == {"Ref": default_stack.logical_id(stack.bucket)}
    assert mentions(outputs["ExportRolesPrincipalArn"]["Value"], ":role/dbexport/*")


# --- functions and layer -----------------------------------------------------------------------------------
def test_one_function_per_function_of_the_contract_each_with_its_handler_module() -> None:
    assert tuple(MODULES) == FUNCTIONS
    for module in MODULES:
        assert (ROOT / "lambdas" / f"{module}.py").is_file(), module


def test_nine_functions_on_python_312_with_handlers_sizes_and_tracing(default_stack: Synthesized) -> None:
    default_stack.template.resource_count_is("AWS::Lambda::Function", 9)
    layer_id = default_stack.logical_id(default_stack.stack.node.find_child("Dependencies").node.find_child("Layer"))
    sizes = {}
    for module in MODULES:
        props = function_props(default_stack, module)
        assert props["Runtime"] == "python3.12"
        assert props["Architectures"] == ["x86_64"]
        assert props["Handler"] == f"lambdas.{module}.handler"
        assert props["TracingConfig"] == {"Mode": "Active"}
        assert props["Layers"] == [{"Ref": layer_id}]
        assert "ReservedConcurrentExecutions" not in props
        assert "VpcConfig" not in props  # no VPC given
        sizes[module] = (props["MemorySize"], props["Timeout"])
    assert sizes["export_partition"] == (3008, 900)
    assert sizes["plan"] == (1024, 900)
    assert sizes["finalize"] == (1024, 900)
    for module in ("validate", "check_access", "prepare_source", "source_ready", "record_failure", "cleanup"):
        memory, timeout = sizes[module]
        assert memory == 256 and 60 <= timeout <= 120, module
    default_stack.template.has_resource_properties(
        "AWS::Lambda::LayerVersion", {"CompatibleRuntimes": ["python3.12"], "CompatibleArchitectures": ["x86_64"]}
    )


def test_every_function_and_the_machine_log_for_a_month_encrypted(default_stack: Synthesized) -> None:
    log_groups = default_stack.resources("AWS::Logs::LogGroup")
    assert len(log_groups) == 10  # nine functions + the state machine
    key_arn = {"Fn::GetAtt": [default_stack.logical_id(default_stack.stack.key), "Arn"]}
    for log_group in log_groups.values():
        assert log_group["Properties"]["RetentionInDays"] == THIRTY_DAYS
        assert log_group["Properties"]["KmsKeyId"] == key_arn
    for module in MODULES:
        assert function_props(default_stack, module)["LoggingConfig"]["LogGroup"]["Ref"] in log_groups
    # The key lets CloudWatch Logs of this account and region use it, for log groups only.
    default_stack.template.has_resource_properties(
        "AWS::KMS::Key",
        {
            "KeyPolicy": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Principal": {"Service": Match.any_value()},
                                "Condition": {"ArnLike": {"kms:EncryptionContext:aws:logs:arn": Match.any_value()}},
                            }
                        )
                    ]
                )
            }
        },
    )


def test_function_environment(default_stack: Synthesized) -> None:
    table_ref = {"Ref": default_stack.logical_id(default_stack.stack.table)}
    bucket_ref = {"Ref": default_stack.logical_id(default_stack.stack.bucket)}
    envs = {module: function_props(default_stack, module)["Environment"]["Variables"] for module in MODULES}
    for module, env in envs.items():
        assert env["TASK_TABLE_NAME"] == table_ref, module
        assert env["POWERTOOLS_SERVICE_NAME"] == "dbexport"
        assert env["POWERTOOLS_METRICS_NAMESPACE"] == "dbexport"
        assert env["LOG_LEVEL"] == "INFO"
    assert envs["validate"]["MAX_UNFINISHED_TASKS"] == "5"
    assert envs["validate"]["MAX_CONCURRENCY"] == "100"
    assert envs["plan"]["WORK_BUCKET_NAME"] == bucket_ref
    for module in ("plan", "export_partition", "finalize", "prepare_source", "source_ready", "cleanup"):
        assert envs[module]["SOURCE_SECRET_ARN"] == SECRET_ARN, module
    for module in ("validate", "prepare_source", "source_ready", "cleanup"):
        assert envs[module]["SOURCE_MODE"] == "clone", module
    for module in ("validate", "check_access", "record_failure"):
        assert "SOURCE_SECRET_ARN" not in envs[module], module


def test_props_reach_the_functions(vpc_stack: Synthesized, direct_stack: Synthesized) -> None:
    env = function_props(vpc_stack, "validate")["Environment"]["Variables"]
    assert (env["MAX_CONCURRENCY"], env["MAX_UNFINISHED_TASKS"]) == ("250", "8")
    for module in ("prepare_source", "source_ready", "cleanup"):
        assert function_props(direct_stack, module)["Environment"]["Variables"]["SOURCE_MODE"] == "direct"


def test_vpc_holds_only_the_functions_that_reach_the_database(vpc_stack: Synthesized) -> None:
    for module in MODULES:
        props = function_props(vpc_stack, module)
        statements = function_role_statements(vpc_stack, module)
        if module in ("plan", "export_partition", "finalize"):
            assert props["VpcConfig"] == {
                "SubnetIds": ["subnet-0123456789abcdef0", "subnet-0fedcba9876543210"],
                "SecurityGroupIds": ["sg-0123456789abcdef0"],
            }
            assert "ec2:CreateNetworkInterface" in actions_of(statements)
        else:
            assert "VpcConfig" not in props, module
            assert not any(a.startswith("ec2:") for a in actions_of(statements)), module
    # imported without lookups: no VPC or security group is created
    vpc_stack.template.resource_count_is("AWS::EC2::VPC", 0)
    vpc_stack.template.resource_count_is("AWS::EC2::SecurityGroup", 0)


# --- IAM: least privilege ----------------------------------------------------------------------------------
def test_every_function_reads_and_writes_only_the_task_table_in_dynamodb(default_stack: Synthesized) -> None:
    table_id = default_stack.logical_id(default_stack.stack.table)
    for module in MODULES:
        statements = function_role_statements(default_stack, module)
        dynamo = [s for s in statements if any(a.startswith("dynamodb:") for a in actions_of([s]))]
        assert dynamo, module
        assert {"dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:GetItem", "dynamodb:Query"} <= actions_of(dynamo)
        for statement in dynamo:
            assert mentions(statement["Resource"], table_id) and not mentions(statement["Resource"], '"*"'), module


def test_only_four_functions_may_assume_the_request_role(default_stack: Synthesized) -> None:
    for module in MODULES:
        statements = function_role_statements(default_stack, module)
        may_assume = "sts:AssumeRole" in actions_of(statements)
        assert may_assume == (module in ("check_access", "export_partition", "finalize", "record_failure")), module
        for statement in statements_with(statements, "sts:AssumeRole"):
            assert mentions(statement["Resource"], ":role/*")  # roles of this account
    assert "sts:AssumeRole" not in actions_of(role_statements(default_stack, default_stack.stack.state_machine.role))


def test_source_secret_is_read_by_the_functions_that_connect_only(default_stack: Synthesized) -> None:
    for module in MODULES:
        statements = function_role_statements(default_stack, module)
        readers = statements_with(statements, "secretsmanager:GetSecretValue")
        assert bool(readers) == (module in ("plan", "export_partition", "finalize", "prepare_source")), module
        for statement in readers:
            assert statement["Resource"] == SECRET_ARN
        assert not any(
            a.startswith("secretsmanager:") and a != "secretsmanager:GetSecretValue" for a in actions_of(statements)
        )


def test_export_partition_has_no_rds_and_no_work_bucket_access(default_stack: Synthesized) -> None:
    statements = function_role_statements(default_stack, "export_partition")
    actions = actions_of(statements)
    assert not any(a.startswith("rds:") for a in actions)
    assert not any(a.startswith("s3:") for a in actions)
    bucket_id = default_stack.logical_id(default_stack.stack.bucket)
    assert not any(mentions(s["Resource"], bucket_id) for s in statements)


def test_work_bucket_access_plan_writes_manifests_finalize_reads(default_stack: Synthesized) -> None:
    bucket_id = default_stack.logical_id(default_stack.stack.bucket)
    for module in MODULES:
        statements = function_role_statements(default_stack, module)
        on_bucket = [s for s in statements if mentions(s["Resource"], bucket_id)]
        if module == "plan":
            assert actions_of(on_bucket) == {"s3:PutObject"}
            assert all(mentions(s["Resource"], "/manifests/*") for s in on_bucket)
        elif module == "finalize":
            assert actions_of(on_bucket) == {"s3:GetObject", "s3:ListBucket"}
        else:
            assert not on_bucket, module
        assert {a for a in actions_of(statements) if a.startswith("s3:")} == actions_of(on_bucket), module


def test_clone_actions_only_for_source_functions_and_delete_only_dbexport_clones(default_stack: Synthesized) -> None:
    for module in MODULES:
        rds = {a for a in actions_of(function_role_statements(default_stack, module)) if a.startswith("rds:")}
        if module == "prepare_source":
            assert rds == {
                "rds:RestoreDBClusterToPointInTime",
                "rds:CreateDBInstance",
                "rds:AddTagsToResource",
                "rds:DescribeDBClusters",
                "rds:DescribeDBInstances",
                "rds:ListTagsForResource",
            }, module
        elif module == "source_ready":
            assert rds == {"rds:DescribeDBClusters", "rds:DescribeDBInstances", "rds:ListTagsForResource"}
        elif module == "validate":
            # refuses a missing, non-Aurora or Serverless v1 source before registering the task
            assert rds == {"rds:DescribeDBClusters"}, module
        elif module == "cleanup":
            assert rds == {
                "rds:DeleteDBInstance",
                "rds:DeleteDBCluster",
                "rds:DescribeDBClusters",
                "rds:DescribeDBInstances",
                "rds:ListTagsForResource",
            }
        else:
            assert not rds, module
    cleanup = function_role_statements(default_stack, "cleanup")
    for action in ("rds:DeleteDBInstance", "rds:DeleteDBCluster"):
        (statement,) = statements_with(cleanup, action)
        resources = json.dumps(statement["Resource"])
        assert resources.count(":cluster:dbexport-*") == 1 and resources.count(":db:dbexport-*") == 1
        assert ":cluster:*" not in resources and ":db:*" not in resources and '"*"' not in resources
    prepare = function_role_statements(default_stack, "prepare_source")
    (create,) = statements_with(prepare, "rds:CreateDBInstance")
    assert mentions(create["Resource"], ":db:dbexport-*") and not mentions(create["Resource"], ":db:*")
    (tag,) = statements_with(prepare, "rds:AddTagsToResource")
    assert json.dumps(tag["Resource"]).count(":dbexport-*") == 2 and not mentions(tag["Resource"], ":cluster:*")


def test_direct_mode_grants_no_clone_actions(direct_stack: Synthesized) -> None:
    for module in ("prepare_source", "source_ready", "cleanup"):
        rds = {a for a in actions_of(function_role_statements(direct_stack, module)) if a.startswith("rds:")}
        assert rds == {"rds:DescribeDBClusters", "rds:DescribeDBInstances", "rds:ListTagsForResource"}, module
    assert not any(a.startswith("rds:") for a in actions_of(function_role_statements(direct_stack, "validate")))


def test_state_machine_role_can_do_what_the_definition_does(default_stack: Synthesized) -> None:
    stack = default_stack.stack
    statements = role_statements(default_stack, stack.state_machine.role)
    (invoke,) = statements_with(statements, "lambda:InvokeFunction")
    assert sorted(r["Fn::GetAtt"][0] for r in invoke["Resource"]) == sorted(
        default_stack.logical_id(fn) for fn in stack.functions.functions.values()
    )
    bucket_id = default_stack.logical_id(stack.bucket)
    (read_manifest,) = [s for s in statements_with(statements, "s3:GetObject") if mentions(s, "/manifests/*")]
    assert mentions(read_manifest["Resource"], bucket_id)
    (write_results,) = statements_with(statements, "s3:PutObject")
    assert mentions(write_results["Resource"], "/results/*")
    (publish,) = statements_with(statements, "sns:Publish")
    assert publish["Resource"] == {"Ref": default_stack.logical_id(stack.topic)}
    (use_key,) = statements_with(statements, "kms:GenerateDataKey")
    assert use_key["Resource"] == {"Fn::GetAtt": [default_stack.logical_id(stack.key), "Arn"]}
    (put_events,) = statements_with(statements, "events:PutEvents")
    assert mentions(put_events["Resource"], ":event-bus/default")
    (start,) = statements_with(statements, "states:StartExecution")
    assert mentions(start["Resource"], ":stateMachine:DbExport-Export")
    (manage,) = statements_with(statements, "states:DescribeExecution")
    assert "states:StopExecution" in actions_of([manage])
    assert mentions(manage["Resource"], ":execution:DbExport-Export/*")
    assert not any(a.startswith(("rds:", "secretsmanager:", "dynamodb:")) for a in actions_of(statements))


def test_state_machine_logs_all_without_data_traces_and_substitutes_every_arn(default_stack: Synthesized) -> None:
    machines = default_stack.resources("AWS::StepFunctions::StateMachine")
    (machine,) = machines.values()
    props = machine["Properties"]
    assert props["StateMachineName"] == "DbExport-Export"
    assert props["LoggingConfiguration"]["Level"] == "ALL"
    assert props["LoggingConfiguration"]["IncludeExecutionData"] is False
    assert props["TracingConfiguration"] == {"Enabled": True}
    assert "DefinitionS3Location" in props  # DefinitionBody.from_file: the ASL file as an asset
    subs = props["DefinitionSubstitutions"]
    assert subs["EventBusName"] == "default"
    for module, key in [
        ("validate", "ValidateFunctionArn"),
        ("check_access", "CheckAccessFunctionArn"),
        ("prepare_source", "PrepareSourceFunctionArn"),
        ("source_ready", "SourceReadyFunctionArn"),
        ("plan", "PlanFunctionArn"),
        ("export_partition", "ExportPartitionFunctionArn"),
        ("finalize", "FinalizeFunctionArn"),
        ("record_failure", "RecordFailureFunctionArn"),
        ("cleanup", "CleanupFunctionArn"),
    ]:
        fn = default_stack.stack.functions.functions[module]
        assert subs[key] == {"Fn::GetAtt": [default_stack.logical_id(fn), "Arn"]}
    assert subs["TopicArn"] == {"Ref": default_stack.logical_id(default_stack.stack.topic)}
    assert subs["WorkBucketName"] == {"Ref": default_stack.logical_id(default_stack.stack.bucket)}


# --- schedule and settings ---------------------------------------------------------------------------------
def test_schedule_starts_the_machine_with_the_given_input(vpc_stack: Synthesized, default_stack: Synthesized) -> None:
    default_stack.template.resource_count_is("AWS::Events::Rule", 0)
    (rule,) = vpc_stack.resources("AWS::Events::Rule").values()
    props = rule["Properties"]
    assert props["ScheduleExpression"] == "cron(0 3 * * ? *)"
    (target,) = props["Targets"]
    assert target["Arn"] == {"Ref": vpc_stack.logical_id(vpc_stack.stack.state_machine)}
    assert json.loads(target["Input"]) == SCHEDULE_INPUT


@pytest.mark.parametrize(
    ("context", "message"),
    [
        ({"vpcId": "vpc-0123456789abcdef0"}, "go together"),
        ({"sourceMode": "snapshot"}, "sourceMode"),
        ({"maxConcurrency": "0"}, "maxConcurrency"),
        ({"maxConcurrency": "lots"}, "whole number"),
        ({"sourceSecretArn": "dbexport/source"}, "sourceSecretArn"),
        ({"scheduleExpression": "rate(1 day)", "scheduleInput": '{"ExportTaskIdentifier": "x"}'}, "Prefix"),
        ({"scheduleInput": '{"ExportTaskIdentifierPrefix": "x"}'}, "scheduleExpression"),
        ({"scheduleExpression": "rate(1 day)", "scheduleInput": "{not json"}, "not valid JSON"),
    ],
)
def test_bad_settings_fail_synth_naming_the_option(context: dict[str, Any], message: str) -> None:
    app = cdk.App(context=context)
    with pytest.raises(ConfigError, match=message):
        ExportStackProps.from_context(app.node)


def test_without_a_source_secret_the_clusters_managed_secrets_are_readable(
    managed_secret_stack: Synthesized,
) -> None:
    for module in MODULES:
        statements = function_role_statements(managed_secret_stack, module)
        env = function_props(managed_secret_stack, module)["Environment"]["Variables"]
        assert "SOURCE_SECRET_ARN" not in env, module
        readers = statements_with(statements, "secretsmanager:GetSecretValue")
        decrypters = statements_with(statements, "kms:Decrypt")
        connects = module in ("plan", "export_partition", "finalize", "prepare_source")
        assert bool(readers) == bool(decrypters) == connects, module
        for statement in readers:
            assert mentions(statement["Resource"], ":secret:rds!cluster-*")
        for statement in decrypters:
            # only through Secrets Manager, only for RDS-managed cluster secrets
            conditions = json.dumps(statement["Condition"])
            assert "kms:ViaService" in conditions and "secretsmanager." in conditions
            assert "kms:EncryptionContext:SecretARN" in conditions and ":secret:rds!cluster-*" in conditions


# --- cdk-nag, cfn-lint, sizes, the CLI ---------------------------------------------------------------------
def _acknowledged(template: dict[str, Any]) -> list[tuple[str, str, str]]:
    found = []
    for logical_id, resource in template["Resources"].items():
        for rule in resource.get("Metadata", {}).get("cdk_nag", {}).get("rules_to_suppress", []):
            found.append((logical_id, rule["id"], rule["reason"]))
    return found


def _synth_with_nag(app: cdk.App) -> dict[str, Any]:
    """Synthesize with cdk-nag's AwsSolutions pack; fail listing the unacknowledged findings, if any."""
    # cdk-nag 3 is a CDK policy-validation plugin (v2's Aspect API is gone): a finding that is not acknowledged
    # fails the synth and is listed in the assembly's validation-report.json.
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app, write_suppressions_to_cloud_formation=True))
    outdir = Path(app.outdir)
    try:
        assembly = app.synth()
    except RuntimeError as exc:
        report = json.loads((outdir / "validation-report.json").read_text())
        findings = [
            f"{violation['ruleName']} at {construct['constructPath']}"
            for plugin in report["pluginReports"]
            for violation in plugin.get("violations", [])
            for construct in violation["violatingConstructs"]
        ]
        pytest.fail(f"cdk-nag findings not acknowledged ({exc}):\n" + "\n".join(findings))
    return json.loads((Path(assembly.directory) / "DbExport.template.json").read_text())  # type: ignore[no-any-return]


@pytest.mark.parametrize("variant", ["default", "vpc", "managed-secret"])
def test_cdk_nag_aws_solutions_passes_with_justified_acknowledgments(variant: str, layer_dir: Path) -> None:
    context: dict[str, Any] = {}
    if variant == "managed-secret":
        context = {"sourceSecretArn": ""}
    if variant == "vpc":
        context = {**VPC_CONTEXT, "scheduleExpression": "rate(1 day)", "scheduleInput": json.dumps(SCHEDULE_INPUT)}
    app, _ = make_app(context)
    template = _synth_with_nag(app)
    acknowledged = _acknowledged(template)
    assert len(acknowledged) > 20  # the plugin ran (it writes the acknowledgments into the template)
    for _, rule_id, reason in acknowledged:
        assert rule_id.startswith("AwsSolutions-")
        assert len(reason) > 40 and reason.endswith("."), (rule_id, reason)


def test_cdk_nag_fails_on_a_finding_nobody_acknowledged(layer_dir: Path) -> None:
    from aws_cdk import aws_s3 as s3

    app, stack = make_app()
    s3.Bucket(stack, "UnloggedBucket")
    with pytest.raises(pytest.fail.Exception, match="AwsSolutions-S1 at DbExport/UnloggedBucket"):
        _synth_with_nag(app)


def test_cfn_lint_passes_on_the_template(default_stack: Synthesized, vpc_stack: Synthesized) -> None:
    from cfnlint.api import ManualArgs, lint

    # W3005 (a DependsOn that a GetAtt already implies) is how CDK makes every function wait for its role's
    # policy; it is harmless and not ours to change.
    config = ManualArgs(regions=["us-east-1", "eu-west-1"], ignore_checks=["W3005"])
    for synth in (default_stack, vpc_stack):
        matches = lint(json.dumps(synth.json), config=config)
        assert [str(m) for m in matches] == []


def _code_asset(tmp_path: Path) -> Path:
    """What the functions' code asset holds, copied with CDK's own copier and the stack's exclusions."""
    out = tmp_path / "code"
    cdk.FileSystem.copy_directory(
        str(ROOT), str(out), cdk.CopyOptions(exclude=CODE_EXCLUDE, ignore_mode=cdk.IgnoreMode.GIT)
    )
    return out


def test_code_asset_holds_only_the_core_and_the_handlers(tmp_path: Path) -> None:
    out = _code_asset(tmp_path)
    assert {p.name for p in out.iterdir()} <= {"dbexport", "lambdas"}
    assert (out / "dbexport" / "steps.py").is_file()
    assert not list(out.rglob("__pycache__")) and not list(out.rglob("*.pyc"))


def test_layer_and_code_fit_lambdas_unzipped_limit(tmp_path: Path, layer_dir: Path) -> None:
    layer = layer_build.tree_size(layer_dir / "python")
    code = layer_build.tree_size(_code_asset(tmp_path))
    print(f"layer {layer / 1e6:.1f} MB + code {code / 1e6:.2f} MB = {(layer + code) / 1e6:.1f} MB of 262.1 MB")
    assert layer + code < LAMBDA_UNZIPPED_LIMIT
    # what Lambda must not get twice, or at all
    for name in ("boto3", "botocore", "s3transfer"):
        assert not (layer_dir / "python" / name).exists(), name
    assert not list((layer_dir / "python").rglob("__pycache__"))
    assert not (layer_dir / "python" / "pyarrow" / "include").exists()


def _python312() -> str | None:
    candidates = [os.environ.get("DBEXPORT_PYTHON312", ""), "/usr/bin/python3.12", "/usr/local/bin/python3.12"]
    candidates += sorted(str(p) for p in Path.home().glob(".pyenv/versions/3.12*/bin/python3.12"))
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def test_layer_imports_on_python_312_with_the_handlers(layer_dir: Path, tmp_path: Path) -> None:
    """The stripped layer still imports (pyarrow writes Parquet), beside boto3 as the Lambda runtime has it."""
    python = _python312()
    if python is None:
        pytest.skip("no CPython 3.12 here (set DBEXPORT_PYTHON312): the layer's cp312 wheels cannot be imported")
    runtime = tmp_path / "runtime"  # stands in for the runtime's boto3, with the venv's pure-Python copies
    runtime.mkdir()
    import boto3
    import botocore

    site = Path(boto3.__file__).parents[1]
    assert site == Path(botocore.__file__).parents[1]
    for name in ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "six.py", "urllib3"):
        (runtime / name).symlink_to(site / name)
    handlers = sorted(p.stem for p in (ROOT / "lambdas").glob("*.py") if p.stem != "__init__")
    code = _code_asset(tmp_path)
    script = f"""
import sys
sys.path[:0] = [{str(code)!r}, {str(layer_dir / "python")!r}, {str(runtime)!r}]
import importlib, io
import pyarrow, pyarrow.parquet as pq, pyarrow.fs, pyarrow.compute, pyarrow.dataset
import adbc_driver_postgresql.dbapi, psycopg, pydantic
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.parser import event_parser
assert pyarrow.__file__.startswith({str(layer_dir)!r}), pyarrow.__file__
assert psycopg.pq.__impl__ == "binary"
buf = pyarrow.BufferOutputStream()
pq.write_table(pyarrow.table({{"a": [1, 2, 3]}}), buf, compression="gzip")
assert pq.read_table(pyarrow.BufferReader(buf.getvalue())).num_rows == 3
for module in {handlers!r}:
    importlib.import_module("lambdas." + module)
print("ok", pyarrow.__version__, len({handlers!r}), "handlers")
"""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "AWS_DEFAULT_REGION": "us-east-1",
        "TASK_TABLE_NAME": "tasks",
        "WORK_BUCKET_NAME": "work",
        "SOURCE_SECRET_ARN": SECRET_ARN,
        "POWERTOOLS_SERVICE_NAME": "dbexport",
        "POWERTOOLS_METRICS_NAMESPACE": "dbexport",
    }
    result = subprocess.run(
        [python, "-I", "-S", "-B", "-c", script], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("ok"), result.stdout
    print(result.stdout.strip())


def _require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{tool} is not installed; CI must run the CDK CLI")
        pytest.skip(f"{tool} is not installed")
    return path


@pytest.mark.cdk_cli
def test_cdk_cli_synth_works_offline(tmp_path: Path, layer_dir: Path) -> None:
    """`npx cdk synth` with the pinned CLI (package-lock.json) and cdk.json as it is, as scripts/synth runs it."""
    npm = _require("npm")
    env = {
        **os.environ,
        "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1",
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "18,20",
        "CDK_DISABLE_CLI_TELEMETRY": "true",
        "AWS_EC2_METADATA_DISABLED": "true",  # no instance-metadata probing for credentials
    }
    if not (ROOT / "node_modules" / ".bin" / "cdk").exists():
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=ROOT, env=env, check=True, timeout=300)
    out = tmp_path / "cdk.out"
    result = subprocess.run(
        [str(ROOT / "node_modules" / ".bin" / "cdk"), "synth", "--quiet", "--no-notices", "--output", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    template = json.loads((out / "DbExport.template.json").read_text())
    assert len([r for r in template["Resources"].values() if r["Type"] == "AWS::Lambda::Function"]) == 9
    # the staged code asset: only the core and the handlers
    code_dirs = [p for p in out.glob("asset.*") if p.is_dir() and (p / "dbexport").is_dir()]
    assert len(code_dirs) == 1 and {p.name for p in code_dirs[0].iterdir()} <= {"dbexport", "lambdas"}

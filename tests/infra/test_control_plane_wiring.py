"""The control plane's wiring, read from the synthesized template: what a broken edit would silently break."""

from __future__ import annotations

import pytest

pytest.importorskip("aws_cdk", reason="the `cdk` extra is not installed (pip install -e '.[cdk]')")

from typing import Any

from aws_cdk.assertions import Match, Template

from functions.core import names
from functions.local.resources import notification_routes
from infra.cdk.config import PROFILES, RECONCILE_RATE_MINUTES
from infra.cdk.stacks.control_plane import CONSUMERS, LOGICAL_IDS
from tests.infra.cfn import as_list, function_environment, ref, refs_in, statements
from tests.infra.conftest import Synth

COMMON_ENV = {
    "ENVIRONMENT",
    "LOG_LEVEL",
    "POWERTOOLS_SERVICE_NAME",
    "DATABASE_NAME",
    "COMPUTE_BACKEND",
    "AWS_BUCKET_NAME",
    "ARTIFACTS_BUCKET_NAME",
    "INGEST_QUEUE_URL",
    "DISPATCH_QUEUE_URL",
    "STATUS_QUEUE_URL",
    "MONGODB_URL_SECRET_ARN",
    "REDIS_URL_SECRET_ARN",
}
SAGEMAKER_ENV = {"SAGEMAKER_EXECUTION_ROLE_ARN", "TRAINER_IMAGE_URI", "INFERENCE_IMAGE_URI"}


def _queues_by_name(synth: Synth) -> dict[str, str]:
    """Physical queue name → logical id."""
    return {r["Properties"]["QueueName"]: lid for lid, r in synth.resources("controlplane", "AWS::SQS::Queue").items()}


def _buckets(synth: Synth) -> dict[str, str]:
    """`datasets` / `artifacts` → the bucket's logical id, from the env var each function gets."""
    env = function_environment(synth.template("controlplane"), LOGICAL_IDS["api"])
    return {"datasets": str(ref(env["AWS_BUCKET_NAME"])), "artifacts": str(ref(env["ARTIFACTS_BUCKET_NAME"]))}


def _function_of_alias(template: dict[str, Any], target: Any) -> str:
    """The function behind an alias reference (a Ref, or `name:live` joined from the alias ARN)."""
    (alias_id,) = refs_in(target)
    alias = template["Resources"][alias_id]
    assert alias["Type"] == "AWS::Lambda::Alias"
    return str(ref(alias["Properties"]["FunctionName"]))


def test_object_created_under_each_ingest_prefix_and_artifacts_reaches_its_queue(dev: Synth) -> None:
    queues = _queues_by_name(dev)
    buckets = _buckets(dev)
    expected = {
        (buckets[bucket], prefix, queues[f"{queue}-dev"])
        for bucket, routes in notification_routes("datasets", "artifacts").items()
        for prefix, queue in routes
    }
    found = set()
    for resource in dev.resources("controlplane", "Custom::S3BucketNotifications").values():
        props = resource["Properties"]
        for config in props["NotificationConfiguration"].get("QueueConfigurations", []):
            assert config["Events"] == ["s3:ObjectCreated:*"]
            rules = config["Filter"]["Key"]["FilterRules"]
            assert [r["Name"] for r in rules] == ["prefix"]
            found.add((ref(props["BucketName"]), rules[0]["Value"], ref(config["QueueArn"])))
    assert found == expected
    assert len(expected) == len(names.INGEST_PREFIXES) + 1


def test_each_queue_has_a_dead_letter_queue_after_max_receive_count(dev: Synth) -> None:
    queues = _queues_by_name(dev)
    for queue in names.QUEUES:
        props = dev.template("controlplane")["Resources"][queues[f"{queue}-dev"]]["Properties"]
        redrive = props["RedrivePolicy"]
        assert redrive["maxReceiveCount"] == names.MAX_RECEIVE_COUNT == 5
        assert ref(redrive["deadLetterTargetArn"]) == queues[names.dlq_name(f"{queue}-dev")]


def test_queue_visibility_is_at_least_six_times_its_consumers_timeout(dev: Synth) -> None:
    template = dev.template("controlplane")
    mappings = dev.resources("controlplane", "AWS::Lambda::EventSourceMapping").values()
    assert len(mappings) == len(names.QUEUES)
    for mapping in mappings:
        props = mapping["Properties"]
        queue = template["Resources"][str(ref(props["EventSourceArn"]))]["Properties"]
        function_id = _function_of_alias(template, props["FunctionName"])
        timeout = template["Resources"][function_id]["Properties"]["Timeout"]
        assert queue["VisibilityTimeout"] >= 6 * timeout, (queue["QueueName"], timeout)


def test_workers_consume_through_their_alias_with_partial_batch_responses(dev: Synth) -> None:
    template = dev.template("controlplane")
    queues = {lid: name for name, lid in _queues_by_name(dev).items()}
    consumers = {}
    for mapping in dev.resources("controlplane", "AWS::Lambda::EventSourceMapping").values():
        props = mapping["Properties"]
        assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
        assert props["BatchSize"] == names.SQS_BATCH_SIZE
        queue_name = queues[str(ref(props["EventSourceArn"]))]
        consumers[queue_name] = _function_of_alias(template, props["FunctionName"])
    assert consumers == {f"{queue}-dev": LOGICAL_IDS[key] for queue, key in CONSUMERS.items()}


def test_buckets_and_queues_refuse_plain_http(dev: Synth) -> None:
    for kind, target_key in (("AWS::S3::BucketPolicy", "Bucket"), ("AWS::SQS::QueuePolicy", "Queues")):
        policies = dev.resources("controlplane", kind).values()
        protected = set()
        for policy in policies:
            denies = [
                s
                for s in policy["Properties"]["PolicyDocument"]["Statement"]
                if s["Effect"] == "Deny" and s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
            ]
            if denies:
                protected |= refs_in(policy["Properties"][target_key])
        kind_of_target = "AWS::S3::Bucket" if target_key == "Bucket" else "AWS::SQS::Queue"
        assert protected == set(dev.resources("controlplane", kind_of_target)), kind


def test_buckets_block_public_access_encrypt_and_log_access(dev: Synth) -> None:
    buckets = dev.resources("controlplane", "AWS::S3::Bucket")
    assert len(buckets) == 5  # datasets, artifacts, access logs, the console's files and its CloudFront logs
    for lid, bucket in buckets.items():
        props = bucket["Properties"]
        assert props["PublicAccessBlockConfiguration"] == dict.fromkeys(
            ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"), True
        ), lid
        assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"], lid
    ids = _buckets(dev)
    for key in ("datasets", "artifacts"):
        assert "DestinationBucketName" in buckets[ids[key]]["Properties"]["LoggingConfiguration"]
    artifacts = buckets[ids["artifacts"]]["Properties"]
    assert artifacts["VersioningConfiguration"] == {"Status": "Enabled"}
    rules = {r["Id"]: r for r in artifacts["LifecycleConfiguration"]["Rules"]}
    assert rules["expire-checkpoints"]["TagFilters"] == [{"Key": "ministudio-kind", "Value": "checkpoint"}]
    assert rules["expire-checkpoints"]["Prefix"] == names.ARTIFACTS_PREFIX
    datasets_rules = buckets[ids["datasets"]]["Properties"]["LifecycleConfiguration"]["Rules"]
    assert {r.get("Prefix") for r in datasets_rules} >= {names.INCOMING_PREFIX}
    assert all("ExpirationInDays" not in r for r in datasets_rules)  # a dataset's object is never expired


def test_functions_get_the_settings_they_read(synths: dict[str, Synth]) -> None:
    for name, synth in synths.items():
        template = synth.template("controlplane")
        for key, lid in LOGICAL_IDS.items():
            env = function_environment(template, lid)
            assert set(env) >= COMMON_ENV, (name, key, COMMON_ENV - set(env))
            assert env["COMPUTE_BACKEND"] == synth.context["compute"]
            assert env["ENVIRONMENT"] == synth.context["env"]
            if key != "ingest" and synth.context["compute"] == "sagemaker":
                assert set(env) >= SAGEMAKER_ENV, (name, key)
            if key != "ingest" and synth.context["compute"] == "eks":
                assert {"EKS_CLUSTER_NAME", "EKS_NAMESPACE", "KEDA_PROMETHEUS_URL"} <= set(env), (name, key)
            assert ("ADMIN_API_KEY_SECRET_ARN" in env) == (key == "api"), (name, key)


def test_each_function_reads_only_the_secrets_and_prefixes_it_needs(dev: Synth) -> None:
    template = dev.template("controlplane")
    buckets = _buckets(dev)
    admin_secret = ref(function_environment(template, LOGICAL_IDS["api"])["ADMIN_API_KEY_SECRET_ARN"])
    by_role: dict[str, list[dict[str, Any]]] = {}
    for lid, statement in statements(template):
        for role in refs_in(template["Resources"][lid]["Properties"].get("Roles", [])):
            by_role.setdefault(role, []).append(statement)
    for key, function_id in LOGICAL_IDS.items():
        role = str(ref(template["Resources"][function_id]["Properties"]["Role"]))
        granted = by_role[role]
        reads_admin = any(admin_secret in refs_in(s.get("Resource")) for s in granted)
        assert reads_admin == (key == "api"), key
        object_grants = [s for s in granted if any(str(a).endswith("Object") for a in as_list(s["Action"]))]
        for statement in object_grants:
            for resource in as_list(statement["Resource"]):
                joined = resource["Fn::Join"][1]
                assert ref(joined[0]) in buckets.values() and joined[1].endswith("/*"), (key, joined)
                prefix = joined[1].removeprefix("/").removesuffix("*")
                assert prefix in (*names.INGEST_PREFIXES, names.ARTIFACTS_PREFIX), (key, prefix)
        writes_datasets = any(
            "s3:PutObject" in as_list(s["Action"]) and buckets["datasets"] in refs_in(s["Resource"])
            for s in object_grants
        )
        assert writes_datasets == (key == "api"), key
        lists_uploads = any(
            "s3:ListBucketMultipartUploads" in as_list(s["Action"]) and buckets["datasets"] in refs_in(s["Resource"])
            for s in granted
        )
        assert lists_uploads == (key == "api"), key  # cancelling an upload aborts what is open under its prefix


def test_sagemaker_state_changes_reach_the_status_queue(dev: Synth, synths: dict[str, Synth]) -> None:
    queues = _queues_by_name(dev)
    template = Template.from_json(dev.template("controlplane"))
    template.has_resource_properties(
        "AWS::Events::Rule",
        {
            "EventPattern": {
                "source": ["aws.sagemaker"],
                "detail-type": Match.array_with(
                    ["SageMaker Training Job State Change", "SageMaker Endpoint State Change"]
                ),
            },
            "Targets": [Match.object_like({"Arn": {"Fn::GetAtt": [queues[f"{names.STATUS_QUEUE}-dev"], "Arn"]}})],
        },
    )
    # On EKS nothing SageMaker says concerns Mini Studio: no rule, so no stray messages.
    for synth in synths.values():
        rules = synth.resources("controlplane", "AWS::Events::Rule").values()
        sagemaker = [r for r in rules if r["Properties"].get("EventPattern", {}).get("source") == ["aws.sagemaker"]]
        assert len(sagemaker) == (synth.context["compute"] == "sagemaker")


def test_reconciler_runs_every_five_minutes_through_its_alias_without_retries(dev: Synth) -> None:
    template = dev.template("controlplane")
    scheduled = [
        r["Properties"]
        for r in dev.resources("controlplane", "AWS::Events::Rule").values()
        if "ScheduleExpression" in r["Properties"]
    ]
    assert [p["ScheduleExpression"] for p in scheduled] == [f"rate({RECONCILE_RATE_MINUTES} minutes)"]
    target = scheduled[0]["Targets"][0]
    assert _function_of_alias(template, target["Arn"]) == LOGICAL_IDS["reconcile"]
    assert target["RetryPolicy"]["MaximumRetryAttempts"] == 0
    reconcile = template["Resources"][LOGICAL_IDS["reconcile"]]["Properties"]
    assert reconcile["Timeout"] < RECONCILE_RATE_MINUTES * 60  # runs never overlap


def test_alarms_watch_every_dlq_the_api_and_every_function(dev: Synth, prod: Synth) -> None:
    queues = _queues_by_name(dev)
    alarms = list(dev.resources("controlplane", "AWS::CloudWatch::Alarm").values())
    dlq_watched = {
        ref(d["Value"]) for a in alarms for d in a["Properties"].get("Dimensions", []) if d["Name"] == "QueueName"
    }
    assert dlq_watched == {queues[names.dlq_name(f"{q}-dev")] for q in names.QUEUES}
    assert any(a["Properties"]["MetricName"] == "5xx" for a in alarms)
    errors = {
        ref(d["Value"])
        for a in alarms
        if a["Properties"]["MetricName"] == "Errors"
        for d in a["Properties"]["Dimensions"]
    }
    assert errors == set(LOGICAL_IDS.values())
    assert all(a["Properties"]["Threshold"] == 0 for a in alarms)
    prod_alarms = prod.resources("controlplane", "AWS::CloudWatch::Alarm").values()
    assert all(a["Properties"]["AlarmActions"] == [prod.context["alarm_topic_arn"]] for a in prod_alarms)


def test_api_stage_is_throttled_and_logged_per_environment(dev: Synth, prod: Synth) -> None:
    for synth in (dev, prod):
        profile = PROFILES[synth.context["env"]]
        stage = Template.from_json(synth.template("controlplane"))
        stage.has_resource_properties(
            "AWS::ApiGatewayV2::Stage",
            {
                "StageName": "$default",
                "DefaultRouteSettings": {
                    "ThrottlingRateLimit": profile.api_rate_limit,
                    "ThrottlingBurstLimit": profile.api_burst_limit,
                },
                "AccessLogSettings": {
                    "DestinationArn": Match.any_value(),
                    "Format": Match.string_like_regexp("requestId"),
                },
            },
        )
    prod_template = Template.from_json(prod.template("controlplane"))
    prod_template.has_resource_properties("AWS::ApiGatewayV2::DomainName", {"DomainName": prod.context["domain_name"]})
    prod_template.resource_count_is("AWS::ApiGatewayV2::ApiMapping", 1)
    Template.from_json(dev.template("controlplane")).resource_count_is("AWS::ApiGatewayV2::DomainName", 0)


def test_functions_snapstart_and_everything_invokes_the_live_alias(dev: Synth) -> None:
    template = dev.template("controlplane")
    aliases = dev.resources("controlplane", "AWS::Lambda::Alias")
    for lid in LOGICAL_IDS.values():
        props = template["Resources"][lid]["Properties"]
        assert props["SnapStart"] == {"ApplyOn": "PublishedVersions"}
        assert props["Runtime"] == "python3.12" and props["Architectures"] == ["x86_64"]
        (alias,) = [a for a in aliases.values() if ref(a["Properties"]["FunctionName"]) == lid]
        assert alias["Properties"]["Name"] == "live"
        version = template["Resources"][str(ref(alias["Properties"]["FunctionVersion"]))]
        assert version["Type"] == "AWS::Lambda::Version" and ref(version["Properties"]["FunctionName"]) == lid
    (integration,) = dev.resources("controlplane", "AWS::ApiGatewayV2::Integration").values()
    assert ref(integration["Properties"]["IntegrationUri"]) in aliases


def test_prod_keeps_data_and_reserves_one_reconciler(prod: Synth, dev: Synth) -> None:
    for synth, policy in ((prod, "Retain"), (dev, "Delete")):
        for lid, bucket in synth.resources("controlplane", "AWS::S3::Bucket").items():
            assert bucket["DeletionPolicy"] == policy, (synth.name, lid)
        for group in synth.resources("controlplane", "AWS::Logs::LogGroup").values():
            assert group["Properties"]["RetentionInDays"] == (90 if synth is prod else 14)
    prod_reconcile = prod.template("controlplane")["Resources"][LOGICAL_IDS["reconcile"]]["Properties"]
    assert prod_reconcile["ReservedConcurrentExecutions"] == 1
    dev_functions = [dev.template("controlplane")["Resources"][lid]["Properties"] for lid in LOGICAL_IDS.values()]
    assert all("ReservedConcurrentExecutions" not in p for p in dev_functions)

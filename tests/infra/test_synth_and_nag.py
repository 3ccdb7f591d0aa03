"""`cdk synth` works for every variant without credentials, and cdk-nag finds nothing left unexplained."""

from __future__ import annotations

import pytest

pytest.importorskip("aws_cdk", reason="the `cdk` extra is not installed (pip install -e '.[cdk]')")

from pathlib import Path
from typing import Any

import pytest

from tests.infra.cfn import nag_findings, statements
from tests.infra.conftest import VARIANTS, Synth


def test_every_variant_synthesizes_network_compute_and_control_plane(synths: dict[str, Synth]) -> None:
    # Given both environments and both compute backends, When synthesized as the CLI would, Then three stacks each.
    assert set(synths) == set(VARIANTS)
    for name, synth in synths.items():
        prefix = synth.prefix
        assert set(synth.templates) == {f"{prefix}-Network", f"{prefix}-Compute", f"{prefix}-ControlPlane"}, name


def test_compute_stack_follows_the_compute_context(synths: dict[str, Synth]) -> None:
    for name, synth in synths.items():
        types = {r["Type"] for r in synth.template("compute")["Resources"].values()}
        if synth.context["compute"] == "eks":
            assert "Custom::AWSCDK-EKS-HelmChart" in types, name
        else:
            assert "Custom::AWSCDK-EKS-HelmChart" not in types, name
            roles = synth.resources("compute", "AWS::IAM::Role").values()
            principals = [
                s["Principal"] for r in roles for s in r["Properties"]["AssumeRolePolicyDocument"]["Statement"]
            ]
            assert {"Service": "sagemaker.amazonaws.com"} in principals, name


def test_cdk_nag_reports_no_unsuppressed_finding(synths: dict[str, Synth]) -> None:
    for name, synth in synths.items():
        assert nag_findings(synth.outdir) == [], name


def test_nag_finding_check_sees_a_real_violation(tmp_path: Path) -> None:
    # Guard for the test above: an unencrypted, non-TLS queue without a DLQ must show up as findings.
    from aws_cdk import App, Stack
    from aws_cdk import aws_sqs as sqs

    from infra.cdk.nag import apply_nag

    app = App(outdir=str(tmp_path))
    stack = Stack(app, "Bad")
    sqs.Queue(stack, "Queue", encryption=sqs.QueueEncryption.UNENCRYPTED)
    apply_nag(app, [stack])
    app.synth()
    findings = nag_findings(tmp_path)
    assert any("AwsSolutions-SQS2" in f for f in findings), findings  # no server-side encryption
    assert any("AwsSolutions-SQS4" in f for f in findings), findings  # TLS not enforced


def test_no_iam_statement_grants_everything_on_everything(synths: dict[str, Synth]) -> None:
    for name, synth in synths.items():
        for stack, template in synth.templates.items():
            for lid, statement in statements(template):
                if statement.get("Effect") != "Allow":
                    continue
                actions = statement.get("Action", [])
                actions = actions if isinstance(actions, list) else [actions]
                resources = statement.get("Resource", [])
                resources = resources if isinstance(resources, list) else [resources]
                broad = [a for a in actions if a == "*" or (isinstance(a, str) and a.endswith(":*"))]
                assert not broad, f"{name}/{stack}/{lid}: {broad}"
                if "*" in resources:
                    assert not any(str(a).startswith("s3:") for a in actions), f"{name}/{stack}/{lid}: S3 on *"


@pytest.mark.parametrize(
    ("context", "error"),
    [
        ({"env": "staging"}, "-c env=staging"),
        ({"compute": "ray"}, "-c compute=ray"),
        ({"domain_name": "api.example.com"}, "go together"),
        ({"vpc_id": "vpc-0123456789abcdef0"}, "account and region"),
    ],
)
def test_bad_context_is_refused_with_the_key_named(context: dict[str, Any], error: str) -> None:
    from infra.cdk.config import DeployConfig

    with pytest.raises(ValueError, match=error):
        DeployConfig.from_context(context.get)

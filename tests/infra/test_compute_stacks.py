"""Compute stacks: SageMaker roles and images; EKS cluster, node groups, add-ons (the load balancer controller on
new clusters), the functions' cluster access and RBAC."""

from __future__ import annotations

import pytest

pytest.importorskip("aws_cdk", reason="the `cdk` extra is not installed (pip install -e '.[cdk]')")

import json

from aws_cdk.assertions import Match, Template

from functions.compute.k8s import CLUSTER_READER_ROLE
from infra.cdk.config import SERVING_NAMESPACE, WORKLOAD_SERVICE_ACCOUNT
from infra.cdk.constructs.eks_platform import (
    API_GROUP,
    CHARTS,
    DEVICE_PLUGIN,
    DISPATCH_GROUP,
    OBSERVE_GROUP,
    READINESS_GATE_LABEL,
)
from infra.cdk.stacks.compute_eks import ALB_CONTROLLER_VERSION
from infra.cdk.stacks.control_plane import LOGICAL_IDS
from tests.infra.cfn import as_list, ref, refs_in, statements
from tests.infra.conftest import CLUSTER_SG, IMPORTED_CLUSTER, Synth


def test_images_are_scanned_on_push_and_expire(dev: Synth) -> None:
    repos = dev.resources("compute", "AWS::ECR::Repository").values()
    assert {r["Properties"]["RepositoryName"] for r in repos} == {"ministudio-trainer-dev", "ministudio-inference-dev"}
    for repo in repos:
        assert repo["Properties"]["ImageScanningConfiguration"] == {"ScanOnPush": True}
        rules = json.loads(repo["Properties"]["LifecyclePolicy"]["LifecyclePolicyText"])["rules"]
        assert {r["selection"]["tagStatus"] for r in rules} == {"untagged", "any"}


def test_dispatch_may_pass_only_the_execution_role_and_only_to_sagemaker(dev: Synth) -> None:
    compute = dev.template("compute")
    (execution_role,) = [
        lid
        for lid, r in compute["Resources"].items()
        if r["Type"] == "AWS::IAM::Role"
        and r["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]
        == {"Service": "sagemaker.amazonaws.com"}
    ]
    control = dev.template("controlplane")
    passes = [(lid, s) for lid, s in statements(control) if "iam:PassRole" in as_list(s["Action"])]
    assert passes, "dispatch cannot start training jobs without PassRole"
    for lid, statement in passes:
        (resource,) = as_list(statement["Resource"])
        assert f"ExportsOutputFnGetAtt{execution_role}Arn" in json.dumps(resource)
        assert statement["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}
        roles = control["Resources"][lid]["Properties"]["Roles"]
        dispatch_role = ref(control["Resources"][LOGICAL_IDS["dispatch"]]["Properties"]["Role"])
        assert [ref(r) for r in roles] == [dispatch_role]


def test_dispatch_manages_training_jobs_endpoints_and_inference_components(dev: Synth) -> None:
    actions = {
        a
        for lid, s in statements(dev.template("controlplane"))
        if lid.startswith("SageMakerDispatch")
        for a in as_list(s["Action"])
    }
    assert {
        "sagemaker:CreateTrainingJob",
        "sagemaker:StopTrainingJob",
        "sagemaker:CreateModel",
        "sagemaker:CreateEndpointConfig",
        "sagemaker:CreateEndpoint",
        "sagemaker:CreateInferenceComponent",
        "sagemaker:DeleteInferenceComponent",
        "application-autoscaling:RegisterScalableTarget",
        "application-autoscaling:PutScalingPolicy",
    } <= actions
    status_actions = {
        a
        for lid, s in statements(dev.template("controlplane"))
        if lid.startswith("SageMakerStatus")
        for a in as_list(s["Action"])
    }
    assert status_actions and all(a.startswith("sagemaker:Describe") for a in status_actions)


def test_new_cluster_is_private_logged_and_has_a_tainted_gpu_node_group(synths: dict[str, Synth]) -> None:
    compute = Template.from_json(synths["prod-eks"].template("compute"))
    compute.has_resource_properties(
        "AWS::EKS::Cluster",
        {
            "ResourcesVpcConfig": Match.object_like({"EndpointPublicAccess": False, "EndpointPrivateAccess": True}),
            "Logging": {"ClusterLogging": {"EnabledTypes": Match.any_value()}},
        },
    )
    compute.has_resource_properties(
        "AWS::EKS::Nodegroup",
        {
            "AmiType": "AL2023_x86_64_NVIDIA",
            "InstanceTypes": ["g6.xlarge", "g5.xlarge"],
            "Taints": [{"Effect": "NO_SCHEDULE", "Key": "nvidia.com/gpu", "Value": "true"}],
            "ScalingConfig": Match.object_like({"MinSize": 1, "MaxSize": 4}),
        },
    )
    compute.has_resource_properties("AWS::EKS::Addon", {"AddonName": "eks-pod-identity-agent"})


def test_helm_charts_are_pinned_and_the_device_plugin_only_goes_on_new_clusters(synths: dict[str, Synth]) -> None:
    for name, new in (("prod-eks", True), ("dev-eks-imported", False)):
        charts = {
            r["Properties"]["Chart"]: r["Properties"]
            for r in synths[name].resources("compute", "Custom::AWSCDK-EKS-HelmChart").values()
        }
        expected = [*CHARTS.values(), *([DEVICE_PLUGIN] if new else [])]
        controller = {"aws-load-balancer-controller"} if new else set()
        assert set(charts) == {c.chart for c in expected} | controller, name
        for chart in expected:
            assert charts[chart.chart]["Version"] == chart.version
            assert charts[chart.chart]["Repository"] == chart.repository
            assert charts[chart.chart]["Namespace"] == chart.namespace


def test_new_cluster_runs_the_load_balancer_controller_with_its_own_irsa_role(synths: dict[str, Synth]) -> None:
    compute = synths["prod-eks"].template("compute")
    resources = compute["Resources"]
    (chart_id,) = [
        lid
        for lid, r in resources.items()
        if r["Type"] == "Custom::AWSCDK-EKS-HelmChart" and r["Properties"]["Chart"] == "aws-load-balancer-controller"
    ]
    chart = resources[chart_id]["Properties"]
    assert chart["Repository"] == "https://aws.github.io/eks-charts" and chart["Namespace"] == "kube-system"
    assert chart["Version"] == ALB_CONTROLLER_VERSION.helm_chart_version
    values = _joined(chart["Values"])
    assert '"serviceAccount":{"create":false,"name":"aws-load-balancer-controller"}' in values
    assert f'"tag":"{ALB_CONTROLLER_VERSION.version}"' in values
    # The service account is annotated with a role that only the cluster's OIDC provider (IRSA) can assume, for
    # exactly that service account, and the role holds the controller's policy (load balancers, target groups).
    (account,) = [
        r
        for r in resources.values()
        if r["Type"] == "Custom::AWSCDK-EKS-KubernetesResource"
        and '"name":"aws-load-balancer-controller","namespace":"kube-system"' in _joined(r["Properties"]["Manifest"])
    ]
    manifest = account["Properties"]["Manifest"]
    role_id = next(ref(p) for p in manifest["Fn::Join"][1] if isinstance(p, dict))
    trust = resources[role_id]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert [s["Action"] for s in trust] == ["sts:AssumeRoleWithWebIdentity"]
    assert resources[ref(trust[0]["Principal"]["Federated"])]["Type"] == "Custom::AWSCDKOpenIdConnectProvider"
    actions = {
        a
        for lid, s in statements(compute)
        if role_id in refs_in(resources[lid]["Properties"].get("Roles", []))
        for a in as_list(s["Action"])
    }
    assert {"elasticloadbalancing:CreateLoadBalancer", "elasticloadbalancing:CreateTargetGroup"} <= actions
    # The controller's pods need nodes, and its webhooks must answer before the platform's charts create pods.
    depends = resources[chart_id].get("DependsOn", [])
    assert any(d.startswith("ClusterNodegroupSystem") for d in depends)
    platform = {c.chart for c in CHARTS.values()}
    for r in resources.values():
        if r["Type"] == "Custom::AWSCDK-EKS-HelmChart" and r["Properties"]["Chart"] in platform:
            assert chart_id in r.get("DependsOn", []), r["Properties"]["Chart"]
    # The private subnets carry the tag the controller discovers internal NLB subnets by.
    assert '"kubernetes.io/role/internal-elb"' in json.dumps(synths["prod-eks"].template("network"))


def test_an_imported_cluster_gets_no_second_load_balancer_controller(synths: dict[str, Synth]) -> None:
    charts = synths["dev-eks-imported"].resources("compute", "Custom::AWSCDK-EKS-HelmChart").values()
    assert "aws-load-balancer-controller" not in {r["Properties"]["Chart"] for r in charts}


def test_functions_reach_the_vllm_port_on_the_cluster_security_group(synths: dict[str, Synth]) -> None:
    # New cluster: the cluster security group (the managed nodes' and so the pods' group, where the controller also
    # admits its NLBs) admits the functions' group on 443 and 8000.
    ingress = synths["prod-eks"].resources("compute", "AWS::EC2::SecurityGroupIngress").values()
    ports = {
        r["Properties"]["FromPort"]
        for r in ingress
        if r["Properties"]["GroupId"] == {"Fn::GetAtt": ["ClusterEB0386A7", "ClusterSecurityGroupId"]}
        and "FunctionsSecurityGroup" in json.dumps(r["Properties"]["SourceSecurityGroupId"])
    }
    assert ports == {443, 8000}


def test_serving_namespace_rbac_and_workload_identity(synths: dict[str, Synth]) -> None:
    for synth in (synths["prod-eks"], synths["dev-eks-imported"]):
        manifests = [
            doc
            for r in synth.resources("compute", "Custom::AWSCDK-EKS-KubernetesResource").values()
            for doc in json.loads(_joined(r["Properties"]["Manifest"]))
        ]
        kinds = {(m["kind"], m["metadata"]["name"]) for m in manifests}
        assert {("Namespace", SERVING_NAMESPACE), ("ServiceAccount", WORKLOAD_SERVICE_ACCOUNT)} <= kinds
        (namespace,) = [m for m in manifests if m["kind"] == "Namespace"]
        assert namespace["metadata"]["labels"][READINESS_GATE_LABEL] == "enabled"  # ready = healthy in the NLB
        roles = {m["metadata"]["name"]: m["rules"] for m in manifests if m["kind"] == "Role"}
        assert set(roles) == {DISPATCH_GROUP, OBSERVE_GROUP, API_GROUP}
        assert all(set(rule["verbs"]) == {"get", "list", "watch"} for rule in roles[OBSERVE_GROUP])
        assert any("rayjobs" in rule["resources"] and "create" in rule["verbs"] for rule in roles[DISPATCH_GROUP])
        assert any("scaledobjects" in rule["resources"] for rule in roles[DISPATCH_GROUP])
        # The API reads state and scales (patch), and never sees Secrets nor creates or deletes anything.
        api_verbs = {v for rule in roles[API_GROUP] for v in rule["verbs"]}
        assert api_verbs == {"get", "list", "watch", "patch"}
        patched = {r for rule in roles[API_GROUP] if "patch" in rule["verbs"] for r in rule["resources"]}
        assert patched == {"deployments", "scaledobjects"}
        assert all("secrets" not in rule["resources"] for g in (API_GROUP, OBSERVE_GROUP) for rule in roles[g])
        bindings = {m["metadata"]["name"]: m for m in manifests if m["kind"] == "RoleBinding"}
        assert {b["subjects"][0]["name"] for b in bindings.values()} == {DISPATCH_GROUP, OBSERVE_GROUP, API_GROUP}
        Template.from_json(synth.template("compute")).has_resource_properties(
            "AWS::EKS::PodIdentityAssociation",
            {"Namespace": SERVING_NAMESPACE, "ServiceAccount": WORKLOAD_SERVICE_ACCOUNT},
        )


def test_cluster_status_reads_nodes_and_pods_through_a_cluster_role(synths: dict[str, Synth]) -> None:
    for synth in (synths["prod-eks"], synths["dev-eks-imported"]):
        manifests = [
            doc
            for r in synth.resources("compute", "Custom::AWSCDK-EKS-KubernetesResource").values()
            for doc in json.loads(_joined(r["Properties"]["Manifest"]))
        ]
        (cluster_role,) = [m for m in manifests if m["kind"] == "ClusterRole"]
        assert cluster_role["metadata"]["name"] == CLUSTER_READER_ROLE  # the name the backend's 403 note gives
        assert "namespace" not in cluster_role["metadata"]
        assert cluster_role["rules"] == [{"apiGroups": [""], "resources": ["nodes", "pods"], "verbs": ["get", "list"]}]
        (binding,) = [m for m in manifests if m["kind"] == "ClusterRoleBinding"]
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": CLUSTER_READER_ROLE,
        }
        # Bound to the API's group: the API function's role is mapped to it by its access entry (next test).
        assert binding["subjects"] == [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": API_GROUP}]


def test_workers_reach_the_cluster_through_access_entries_not_aws_auth(synths: dict[str, Synth]) -> None:
    for synth in (synths["prod-eks"], synths["dev-eks-imported"]):
        control = synth.template("controlplane")
        entries = synth.resources("controlplane", "AWS::EKS::AccessEntry").values()
        groups = {ref(e["Properties"]["PrincipalArn"]): e["Properties"]["KubernetesGroups"] for e in entries}
        role_of = {key: ref(control["Resources"][lid]["Properties"]["Role"]) for key, lid in LOGICAL_IDS.items()}
        assert groups == {
            role_of["dispatch"]: [DISPATCH_GROUP],
            role_of["status"]: [OBSERVE_GROUP],
            role_of["reconcile"]: [OBSERVE_GROUP],
            role_of["api"]: [API_GROUP],
        }
        # Each of them, the API included, may find the cluster's endpoint (DescribeCluster) and nothing more in IAM.
        for key in ("dispatch", "status", "reconcile", "api"):
            found = [
                s
                for lid, s in statements(control)
                if lid.startswith("Eks")
                and role_of[key] in {ref(r) for r in control["Resources"][lid]["Properties"].get("Roles", [])}
            ]
            assert [s["Action"] for s in found] == ["eks:DescribeCluster"], key
        assert "aws-auth" not in json.dumps(synth.template("compute"))


def test_imported_cluster_admits_the_provider_and_the_functions(synths: dict[str, Synth]) -> None:
    synth = synths["dev-eks-imported"]
    compute = Template.from_json(synth.template("compute"))
    compute.resource_count_is("AWS::EKS::Cluster", 0)
    compute.has_resource_properties(
        "AWS::EKS::AccessEntry",
        {
            "ClusterName": IMPORTED_CLUSTER,
            "AccessPolicies": [Match.object_like({"AccessScope": {"Type": "cluster"}})],
        },
    )
    for port in (443, 8000):
        compute.has_resource_properties(
            "AWS::EC2::SecurityGroupIngress", {"GroupId": CLUSTER_SG, "FromPort": port, "ToPort": port}
        )


def _joined(value: object) -> str:
    """A manifest is a JSON string, or an Fn::Join of strings and tokens: tokens become placeholders."""
    if isinstance(value, str):
        return value
    assert isinstance(value, dict) and "Fn::Join" in value
    return "".join(p if isinstance(p, str) else "TOKEN" for p in value["Fn::Join"][1])

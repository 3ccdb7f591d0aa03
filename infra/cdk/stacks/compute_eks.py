"""Compute on EKS: training as KubeRay RayJobs, serving as vLLM Deployments scaled by KEDA.

The cluster is imported by name (`-c eks_cluster_name=...`) or created with a private endpoint, a small system
node group, a GPU managed node group and the AWS Load Balancer Controller. Either way Mini Studio's add-ons go in
through a kubectl provider in the VPC, and the control-plane functions reach the cluster through EKS access entries
mapped to Kubernetes groups (no aws-auth ConfigMap). Training and serving pods get S3 through EKS Pod Identity.

The API function proxies inference to each deployment's Service, an internal NLB that the load balancer controller
provisions (functions/compute/k8s/serving.py). An imported cluster must already run that controller (v2.2 or later,
with subnets it can discover: `kubernetes.io/role/internal-elb` tags on the private subnets); this stack does not
install a second one next to its owner's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from aws_cdk import Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_eks as eks_l1
from aws_cdk import aws_eks_v2 as eks
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from aws_cdk.lambda_layer_kubectl_v35 import KubectlV35Layer
from constructs import Construct

from functions.core import names
from infra.cdk.config import SERVING_NAMESPACE, WORKLOAD_SERVICE_ACCOUNT, DeployConfig
from infra.cdk.constructs.eks_platform import (
    API_GROUP,
    DISPATCH_GROUP,
    GPU_LABEL,
    GPU_TAINT,
    OBSERVE_GROUP,
    PROMETHEUS_URL,
    EksPlatform,
)
from infra.cdk.constructs.images import ImageRepositories
from infra.cdk.constructs.storage import READ, WRITE, prefix_statements, suppress_prefix_wildcards
from infra.cdk.nag import LAMBDA_BASIC, LAMBDA_VPC, regex, suppress
from infra.cdk.stacks.compute import FunctionRoles

KUBERNETES_VERSION = eks.KubernetesVersion.V1_35  # the kubectl layer (v35) must stay within one minor of it
VLLM_PORT = 8000  # the inference server's port: the API function proxies to it
# The AWS Load Balancer Controller on new clusters: the Helm chart aws-load-balancer-controller from
# https://aws.github.io/eks-charts, an IRSA service account and the controller's own IAM policy for this version.
ALB_CONTROLLER_VERSION = eks.AlbControllerVersion.V3_2_2


class EksComputeStack(Stack):
    backend = "eks"

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: DeployConfig,
        vpc: ec2.IVpc,
        functions_sg: ec2.ISecurityGroup,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self._before_platform: list[Construct] = []  # what must exist before the platform's charts go in
        self.images = ImageRepositories(self, "Images", config=config)
        kubectl = eks.KubectlProviderOptions(
            kubectl_layer=KubectlV35Layer(self, "KubectlLayer"),
            private_subnets=vpc.select_subnets(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS).subnets,
            security_groups=[functions_sg],
        )
        if config.eks_cluster_name:
            self.cluster: eks.ICluster = self._import_cluster(config, vpc, functions_sg, kubectl)
        else:
            # jsii's typing stubs miss that Cluster satisfies ICluster (an optional member): it does at run time.
            self.cluster = cast(eks.ICluster, self._new_cluster(config, vpc, functions_sg, kubectl))
        platform = EksPlatform(self, "Platform", cluster=self.cluster, new_cluster=not config.eks_cluster_name)
        for dependency in self._before_platform:
            platform.node.add_dependency(dependency)
        _suppress_cdk_eks(self)

        self.workload_role = iam.Role(
            self,
            "WorkloadRole",
            assumed_by=iam.SessionTagsPrincipal(iam.ServicePrincipal("pods.eks.amazonaws.com")),
            description="Mini Studio RayJob and vLLM pods (EKS Pod Identity)",
        )
        eks_l1.CfnPodIdentityAssociation(
            self,
            "WorkloadIdentity",
            cluster_name=self.cluster.cluster_name,
            namespace=SERVING_NAMESPACE,
            service_account=WORKLOAD_SERVICE_ACCOUNT,
            role_arn=self.workload_role.role_arn,
        )

    def _new_cluster(
        self, config: DeployConfig, vpc: ec2.IVpc, functions_sg: ec2.ISecurityGroup, kubectl: eks.KubectlProviderOptions
    ) -> eks.Cluster:
        cluster = eks.Cluster(
            self,
            "Cluster",
            version=KUBERNETES_VERSION,
            vpc=vpc,
            vpc_subnets=[ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS)],
            endpoint_access=eks.EndpointAccess.PRIVATE,
            default_capacity_type=eks.DefaultCapacityType.NODEGROUP,
            default_capacity=0,
            cluster_logging=list(eks.ClusterLoggingTypes),
            kubectl_provider_options=kubectl,
            # Internal NLBs for the vLLM Services. The cluster tags the private subnets kubernetes.io/role/internal-elb
            # so the controller finds them, and the chart waits for its pods, which need the system nodes.
            alb_controller=eks.AlbControllerOptions(version=ALB_CONTROLLER_VERSION),
        )
        # Operators, KEDA and Prometheus: small on-demand nodes that never scale to zero.
        system = cluster.add_nodegroup_capacity(
            "System",
            instance_types=[ec2.InstanceType("t3.large")],
            min_size=1,
            desired_size=2,
            max_size=3,
        )
        gpu_min, gpu_max = config.profile.gpu_nodes
        cluster.add_nodegroup_capacity(
            "Gpu",
            instance_types=[ec2.InstanceType(t) for t in config.gpu_instance_types],
            ami_type=eks.NodegroupAmiType.AL2023_X86_64_NVIDIA,
            min_size=gpu_min,
            max_size=gpu_max,
            disk_size=200,  # vLLM and trainer images plus model weights
            labels={GPU_LABEL: "true"},
            # Only pods that ask for a GPU land here.
            taints=[eks.TaintSpec(effect=eks.TaintEffect.NO_SCHEDULE, key=GPU_TAINT, value="true")],
        )
        eks.Addon(self, "PodIdentityAgent", cluster=cast(eks.ICluster, cluster), addon_name="eks-pod-identity-agent")
        controller = cluster.alb_controller
        assert controller is not None  # asked for above
        controller.node.add_dependency(system)
        suppress(
            controller,
            "AwsSolutions-IAM5",
            "The AWS Load Balancer Controller's published IAM policy (the CDK ships it per controller version): it "
            "creates and tags load balancers, target groups and security groups whose names it chooses at run time",
            [
                "Resource::*",
                regex(r"^Resource::arn:<AWS::Partition>:(ec2|elasticloadbalancing):\*:\*:[a-z-]+(/[a-z]+)?(/\*)+$"),
            ],
        )
        # The controller's webhooks must answer before the platform's charts create Services and pods.
        self._before_platform.append(controller)
        # Managed node groups use the cluster security group: functions reach the API server, and the vLLM pods on
        # 8000. Through the NLB the pods see the NLB's address, admitted by the backend security group rule the
        # controller adds to this group; this rule admits the functions themselves where the target group keeps
        # the client's address (preserve_client_ip) or a call goes to a pod directly.
        cluster.connections.allow_from(functions_sg, ec2.Port.tcp(443), "control-plane functions → Kubernetes API")
        cluster.connections.allow_from(functions_sg, ec2.Port.tcp(VLLM_PORT), "API function → vLLM servers")
        return cluster

    def _import_cluster(
        self, config: DeployConfig, vpc: ec2.IVpc, functions_sg: ec2.ISecurityGroup, kubectl: eks.KubectlProviderOptions
    ) -> eks.ICluster:
        assert config.eks_cluster_name  # the caller only imports when a name is given
        # Our own execution role for the provider's handler, so this stack can name it in an access entry.
        provider_role = iam.Role(
            self,
            "KubectlProviderRole",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            managed_policies=[
                iam.ManagedPolicy.from_aws_managed_policy_name("service-role/AWSLambdaBasicExecutionRole"),
                iam.ManagedPolicy.from_aws_managed_policy_name("service-role/AWSLambdaVPCAccessExecutionRole"),
            ],
        )
        suppress(
            provider_role,
            "AwsSolutions-IAM4",
            "Lambda's basic and VPC execution policies for the kubectl provider's handler",
            [LAMBDA_BASIC, LAMBDA_VPC],
        )
        # An imported cluster gets no provider from its options: build one for it, then import it with that one.
        reference = eks.Cluster.from_cluster_attributes(
            self, "ClusterRef", cluster_name=config.eks_cluster_name, vpc=vpc
        )
        provider = eks.KubectlProvider(
            self,
            "KubectlProvider",
            cluster=reference,
            kubectl_layer=kubectl.kubectl_layer,
            private_subnets=kubectl.private_subnets,
            security_groups=kubectl.security_groups,
            role=provider_role,
        )
        cluster = eks.Cluster.from_cluster_attributes(
            self, "Cluster", cluster_name=config.eks_cluster_name, vpc=vpc, kubectl_provider=provider
        )
        # The provider installs charts and manifests: it needs cluster admin (the cluster must allow API auth).
        access = eks.AccessEntry(
            self,
            "KubectlProviderAccess",
            cluster=cluster,
            principal=provider_role.role_arn,
            access_policies=[
                eks.AccessPolicy.from_access_policy_name(
                    "AmazonEKSClusterAdminPolicy", access_scope_type=eks.AccessScopeType.CLUSTER
                )
            ],
        )
        self._before_platform.append(access)
        if config.eks_cluster_security_group_id:
            for port, why in ((443, "Kubernetes API"), (VLLM_PORT, "vLLM servers")):
                ec2.CfnSecurityGroupIngress(
                    self,
                    f"FunctionsTo{port}",
                    group_id=config.eks_cluster_security_group_id,
                    source_security_group_id=functions_sg.security_group_id,
                    ip_protocol="tcp",
                    from_port=port,
                    to_port=port,
                    description=f"Mini Studio functions → {why}",
                )
        return cluster

    def function_environment(self) -> Mapping[str, str]:
        return {
            "EKS_CLUSTER_NAME": self.cluster.cluster_name,
            "EKS_NAMESPACE": SERVING_NAMESPACE,
            "EKS_SERVICE_ACCOUNT": WORKLOAD_SERVICE_ACCOUNT,
            "KEDA_PROMETHEUS_URL": PROMETHEUS_URL,
            "TRAINER_IMAGE_URI": self.images.trainer_uri(),
            "INFERENCE_IMAGE_URI": self.images.inference_uri(),
        }

    def event_patterns(self) -> list[events.EventPattern]:
        return []  # RayJob and Deployment states are polled by the reconciler; the trainer reports through S3

    def grant_functions(self, scope: Construct, roles: FunctionRoles) -> None:
        """Access entries live in the control plane's stack: they name its roles, which this stack cannot see."""
        describe = iam.PolicyStatement(actions=["eks:DescribeCluster"], resources=[self.cluster.cluster_arn])
        # The API reads deployment state, scales deployments and reports cluster status (API_GROUP, which also
        # holds the cluster-wide read of nodes and pods); its inference calls go to the NLBs over HTTP.
        for name, role, group in (
            ("Dispatch", roles.dispatch, DISPATCH_GROUP),
            ("Status", roles.status, OBSERVE_GROUP),
            ("Reconcile", roles.reconcile, OBSERVE_GROUP),
            ("Api", roles.api, API_GROUP),
        ):
            iam.Policy(scope, f"Eks{name}", statements=[describe], roles=[role])
            eks_l1.CfnAccessEntry(
                scope,
                f"Eks{name}Access",
                cluster_name=self.cluster.cluster_name,
                principal_arn=role.role_arn,
                kubernetes_groups=[group],
            )

    def grant_data(self, scope: Construct, datasets: s3.IBucket, artifacts: s3.IBucket) -> None:
        statements = [
            *prefix_statements(datasets, names.INGEST_PREFIXES, READ),
            *prefix_statements(artifacts, [names.ARTIFACTS_PREFIX], [*READ, *WRITE]),
        ]
        suppress_prefix_wildcards(
            iam.Policy(scope, "EksWorkloadData", statements=statements, roles=[self.workload_role])
        )


def _suppress_cdk_eks(scope: Construct) -> None:
    """The cluster role, node roles and kubectl provider are the CDK's EKS construct, built as EKS documents them."""
    suppress(
        scope,
        "AwsSolutions-IAM4",
        "EKS's own managed policies for the cluster role and node roles (worker node, CNI, ECR read), and Lambda's "
        "basic/VPC execution policies for the CDK's kubectl provider",
        [
            regex(
                r"^Policy::arn:<AWS::Partition>:iam::aws:policy\/(AmazonEKSClusterPolicy|AmazonEKSWorkerNodePolicy|"
                r"AmazonEKS_CNI_Policy|AmazonEC2ContainerRegistryReadOnly)$"
            ),
            LAMBDA_BASIC,
            LAMBDA_VPC,
            regex(r"AmazonElasticContainerRegistryPublicReadOnly"),
        ],
    )
    suppress(scope, "AwsSolutions-L1", "The CDK's kubectl provider handler: its runtime is chosen by the CDK")
    suppress(
        scope,
        "AwsSolutions-IAM5",
        "The CDK's provider framework invokes any version of its own kubectl handler function",
        [regex(r"^Resource::<[A-Za-z0-9]+\.Arn>:\*$")],
    )

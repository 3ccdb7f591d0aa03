"""The VPC the functions (and a new EKS cluster) run in: imported with `-c vpc_id=...`, or created.

Every control-plane function runs in its private subnets, because the platform's MongoDB, Redis and the EKS API
are reached privately; the NAT gateway carries calls to AWS APIs and to a hosted MongoDB/Redis.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.cdk.config import DeployConfig


class NetworkStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, config: DeployConfig, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        profile = config.profile
        if config.vpc_id:
            self.vpc: ec2.IVpc = ec2.Vpc.from_lookup(self, "Vpc", vpc_id=config.vpc_id)
        else:
            vpc = ec2.Vpc(
                self,
                "Vpc",
                max_azs=2,
                nat_gateways=profile.nat_gateways,
                subnet_configuration=[
                    ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24),
                    # /19: room for EKS pods, which take one VPC address each with the VPC CNI.
                    ec2.SubnetConfiguration(
                        name="private", subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS, cidr_mask=19
                    ),
                ],
                # S3 traffic (datasets, artifacts) skips the NAT gateway's per-GB charge.
                gateway_endpoints={"S3": ec2.GatewayVpcEndpointOptions(service=ec2.GatewayVpcEndpointAwsService.S3)},
            )
            flow_logs = logs.LogGroup(self, "FlowLogs", retention=profile.log_retention, removal_policy=profile.removal)
            vpc.add_flow_log(
                "FlowLog",
                destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_logs),
                traffic_type=ec2.FlowLogTrafficType.REJECT,  # rejected traffic is what explains a broken connection
            )
            self.vpc = vpc
        # One group for every control-plane function (and the kubectl provider): rules elsewhere admit it by id.
        self.functions_sg = ec2.SecurityGroup(
            self,
            "FunctionsSecurityGroup",
            vpc=self.vpc,
            description="Mini Studio control-plane functions: outbound only",
            allow_all_outbound=True,
        )

"""ECR repositories for the trainer and inference images (containers/trainer, containers/inference)."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_ecr as ecr
from constructs import Construct

from functions.core import names
from infra.cdk.config import DeployConfig

KEEP_IMAGES = 20


class ImageRepositories(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, config: DeployConfig) -> None:
        super().__init__(scope, construct_id)
        self.tag = config.image_tag
        destroy = config.profile.removal == RemovalPolicy.DESTROY
        self.trainer = self._repository("Trainer", config.resource_name(f"{names.APP}-trainer"), config, destroy)
        self.inference = self._repository("Inference", config.resource_name(f"{names.APP}-inference"), config, destroy)

    def _repository(self, construct_id: str, name: str, config: DeployConfig, destroy: bool) -> ecr.Repository:
        return ecr.Repository(
            self,
            construct_id,
            repository_name=name,
            image_scan_on_push=True,
            # GPU images are several GB each: keep the recent ones, drop untagged layers from rebuilt tags quickly.
            lifecycle_rules=[
                ecr.LifecycleRule(
                    rule_priority=1,
                    description="untagged images",
                    tag_status=ecr.TagStatus.UNTAGGED,
                    max_image_age=Duration.days(7),
                ),
                ecr.LifecycleRule(rule_priority=2, description="keep recent images", max_image_count=KEEP_IMAGES),
            ],
            removal_policy=config.profile.removal,
            empty_on_delete=destroy,
        )

    def trainer_uri(self) -> str:
        return self.trainer.repository_uri_for_tag(self.tag)

    def inference_uri(self) -> str:
        return self.inference.repository_uri_for_tag(self.tag)

"""Alarms that mean someone should look: a dead letter, an API 5xx, a function error.

Each is "> 0 in five minutes": the platform never answers bad input with a 5xx, and a worker's per-record
failures come back as partial batch responses, not errors, so any of these is a real fault. Actions go to an
existing SNS topic when `-c alarm_topic_arn=...` is given (none is created: an encrypted topic that CloudWatch can
publish to needs its own KMS key).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aws_cdk import Duration
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from constructs import Construct

from infra.cdk.constructs.worker_queue import WorkerQueue

PERIOD = Duration.minutes(5)


class Alarms(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        topic_arn: str | None,
        api: apigwv2.HttpApi,
        functions: Mapping[str, lambda_.Function],
        queues: Sequence[WorkerQueue],
    ) -> None:
        super().__init__(scope, construct_id)
        self.alarms: list[cloudwatch.Alarm] = []
        for wq in queues:
            self.alarms.append(wq.dlq_alarm(self, f"{wq.node.id}Dlq"))
        self.alarms.append(
            self._above_zero(
                "Api5xx",
                api.metric_server_error(period=PERIOD, statistic=cloudwatch.Stats.SUM),
                "API answered 5xx",
            )
        )
        for key, fn in functions.items():
            self.alarms.append(
                self._above_zero(
                    f"{key.capitalize()}Errors",
                    fn.metric_errors(period=PERIOD, statistic=cloudwatch.Stats.SUM),
                    f"{key} function errors (crash or timeout)",
                )
            )
        if topic_arn:
            action = actions.SnsAction(sns.Topic.from_topic_arn(self, "Topic", topic_arn))
            for alarm in self.alarms:
                alarm.add_alarm_action(action)

    def _above_zero(self, construct_id: str, metric: cloudwatch.IMetric, description: str) -> cloudwatch.Alarm:
        return cloudwatch.Alarm(
            self,
            construct_id,
            alarm_description=description,
            metric=metric,
            threshold=0,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=1,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )

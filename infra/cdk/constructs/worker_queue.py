"""An SQS work queue with its dead-letter queue, consumed by one worker alias with partial batch responses.

Names, maxReceiveCount, batch size and the visibility timeout (a multiple of the consumer's timeout) all come
from `functions.core.names`, the same values the local runtime uses.
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from functions.core import names

# As in the local runtime: a dead letter waits for a human as long as SQS allows.
DLQ_RETENTION = Duration.days(14)


class WorkerQueue(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        queue: str,
        queue_name: str,
        dlq_name: str,
        removal: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        self.name = queue
        self.dlq = sqs.Queue(
            self,
            "Dlq",
            queue_name=dlq_name,
            retention_period=DLQ_RETENTION,
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            removal_policy=removal,
        )
        self.queue = sqs.Queue(
            self,
            "Queue",
            queue_name=queue_name,
            visibility_timeout=Duration.seconds(names.visibility_timeout(queue)),
            dead_letter_queue=sqs.DeadLetterQueue(queue=self.dlq, max_receive_count=names.MAX_RECEIVE_COUNT),
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            removal_policy=removal,
        )

    def consume_with(self, alias: lambda_.IFunction, max_concurrency: int) -> None:
        alias.add_event_source(
            sources.SqsEventSource(
                self.queue,
                batch_size=names.SQS_BATCH_SIZE,
                report_batch_item_failures=True,
                max_concurrency=max_concurrency,
            )
        )

    def dlq_alarm(self, scope: Construct, construct_id: str) -> cloudwatch.Alarm:
        """Any message in the DLQ means a record failed MAX_RECEIVE_COUNT times: someone should look."""
        return cloudwatch.Alarm(
            scope,
            construct_id,
            alarm_description=f"Messages in {self.name}'s dead-letter queue: records failed {names.MAX_RECEIVE_COUNT}x",
            metric=self.dlq.metric_approximate_number_of_messages_visible(
                period=Duration.minutes(5), statistic=cloudwatch.Stats.MAXIMUM
            ),
            threshold=0,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=1,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )

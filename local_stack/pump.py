"""Feeds messages from a local SQS queue into a handler (S3 notifications into the indexer, people
jobs into the regrouper, a fanned-out graph's blocks into worker processes), as Lambda's SQS event
source does in the cloud, and calls scheduled handlers (moto cannot run Lambda functions)."""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from types_boto3_sqs import SQSClient

log = logging.getLogger("local_stack.pump")


class EventPump(threading.Thread):
    """Feeds an SQS queue's messages to a Lambda handler, as the SQS event source mapping does."""

    def __init__(self, sqs: SQSClient, queue_url: str, handler, region: str = "us-east-1", wait_seconds: int = 1):
        super().__init__(name="event-pump", daemon=True)
        self.sqs, self.queue_url, self.handler = sqs, queue_url, handler
        self.queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        self.region, self.wait_seconds = region, wait_seconds
        self._stopping = threading.Event()  # not _stop: Thread has a method by that name
        self.handled = self.failed = 0

    def stop(self) -> None:
        """Stop after the current message."""
        self._stopping.set()

    def pump_once(self) -> int:
        """Receive up to 10 messages and hand each to the handler; returns how many were received."""
        messages = self.sqs.receive_message(
            QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=self.wait_seconds, AttributeNames=["All"]
        ).get("Messages", [])
        for message in messages:
            event = {
                "Records": [
                    {
                        "messageId": message["MessageId"],
                        "receiptHandle": message["ReceiptHandle"],
                        "body": message["Body"],
                        "attributes": message.get("Attributes", {}),
                        "messageAttributes": {},
                        "md5OfBody": message.get("MD5OfBody", ""),
                        "eventSource": "aws:sqs",
                        "eventSourceARN": self.queue_arn,
                        "awsRegion": self.region,
                    }
                ]
            }
            try:
                self.handler(event, _Context())
            except Exception:
                # Like Lambda: the message becomes visible again after the visibility
                # timeout, and after maxReceiveCount it moves to the dead-letter queue.
                self.failed += 1
                log.warning("message failed; it will be redelivered", exc_info=True)
                continue
            self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
            self.handled += 1
        return len(messages)

    def run(self) -> None:
        """Receive, handle and delete messages until stopped (a failed message is received again later)."""
        while not self._stopping.is_set():
            try:
                self.pump_once()
            except Exception:
                log.exception("event pump error")
                self._stopping.wait(1)


class WorkerProcesses:
    """Processes that each feed a queue into a handler of the app (``app.<name>``), as concurrent
    Lambda instances do: a fanned-out graph's blocks are built in parallel (chalicelib/graph_fanout.py)."""

    def __init__(self, environment: dict, queue_url: str, handler: str, count: int, region: str = "us-east-1"):
        context = multiprocessing.get_context("spawn")  # a fresh interpreter each, like a Lambda instance
        args = (dict(environment), queue_url, handler, region)
        self.processes = [
            context.Process(target=_work, args=args, name=f"{handler}-{n}", daemon=True) for n in range(count)
        ]

    def start(self) -> None:
        """Start every worker."""
        for process in self.processes:
            process.start()

    def stop(self) -> None:
        """Stop every worker (a block in flight is delivered again, as after a Lambda timeout)."""
        for process in self.processes:
            process.terminate()


def _work(environment: dict, queue_url: str, handler: str, region: str) -> None:
    os.environ.update(environment)
    import app as app_module

    from .aws import client

    EventPump(client("sqs", environment["AWS_ENDPOINT_URL"]), queue_url, getattr(app_module, handler), region).run()


class Schedule(threading.Thread):
    """Calls a scheduled handler at start and then every ``every_s`` seconds, as EventBridge does in
    the cloud (the trash's purge)."""

    def __init__(self, handler, every_s: float, region: str = "us-east-1"):
        super().__init__(name="schedule", daemon=True)
        self.handler, self.every_s, self.region = handler, every_s, region
        self._stopping = threading.Event()

    def stop(self) -> None:
        """Stop after the current tick."""
        self._stopping.set()

    def event(self) -> dict:
        """What EventBridge sends a scheduled rule's target (every field: Chalice reads them all)."""
        return {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": "123456789012",
            "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": self.region,
            "resources": [f"arn:aws:events:{self.region}:123456789012:rule/local-schedule"],
            "detail": {},
        }

    def tick(self):
        """One scheduled call; its answer."""
        return self.handler(self.event(), _Context())

    def run(self) -> None:
        """Tick every ``every_s`` seconds until stopped."""
        while not self._stopping.is_set():
            try:
                self.tick()
            except Exception:
                log.exception("scheduled call failed; tried again at the next tick")
            self._stopping.wait(self.every_s)


class _Context:
    function_name = "index_photos"
    memory_limit_in_mb = 1024

    def __init__(self):
        self.aws_request_id = str(uuid.uuid4())

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 120_000

"""Structured JSON logs and CloudWatch EMF metrics (AWS Lambda Powertools)."""

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

logger = Logger(service="memory-studio")
metrics = Metrics(namespace="MemoryStudio", service="memory-studio")

__all__ = ["logger", "metrics", "MetricUnit", "flush_metrics"]


def flush_metrics() -> None:
    """Publish what this invocation recorded (nothing when it recorded nothing)."""
    if metrics.metric_set:
        metrics.flush_metrics()
        metrics.clear_metrics()  # flush_metrics leaves them in place when metrics are disabled

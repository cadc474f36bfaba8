"""Publish a model bundle and roll the SageMaker endpoint to it.

    python -m model_factory.deploy publish --bucket B [--bundle .cache/bundle]
    python -m model_factory.deploy deploy --bucket B --image ECR_URI --role ROLE_ARN \
        [--endpoint memory-studio-prod-faces] [--instance-type ml.g4dn.xlarge] [--min 1 --max 4]
    python -m model_factory.deploy dimensions [--bundle .cache/bundle]   → its embedding dimension

``publish`` uploads ``model.tar.gz`` under ``models/<version>/``; ``deploy`` creates
the model and an endpoint config named after the bundle version (GPU instances on a pinned
inference AMI), then creates the endpoint or updates it in place (SageMaker's blue/green swap
with deployment guardrails), waits for it, and sets target tracking autoscaling on invocations
per instance. Before anything is published, ``deploy`` refuses a bundle whose embedding dimension
the Atlas vector index does not take (with the stage's store settings in the environment, as for
``chalicelib.ops.atlas_setup``; ``--skip-index-check`` where there is no Atlas, as against moto).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tarfile
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
from botocore.exceptions import ClientError

from gpu_endpoint.bundle import DEFAULT_DIR, BundleError, Manifest

if TYPE_CHECKING:
    from types_boto3_application_autoscaling import ApplicationAutoScalingClient
    from types_boto3_application_autoscaling.type_defs import TargetTrackingScalingPolicyConfigurationTypeDef
    from types_boto3_s3 import S3Client
    from types_boto3_sagemaker import SageMakerClient
    from types_boto3_sagemaker.type_defs import DeploymentConfigTypeDef, WaiterConfigTypeDef


def bundle_version(bundle: Path) -> str:
    """The version of the bundle in ``bundle``."""
    return Manifest.load(bundle).version


def model_tarball(bundle: Path) -> bytes:
    """The bundle's files at the archive root, as SageMaker unpacks into /opt/ml/model."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path in sorted(bundle.iterdir()):
            tar.add(path, arcname=path.name)
    return buffer.getvalue()


def publish(s3: S3Client, bucket: str, bundle: Path) -> str:
    """Upload the bundle as SageMaker's ``model.tar.gz``; its S3 URL."""
    version = bundle_version(bundle)
    key = f"models/{version}/model.tar.gz"
    s3.put_object(Bucket=bucket, Key=key, Body=model_tarball(bundle), ServerSideEncryption="AES256")
    return f"s3://{bucket}/{key}"


# The inference AMI pinned on GPU instances: NVIDIA driver 550, CUDA 12.4, and no CUDA-compat
# libraries mounted (SageMaker's AMI table). The image's CUDA (gpu_endpoint/Dockerfile) must not be
# newer: without a pin, ml.g4dn.* get SageMaker's default AMI (driver 470 / CUDA 11.4).
INFERENCE_AMI = "al2-ami-sagemaker-inference-gpu-3-1"
INFERENCE_AMI_CUDA = (12, 4)
VARIANT = "AllTraffic"
WAIT: WaiterConfigTypeDef = {"Delay": 30, "MaxAttempts": 120}  # an hour


def is_gpu(instance_type: str) -> bool:
    """Whether a SageMaker instance type has a GPU."""
    return instance_type.split(".")[1][:1] in ("g", "p")


def deploy(
    sagemaker: SageMakerClient,
    autoscaling: ApplicationAutoScalingClient,
    *,
    model_url: str,
    version: str,
    image: str,
    role: str,
    endpoint: str,
    instance_type: str = "ml.g4dn.xlarge",
    min_instances: int = 1,
    max_instances: int = 4,
    invocations_per_instance: int = 300,
    allowed_buckets: str = "",
    rollback_alarm: str | None = None,
    backfill: tuple[str, str] | None = None,
) -> dict:
    """Idempotent: a model or endpoint config of this version that exists is kept, and an endpoint
    already on it is left alone (a re-run after a failure picks up where it stopped).

    An update keeps the variant's current instance count (autoscaling set it), swaps blue/green
    with SageMaker's deployment guardrails (rolled back when ``rollback_alarm`` fires while the new
    fleet is baking), and waits for the endpoint to be InService before scaling is registered again;
    a change of instance type deregisters scaling first (SageMaker refuses it otherwise).

    ``backfill`` (the answers' S3 prefix, the notification topic): an asynchronous endpoint of the
    same image and bundle for reindexing (``chalicelib.backfill``), scaled on its backlog."""
    name = f"{endpoint}-{version}".replace(".", "-")[:63]
    if not _exists(sagemaker.describe_model, ModelName=name):
        sagemaker.create_model(
            ModelName=name,
            ExecutionRoleArn=role,
            PrimaryContainer={
                "Image": image,
                "ModelDataUrl": model_url,
                "Environment": {"ALLOWED_S3_BUCKETS": allowed_buckets},
            },
        )
    if not _exists(sagemaker.describe_endpoint_config, EndpointConfigName=name):
        variant = {
            "VariantName": VARIANT,
            "ModelName": name,
            "InstanceType": instance_type,
            "InitialInstanceCount": min_instances,
        }
        if is_gpu(instance_type):
            variant["InferenceAmiVersion"] = INFERENCE_AMI
        config: dict = {"EndpointConfigName": name, "ProductionVariants": [variant]}
        if backfill:
            answers, topic = backfill
            config["AsyncInferenceConfig"] = {
                "ClientConfig": {"MaxConcurrentInvocationsPerInstance": 4},
                "OutputConfig": {
                    "S3OutputPath": answers,
                    "NotificationConfig": {"SuccessTopic": topic, "ErrorTopic": topic},
                },
            }
        sagemaker.create_endpoint_config(**config)
    resource = f"endpoint/{endpoint}/variant/{VARIANT}"
    existing = {e["EndpointName"] for e in sagemaker.list_endpoints(NameContains=endpoint)["Endpoints"]}
    if endpoint in existing:
        current = sagemaker.describe_endpoint(EndpointName=endpoint)
        if current["EndpointConfigName"] == name:
            action = "unchanged"
        else:
            serving = sagemaker.describe_endpoint_config(EndpointConfigName=current["EndpointConfigName"])
            if serving["ProductionVariants"][0]["InstanceType"] != instance_type:
                _deregister(autoscaling, resource)
            sagemaker.update_endpoint(
                EndpointName=endpoint,
                EndpointConfigName=name,
                RetainAllVariantProperties=True,
                DeploymentConfig=guardrails(rollback_alarm),
            )
            action = "updated"
    else:
        sagemaker.create_endpoint(EndpointName=endpoint, EndpointConfigName=name)
        action = "created"
    sagemaker.get_waiter("endpoint_in_service").wait(EndpointName=endpoint, WaiterConfig=WAIT)
    autoscaling.register_scalable_target(
        ServiceNamespace="sagemaker",
        ResourceId=resource,
        ScalableDimension="sagemaker:variant:DesiredInstanceCount",
        MinCapacity=min_instances,
        MaxCapacity=max_instances,
    )
    autoscaling.put_scaling_policy(
        PolicyName=f"{endpoint}-invocations",
        ServiceNamespace="sagemaker",
        ResourceId=resource,
        ScalableDimension="sagemaker:variant:DesiredInstanceCount",
        PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration=_scaling_target(endpoint, invocations_per_instance, bool(backfill)),
    )
    return {"endpoint": endpoint, "config": name, "action": action}


def _scaling_target(
    endpoint: str, invocations_per_instance: int, asynchronous: bool
) -> TargetTrackingScalingPolicyConfigurationTypeDef:
    """Real-time: invocations per instance. Asynchronous: the queued requests per instance."""
    metric: TargetTrackingScalingPolicyConfigurationTypeDef
    if asynchronous:
        metric = {
            "CustomizedMetricSpecification": {
                "MetricName": "ApproximateBacklogSizePerInstance",
                "Namespace": "AWS/SageMaker",
                "Dimensions": [{"Name": "EndpointName", "Value": endpoint}],
                "Statistic": "Average",
            },
            "TargetValue": 5.0,
        }
    else:
        metric = {
            "PredefinedMetricSpecification": {"PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"},
            "TargetValue": float(invocations_per_instance),
        }
    return metric | {"ScaleInCooldown": 300, "ScaleOutCooldown": 60}


def guardrails(rollback_alarm: str | None) -> DeploymentConfigTypeDef:
    """Blue/green, all traffic at once after the new fleet is up, the old fleet kept for 10 minutes
    of baking; rolled back automatically when the alarm fires meanwhile."""
    config: DeploymentConfigTypeDef = {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 0},
            "TerminationWaitInSeconds": 600,
            "MaximumExecutionTimeoutInSeconds": 3600,
        }
    }
    if rollback_alarm:
        config["AutoRollbackConfiguration"] = {"Alarms": [{"AlarmName": rollback_alarm}]}
    return config


def _deregister(autoscaling: ApplicationAutoScalingClient, resource: str) -> None:
    with contextlib.suppress(autoscaling.exceptions.ObjectNotFoundException):
        autoscaling.deregister_scalable_target(
            ServiceNamespace="sagemaker",
            ResourceId=resource,
            ScalableDimension="sagemaker:variant:DesiredInstanceCount",
        )


def _exists(describe, **name) -> bool:
    """SageMaker answers a describe of something missing with a ValidationException."""
    try:
        describe(**name)
        return True
    except ClientError as error:
        if error.response["Error"]["Code"] == "ValidationException":
            return False
        raise


def index_refusal(bundle_dimensions: int) -> str | None:
    """Why the stage's Atlas vector index cannot take this bundle's vectors; None when it can (or
    there is no index yet: ``chalicelib.ops.atlas_setup`` makes it with this dimension)."""
    import boto3 as aws

    from chalicelib.ops.atlas_setup import indexed_dimensions
    from chalicelib.settings import Settings
    from chalicelib.stores.mongo_connection import AtlasUri, open_database

    settings = Settings.from_env()
    if settings.store_backend != "mongodb":
        return "set the stage's store (STORE_BACKEND=mongodb, MONGODB_SECRET_ID) to check its vector index"
    secrets = aws.client("secretsmanager") if settings.mongodb_secret_id else None
    faces = open_database(settings, AtlasUri(settings, secrets).current())["faces"]
    indexed = indexed_dimensions(faces)
    if indexed is not None and indexed != bundle_dimensions:
        return f"the vector index takes {indexed}-d vectors and this bundle makes {bundle_dimensions}-d"
    return None


def main(argv=None) -> int:
    """Publish a bundle and deploy it to an endpoint."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("dimensions", help="print the bundle's embedding dimension").add_argument(
        "--bundle", type=Path, default=DEFAULT_DIR
    )
    for name in ("publish", "deploy"):
        p = sub.add_parser(name)
        p.add_argument("--bucket", required=True, help="bucket for model artifacts")
        p.add_argument("--bundle", type=Path, default=DEFAULT_DIR)
        if name == "deploy":
            p.add_argument("--image", required=True, help="ECR URI of the gpu_endpoint image")
            p.add_argument("--role", required=True, help="SageMaker execution role ARN")
            p.add_argument("--endpoint", default="memory-studio-prod-faces")
            p.add_argument("--instance-type", default="ml.g4dn.xlarge")
            p.add_argument("--min", type=int, default=1)
            p.add_argument("--max", type=int, default=4)
            p.add_argument("--invocations-per-instance", type=int, default=300)
            p.add_argument("--allowed-buckets", default="", help="photo buckets the endpoint may read")
            p.add_argument(
                "--rollback-alarm",
                help="a CloudWatch alarm that rolls an update back (the stack's EndpointErrorsAlarm)",
            )
            p.add_argument("--skip-index-check", action="store_true", help="no Atlas to check (a test stack)")
            p.add_argument(
                "--backfill",
                nargs=2,
                metavar=("ANSWERS_S3_URI", "TOPIC_ARN"),
                help="an asynchronous endpoint for reindexing (s3://<PhotoBucketName>/inference/answers/, "
                "the stack's InferenceResultsTopicArn)",
            )
    args = parser.parse_args(argv)
    try:
        manifest = Manifest.load(args.bundle)
    except BundleError as error:  # before anything is uploaded
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.command == "dimensions":
        print(manifest.embedding_dim)
        return 0
    if args.command == "deploy" and not args.skip_index_check:
        refusal = index_refusal(manifest.embedding_dim)
        if refusal:
            print(
                f"error: {refusal}; nothing was published (docs/deploy.md: a bundle of a new dimension)",
                file=sys.stderr,
            )
            return 2
    url = publish(boto3.client("s3"), args.bucket, args.bundle)
    print(f"published {url}")
    if args.command == "deploy":
        result = deploy(
            boto3.client("sagemaker"),
            boto3.client("application-autoscaling"),
            model_url=url,
            version=bundle_version(args.bundle),
            image=args.image,
            role=args.role,
            endpoint=args.endpoint,
            instance_type=args.instance_type,
            min_instances=args.min,
            max_instances=args.max,
            invocations_per_instance=args.invocations_per_instance,
            allowed_buckets=args.allowed_buckets,
            rollback_alarm=args.rollback_alarm,
            backfill=tuple(args.backfill) if args.backfill else None,
        )
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

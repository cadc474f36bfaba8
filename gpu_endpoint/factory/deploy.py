"""Publish a model bundle and roll the SageMaker endpoint to it.

    python -m gpu_endpoint.factory.deploy publish --bucket B [--bundle .cache/bundle]
    python -m gpu_endpoint.factory.deploy deploy --bucket B --image ECR_URI --role ROLE_ARN \
        [--endpoint memory-studio-prod-faces] [--instance-type ml.g4dn.xlarge] [--min 1 --max 4]

``publish`` uploads ``model.tar.gz`` under ``models/<version>/``; ``deploy`` creates
the model and an endpoint config named after the bundle version, then creates the
endpoint or updates it in place (SageMaker's blue/green swap), and sets target
tracking autoscaling on invocations per instance.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tarfile
from pathlib import Path

import boto3
from botocore.exceptions import ClientError

from ..bundle import DEFAULT_DIR, BundleError, Manifest


def bundle_version(bundle: Path) -> str:
    return Manifest.load(bundle).version


def model_tarball(bundle: Path) -> bytes:
    """The bundle's files at the archive root, as SageMaker unpacks into /opt/ml/model."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path in sorted(bundle.iterdir()):
            tar.add(path, arcname=path.name)
    return buffer.getvalue()


def publish(s3, bucket: str, bundle: Path) -> str:
    version = bundle_version(bundle)
    key = f"models/{version}/model.tar.gz"
    s3.put_object(Bucket=bucket, Key=key, Body=model_tarball(bundle), ServerSideEncryption="AES256")
    return f"s3://{bucket}/{key}"


def deploy(
    sagemaker,
    autoscaling,
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
) -> dict:
    """Idempotent: a model or endpoint config of this version that exists is kept, and an endpoint
    already on it is left alone (a re-run after a failure picks up where it stopped)."""
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
        sagemaker.create_endpoint_config(
            EndpointConfigName=name,
            ProductionVariants=[
                {
                    "VariantName": "AllTraffic",
                    "ModelName": name,
                    "InstanceType": instance_type,
                    "InitialInstanceCount": min_instances,
                }
            ],
        )
    existing = {e["EndpointName"] for e in sagemaker.list_endpoints(NameContains=endpoint)["Endpoints"]}
    if endpoint in existing:
        if sagemaker.describe_endpoint(EndpointName=endpoint)["EndpointConfigName"] == name:
            action = "unchanged"
        else:
            sagemaker.update_endpoint(EndpointName=endpoint, EndpointConfigName=name)
            action = "updated"
    else:
        sagemaker.create_endpoint(EndpointName=endpoint, EndpointConfigName=name)
        action = "created"
    resource = f"endpoint/{endpoint}/variant/AllTraffic"
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
        TargetTrackingScalingPolicyConfiguration={
            "TargetValue": float(invocations_per_instance),
            "PredefinedMetricSpecification": {"PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"},
            "ScaleInCooldown": 300,
            "ScaleOutCooldown": 60,
        },
    )
    return {"endpoint": endpoint, "config": name, "action": action}


def _exists(describe, **name) -> bool:
    """SageMaker answers a describe of something missing with a ValidationException."""
    try:
        describe(**name)
        return True
    except ClientError as error:
        if error.response["Error"]["Code"] == "ValidationException":
            return False
        raise


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
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
    args = parser.parse_args(argv)
    try:
        Manifest.load(args.bundle)
    except BundleError as error:  # before anything is uploaded
        print(f"error: {error}", file=sys.stderr)
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
        )
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
